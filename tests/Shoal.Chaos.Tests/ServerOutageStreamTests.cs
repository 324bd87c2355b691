using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// Issue 14, item 1: the server is down for 15 s while long streams run on every node through a
/// standalone edge, and the agents fall deep into their reconnect back-off (1, 2, 4, 8, 16 s…). When
/// it starts again, a node it has not heard from yet is unknown, not lost: no stream is cut, no
/// request fails, no node is marked lost. And when one node really dies meanwhile, only that node's
/// replica is replaced once the restart grace is over; the others are untouched.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
public sealed class ServerOutageStreamTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_outage = TimeSpan.FromSeconds(15);

    [Fact]
    public Task A_15_s_server_outage_cuts_no_stream_fails_no_request_and_loses_no_node() => RunAsync(nodeDies: false);

    [Fact]
    public Task A_node_that_dies_during_the_outage_is_replaced_after_the_restart_grace_and_the_others_are_untouched() => RunAsync(nodeDies: true);

    private async Task RunAsync(bool nodeDies)
    {
        var restartGrace = nodeDies ? TimeSpan.FromSeconds(25) : TimeSpan.FromSeconds(40);
        await using var stack = await ChaosStack.StartAsync(output, new ChaosStackOptions
        {
            StandaloneEdge = true,
            GracePeriod = TimeSpan.FromSeconds(10),
            RestartGracePeriod = restartGrace,
            Replicas = 3,
            // 4,096 tokens at 10 ms: streams of about 40 s, longer than the outage and the agents' back-off.
            DecodeMs = 10,
        });
        try
        {
            var clock = Stopwatch.StartNew();
            var before = await stack.StatusAsync();
            var pidsBefore = stack.ReplicaProcesses();
            using var http = new HttpClient { BaseAddress = stack.EdgeAddress, Timeout = TimeSpan.FromMinutes(3) }.WithKey(stack.EndpointKey);
            // Streams in threes until every replica has one: the edge picks by power of two random
            // choices, so one batch can leave a replica out.
            var streams = new List<RunningStream>();
            var streamed = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; streamed.Count < 3 && i < 12; i += 3)
            {
                var batch = Enumerable.Range(i, 3).Select(k => StreamAsync(http, k)).ToList();
                streams.AddRange(batch);
                streamed.UnionWith(await Task.WhenAll(batch.Select(b => b.Started)));
            }
            Assert.Equal(3, streamed.Count);
            await using var load = new SteadyLoad(stack.EdgeAddress, stack.EndpointKey, ChaosStack.Cluster, clock, workers: 2, maxDuration: TimeSpan.FromMinutes(2));
            await load.WaitForMoreAsync(50, TimeSpan.FromSeconds(30));

            await stack.Server.KillAsync();
            var deadReplica = before.Replicas.OrderBy(r => r.NodeName, StringComparer.Ordinal).First();
            if (nodeDies)
            {
                // The node dies with the server away: its agent and its replica go at once.
                await stack.Agents[deadReplica.NodeName!].KillAsync();
                foreach (var pid in pidsBefore[deadReplica.Id]) Scenario.KillNow(pid);
            }
            await Task.Delay(s_outage);
            var startAt = clock.Elapsed;
            await stack.StartServerAsync();

            var expected = nodeDies ? 2 : 3;
            await Eventually.GetAsync(stack.NodesAsync, n => n.Count(x => x.State == NodeState.Ready) == expected, TimeSpan.FromSeconds(60), $"{expected} nodes back");
            output.WriteLine($"nodes back {(clock.Elapsed - startAt).TotalSeconds:0.0} s after the start");
            if (nodeDies)
            {
                var replaced = await Eventually.GetAsync(stack.StatusAsync,
                    s => s.Cluster.ReadyReplicas == 2 && s.Replicas.All(r => r.Id != deadReplica.Id),
                    restartGrace + TimeSpan.FromSeconds(30), "the dead node's replica replaced");
                output.WriteLine($"dead node's replica gone {(clock.Elapsed - startAt).TotalSeconds:0.0} s after the start");
                Assert.Equal(NodeState.Offline, (await stack.NodesAsync()).Single(n => n.Name == deadReplica.NodeName).State);
            }

            var results = await Task.WhenAll(streams.Select(s => s.Done));
            await load.StopAsync();
            var outcomes = load.Outcomes.ToList();
            foreach (var r in results) output.WriteLine($"stream {r.Index} on {r.Replica}: {r.Chunks} chunks, done {r.Done}, error {r.Error ?? "-"}");

            // Streams: every one on a node that stayed up ran to its end.
            var survivors = results.Where(r => !nodeDies || r.Replica != deadReplica.Id).ToList();
            Assert.NotEmpty(survivors);
            Assert.All(survivors, r => Assert.True(r.Done && r.Error is null, $"stream {r.Index} on {r.Replica} was cut: {r.Error}"));
            Assert.All(survivors, r => Assert.True(r.Chunks >= 4096, $"stream {r.Index}: {r.Chunks} chunks"));
            // Non-streaming requests: none failed (those on the dead node are retried elsewhere).
            Scenario.AssertNoneFailed(outcomes);

            // The replicas of nodes that stayed up are the same processes, never restarted or replaced.
            var after = await stack.StatusAsync();
            var running = stack.ReplicaProcesses();
            foreach (var r in before.Replicas.Where(r => !nodeDies || r.Id != deadReplica.Id))
            {
                Assert.Equal(pidsBefore[r.Id], running[r.Id]);
                Assert.Equal(0, after.Replicas.Single(x => x.Id == r.Id).Restarts);
            }
            var events = await stack.EventsAsync();
            foreach (var e in events) output.WriteLine($"{e.At:HH:mm:ss.fff} {e.Type} {e.Replica} {e.Message}");
            var lostNodes = events.Where(e => e.Type is ClusterEventTypes.NodeLost or ClusterEventTypes.Replaced).Select(e => e.NodeName).Distinct().ToList();
            Assert.Equal(nodeDies ? [deadReplica.NodeName] : [], lostNodes);
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }

    private sealed record StreamResult(int Index, string? Replica, int Chunks, bool Done, string? Error);

    private sealed record RunningStream(Task<string> Started, Task<StreamResult> Done);

    private static RunningStream StreamAsync(HttpClient http, int index)
    {
        var started = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        return new RunningStream(started.Task, RunAsync());

        async Task<StreamResult> RunAsync()
        {
            string? replica = null;
            var chunks = 0;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, $"/c/{ChaosStack.Cluster}/v1/chat/completions")
                {
                    Content = new StringContent(
                        $"{{\"model\":\"shoal-sim\",\"stream\":true,\"max_tokens\":4096,\"messages\":[{{\"role\":\"user\",\"content\":\"long {index}\"}}]}}",
                        Encoding.UTF8, "application/json"),
                };
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                replica = response.Headers.TryGetValues("x-shoal-replica", out var values) ? values.FirstOrDefault() : null;
                started.TrySetResult(replica ?? "?");
                if (!response.IsSuccessStatusCode) return new StreamResult(index, replica, 0, false, $"{(int)response.StatusCode}");
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (line == "data: [DONE]") return new StreamResult(index, replica, chunks, true, null);
                    if (line.StartsWith("data: ", StringComparison.Ordinal))
                    {
                        if (line.Contains("\"error\"", StringComparison.Ordinal)) return new StreamResult(index, replica, chunks, false, line);
                        chunks++;
                    }
                }
                return new StreamResult(index, replica, chunks, false, "the stream ended without [DONE]");
            }
            catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
            {
                started.TrySetResult(replica ?? "?");
                return new StreamResult(index, replica, chunks, false, e.Message);
            }
        }
    }
}
