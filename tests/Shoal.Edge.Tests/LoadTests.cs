using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Shoal.Contracts;
using Shoal.Sim;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Edge.Tests;

/// <summary>The edge in front of real simulators: replica death under load, time to first token, 1,000 concurrent streams.</summary>
public sealed class LoadTests(ITestOutputHelper output)
{
    private static StringContent Completion(int maxTokens, bool stream) =>
        new($"{{\"model\":\"shoal-sim\",\"prompt\":\"hello there\",\"max_tokens\":{maxTokens},\"stream\":{(stream ? "true" : "false")}}}", Encoding.UTF8, "application/json");

    [Fact]
    [Trait(Categories.Name, Categories.EndToEnd)]
    public async Task Killing_a_replica_process_under_load_fails_no_request_and_ends_its_streams_with_an_error_within_two_seconds()
    {
        var shoal = ChildProcess.BuiltExecutable("src/Shoal.Cli", "shoal");
        var sims = new List<(ChildProcess Process, string Id, Uri Address)>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var port = FreePort.Next();
                var env = new Dictionary<string, string>
                {
                    ["SHOAL_REPLICA_ID"] = $"sim-{i}",
                    ["SIM_DECODE_MS"] = "5",
                    ["SIM_BATCH_SLOWDOWN"] = "0",
                    ["SIM_BATCH_SLOTS"] = "64",
                };
                sims.Add((ChildProcess.Start(shoal, ["sim", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)], env), $"sim-{i}", new Uri($"http://127.0.0.1:{port}")));
            }
            using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
            foreach (var sim in sims)
            {
                await Eventually.GetAsync(async () =>
                {
                    try
                    {
                        return (await probe.GetAsync(new Uri(sim.Address, "/health"))).StatusCode;
                    }
                    catch (HttpRequestException)
                    {
                        return HttpStatusCode.ServiceUnavailable;
                    }
                }, s => s == HttpStatusCode.OK, TimeSpan.FromSeconds(30), what: $"{sim.Id} healthy");
            }

            await using var edge = await TestEdge.StartAsync();
            edge.SetCluster("demo", sims.Select(s => (s.Id, s.Address)), queueTimeoutMs: 10_000);
            using var client = edge.Client(TimeSpan.FromSeconds(30));

            // Long streams (2,000 tokens at 5 ms: about 10 s), spread over the replicas.
            var streams = new List<(string Replica, Task<(bool Error, long EndedAt)> Ended)>();
            for (var i = 0; i < 9; i++)
            {
                var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/completions") { Content = Completion(2000, stream: true) },
                    HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                streams.Add((response.Headers.GetValues(EdgeProxy.ReplicaHeader).Single(), ReadToEndAsync(response)));
            }
            var victimId = streams[0].Replica;
            var victim = sims.Single(s => s.Id == victimId);

            // Steady load: 6 workers sending short non-streaming completions.
            using var stop = new CancellationTokenSource();
            var ok = 0;
            var failures = new List<string>();
            var workers = Enumerable.Range(0, 6).Select(_ => Task.Run(async () =>
            {
                for (var n = 0; n < 20_000 && !stop.IsCancellationRequested; n++)
                {
                    try
                    {
                        using var r = await client.PostAsync("/c/demo/v1/completions", Completion(4, stream: false));
                        var body = await r.Content.ReadAsStringAsync();
                        if (r.StatusCode == HttpStatusCode.OK && body.Contains("\"choices\"", StringComparison.Ordinal)) Interlocked.Increment(ref ok);
                        else lock (failures) failures.Add($"{(int)r.StatusCode} {body}");
                    }
                    catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                    {
                        lock (failures) failures.Add(e.GetType().Name + ": " + e.Message);
                    }
                }
            })).ToArray();

            await Task.Delay(TimeSpan.FromSeconds(1.5));
            var beforeKill = Volatile.Read(ref ok);
            var killedAt = Stopwatch.GetTimestamp();
            await victim.Process.KillAsync();
            await Task.Delay(TimeSpan.FromSeconds(3));
            await stop.CancelAsync();
            await Task.WhenAll(workers);

            foreach (var (replica, ended) in streams.Where(s => s.Replica == victimId))
            {
                var (error, endedAt) = await ended.WaitAsync(TimeSpan.FromSeconds(10));
                var after = Stopwatch.GetElapsedTime(killedAt, endedAt);
                output.WriteLine($"stream on {replica} ended {(error ? "with an error" : "normally")} {after.TotalMilliseconds:F0} ms after the kill");
                Assert.True(error, "a stream on the killed replica ended as if complete");
                Assert.True(after < TimeSpan.FromSeconds(2), $"a stream on the killed replica took {after} to end");
            }
            Assert.All(streams.Where(s => s.Replica != victimId), s => Assert.False(s.Ended.IsCompleted && s.Ended.Result.Error, "a stream on a live replica failed"));

            var metrics = await edge.MetricsAsync();
            output.WriteLine($"{ok} requests succeeded ({beforeKill} before the kill), {failures.Count} failed; victim {victimId}");
            output.WriteLine(string.Join('\n', metrics.Split('\n').Where(l => l.StartsWith("shoal_edge_retries", StringComparison.Ordinal) || l.StartsWith("shoal_edge_ejections", StringComparison.Ordinal))));
            Assert.True(failures.Count == 0, string.Join('\n', failures.Take(10)));
            Assert.True(beforeKill > 50 && ok > beforeKill + 50, $"too little load: {beforeKill} before, {ok} in all");
            // Ejected at its first refused connection, then again (for longer) each time the back-off let one request probe it.
            Assert.DoesNotContain($"shoal_edge_ejections_total{{cluster=\"demo\",replica=\"{victimId}\"}} 0\n", metrics);
            Assert.Contains($"shoal_edge_ejections_total{{cluster=\"demo\",replica=\"{victimId}\"}} ", metrics);
        }
        finally
        {
            foreach (var sim in sims) await sim.Process.DisposeAsync();
        }
    }

    private static async Task<(bool Error, long EndedAt)> ReadToEndAsync(HttpResponseMessage response)
    {
        using (response)
        {
            var buffer = new byte[4096];
            try
            {
                var stream = await response.Content.ReadAsStreamAsync();
                var tail = "";
                int n;
                while ((n = await stream.ReadAsync(buffer)) > 0) tail = Encoding.UTF8.GetString(buffer, 0, n);
                return (!tail.Contains("[DONE]", StringComparison.Ordinal), Stopwatch.GetTimestamp());
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                return (true, Stopwatch.GetTimestamp());
            }
        }
    }

    [Fact]
    public async Task Through_the_edge_the_median_time_to_first_token_is_within_5_ms_of_direct()
    {
        await using var sim = SimServer.Build(new SimOptions { Port = 0, ReplicaId = "sim", BatchSlots = 16 });
        await sim.StartAsync();
        await using var edge = await TestEdge.StartAsync();
        edge.SetCluster("demo", [("sim", SimServer.Address(sim))]);
        using var direct = new HttpClient { BaseAddress = SimServer.Address(sim) };
        using var via = edge.Client();

        for (var i = 0; i < 10; i++)
        {
            await TimeToFirstTokenAsync(direct, "/v1/completions");
            await TimeToFirstTokenAsync(via, "/c/demo/v1/completions");
        }
        var directTimes = new List<double>();
        var edgeTimes = new List<double>();
        for (var i = 0; i < 100; i++)
        {
            directTimes.Add(await TimeToFirstTokenAsync(direct, "/v1/completions"));
            edgeTimes.Add(await TimeToFirstTokenAsync(via, "/c/demo/v1/completions"));
        }
        var d = Median(directTimes);
        var e = Median(edgeTimes);
        output.WriteLine($"median time to first token: direct {d:F2} ms, through the edge {e:F2} ms");
        Assert.True(e - d < 5, $"the edge adds {e - d:F2} ms to the median time to first token (direct {d:F2} ms, edge {e:F2} ms)");
    }

    /// <summary>Milliseconds from sending a streaming request until its first body bytes (the simulator sends headers with the first token).</summary>
    internal static async Task<double> TimeToFirstTokenAsync(HttpClient client, string path)
    {
        var clock = Stopwatch.StartNew();
        using var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = Completion(4, stream: true) }, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        await using var stream = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[4096];
        if (await stream.ReadAsync(buffer) == 0) throw new InvalidOperationException("empty stream");
        var elapsed = clock.Elapsed.TotalMilliseconds;
        while (await stream.ReadAsync(buffer) > 0)
        {
        }
        return elapsed;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return (sorted[(sorted.Length - 1) / 2] + sorted[sorted.Length / 2]) / 2;
    }

    [Fact]
    [Trait(Categories.Name, Categories.EndToEnd)]
    public async Task A_thousand_concurrent_streams_through_an_edge_process_all_complete_and_it_stays_under_500_MB()
    {
        const int Streams = 1000;
        var sims = new List<WebApplication>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var sim = SimServer.Build(new SimOptions
                {
                    Port = 0,
                    ReplicaId = $"sim-{i}",
                    BatchSlots = 400,
                    MaxQueue = 2000,
                    BatchSlowdown = 0,
                    DecodePerToken = TimeSpan.FromMilliseconds(100),
                });
                await sim.StartAsync();
                sims.Add(sim);
            }
            var table = new RouteTable
            {
                Version = 1,
                Clusters = new(StringComparer.Ordinal)
                {
                    ["demo"] = TestEdge.Route("demo", sims.Select((s, i) => ($"sim-{i}", SimServer.Address(s)))),
                },
            };
            using var dir = new TempDirectory();
            var routes = Path.Combine(dir.Path, "routes.json");
            await File.WriteAllTextAsync(routes, JsonSerializer.Serialize(table, ShoalJsonContext.Default.RouteTable));
            await using var edge = ChildProcess.Start(ChildProcess.BuiltExecutable("tests/Shoal.Edge.TestHost", "Shoal.Edge.TestHost"), [routes]);
            var address = new Uri(await edge.ListeningAsync(TimeSpan.FromSeconds(30)));
            var idle = edge.PeakResidentBytes();

            using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue }) { BaseAddress = address, Timeout = TimeSpan.FromMinutes(2) };
            var clock = Stopwatch.StartNew();
            // How many streams the simulators decode at once: proof that the 1,000 really overlap.
            var peakRunning = 0;
            using var sampling = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                while (!sampling.IsCancellationRequested)
                {
                    peakRunning = Math.Max(peakRunning, sims.Sum(s => SimServer.Engine(s).Scheduler.Running));
                    await Task.Delay(20);
                }
            });
            var results = await Task.WhenAll(Enumerable.Range(0, Streams).Select(_ => Task.Run(async () =>
            {
                try
                {
                    using var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/completions") { Content = Completion(20, stream: true) },
                        HttpCompletionOption.ResponseHeadersRead);
                    var body = await response.Content.ReadAsStringAsync();
                    return response.StatusCode == HttpStatusCode.OK && body.Contains("data: [DONE]", StringComparison.Ordinal) ? "ok" : $"{(int)response.StatusCode} {body}";
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                {
                    return e.Message;
                }
            }))).WaitAsync(TimeSpan.FromMinutes(3));
            await sampling.CancelAsync();
            await sampler;
            var peak = edge.PeakResidentBytes();
            output.WriteLine($"{results.Count(r => r == "ok")}/{Streams} streams complete in {clock.Elapsed.TotalSeconds:F1} s, at most {peakRunning} at once; edge peak RSS {peak / 1048576.0:F0} MB (idle {idle / 1048576.0:F0} MB)");
            Assert.All(results, r => Assert.Equal("ok", r));
            Assert.True(peakRunning >= Streams * 9 / 10, $"only {peakRunning} streams ran at once");
            Assert.True(peak < 500L * 1024 * 1024, $"edge peak resident memory {peak / 1048576} MB");
        }
        finally
        {
            foreach (var sim in sims) await sim.DisposeAsync();
        }
    }
}
