using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.EndToEnd.Tests;

/// <summary>
/// The usage ledger end to end (issue 16, a short must-show 3): a server, an agent with a simulator
/// replica and a standalone edge process with its spool. Requests while the control plane is up, while
/// it is down (rows stay in the spool), streams cut by kill -9 of the edge, then both back: every
/// request that got its whole response has exactly one row; a stream cut by the kill may have one or
/// not (its edge died before the request ended, so usually not), and none is counted twice. The usage
/// API and <c>shoal usage</c> show the rows, and the replica's GPU-seconds.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class LedgerEndToEndTests(ITestOutputHelper output)
{
    private sealed record Sent(string Id, bool Streamed);

    // Requests the edge answered with an error (say, before its first route table came): their rows, if any, carry that status.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _refused = new(StringComparer.Ordinal);

    [Fact]
    public async Task Killed_edge_ships_its_spool_when_it_starts_again_one_row_per_request()
    {
        using var dir = new TempDirectory("shoal-ledger");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        var standalonePort = FreePort.Next();
        var api = $"http://127.0.0.1:{apiPort}";
        var processes = new List<ShoalProcess>();
        ShoalProcess StartServer()
        {
            var p = ShoalProcess.Start("server",
            [
                "server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"),
                "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes",
            ]);
            processes.Add(p);
            return p;
        }
        ShoalProcess StartEdge()
        {
            var p = ShoalProcess.Start("edge",
            [
                "edge", "--server", api, "--key-file", dir.Combine("server", "edge.key"), "--listen", $"127.0.0.1:{standalonePort}",
                "--spool-dir", dir.Combine("spool"), "--name", "edge-e2e", "--log-level", "Warning",
            ]);
            processes.Add(p);
            return p;
        }

        using var http = new HttpClient { BaseAddress = new Uri(api), Timeout = TimeSpan.FromSeconds(30) };
        using var edge = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{standalonePort}"), Timeout = TimeSpan.FromSeconds(30) };
        var server = StartServer();
        try
        {
            await DeployEndToEndTests.WaitForServerAsync(http, dir.Combine("server"));
            var endpointKey = await ApiKeys.CreateAsync(http);
            edge.WithKey(endpointKey);
            var token = await DeployEndToEndTests.CreateTokenAsync(http, 1);
            processes.Add(ShoalProcess.Start("node-1",
            [
                "agent", "--server", api, "--token", token, "--name", "node-1", "--simulate-gpus", "rtx-4090:1",
                "--data-dir", dir.Combine("node-1"), "--enable-process-runtime", "--runtime", "process", "--log-level", "Warning",
                // Back within a second of the server's restart below, not after a back-off grown to 30 s.
                "--reconnect-max", "1s",
            ]));
            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Replicas = 1,
                Env = new() { ["SIM_DECODE_MS"] = "5", ["SIM_STARTUP_DELAY_MS"] = "0" },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            await DeployEndToEndTests.WaitForReadyAsync(http, 1);
            var edgeProcess = StartEdge();
            var completed = new List<Sent> { (await Eventually.GetAsync(() => TrySendAsync(edge, 0, stream: false), s => s is not null, TimeSpan.FromSeconds(30), "the standalone edge routes"))! };
            // 1. Control plane up: rows are spooled and shipped.
            completed.AddRange(await WaveAsync(edge, 30));
            // 2. Control plane down: the edge serves from its last table, rows wait in its spool.
            await server.StopAsync();
            completed.AddRange(await WaveAsync(edge, 30));
            // 3. Streams in flight when the edge is killed (kill -9): cut, without a whole response.
            var begun = Enumerable.Range(0, 8).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToList();
            var cut = begun.Select(b => StartLongStreamAsync(edge, b)).ToList();
            await Task.WhenAll(begun.Select(b => b.Task)).WaitAsync(TimeSpan.FromSeconds(20));
            await edgeProcess.KillAsync();
            var cutIds = (await Task.WhenAll(cut)).OfType<string>().ToList();
            output.WriteLine($"{completed.Count} requests completed before the kill; {cutIds.Count} streams cut by it");

            // 4. Both back: the restarted edge ships what its spool held, then new rows.
            server = StartServer();
            await DeployEndToEndTests.WaitForServerAsync(http, dir.Combine("server"));
            edgeProcess = StartEdge();
            completed.Add((await Eventually.GetAsync(() => TrySendAsync(edge, 0, stream: false), s => s is not null, TimeSpan.FromSeconds(30), "the restarted edge routes"))!);
            completed.AddRange(await WaveAsync(edge, 15));

            var rows = await Eventually.GetAsync(
                async () => (await http.GetFromJsonAsync("/v1/usage/records?since=1h&limit=10000", ShoalJsonContext.Default.UsageRecordArray))!,
                r => completed.All(c => r.Any(x => x.RequestId == c.Id)), TimeSpan.FromSeconds(30), "a row for every completed request");

            // Exactly one row per request id; every completed request has its row, as it was served.
            Assert.Equal(rows.Length, rows.Select(r => r.RequestId).Distinct(StringComparer.Ordinal).Count());
            var byId = rows.ToDictionary(r => r.RequestId, StringComparer.Ordinal);
            foreach (var c in completed)
            {
                var row = byId[c.Id];
                // (Streamed and the token figures come from the facade's body inspection and usage tap, asserted where those are built.)
                Assert.Equal((200, false, "demo", "default", "edge-e2e"), (row.Status, row.Cut, row.Cluster, row.Project, row.Edge));
                Assert.True(row.Attempts >= 1 && row.DurationMs > 0 && row.ReplicaId is not null && row.NodeId is not null, $"row {c.Id}: {row}");
            }
            // Anything else is a stream cut by the kill (its row, if the edge wrote one, once) or a request the edge refused (with its status).
            var others = rows.Where(r => !completed.Any(c => c.Id == r.RequestId)).ToList();
            Assert.All(others, r => Assert.True(cutIds.Contains(r.RequestId) || _refused.TryGetValue(r.RequestId, out var status) && status == r.Status, $"unexpected row {r}"));
            output.WriteLine($"rows: {rows.Length} = {completed.Count} completed + {others.Count(r => cutIds.Contains(r.RequestId))} of {cutIds.Count} cut streams + {others.Count(r => _refused.ContainsKey(r.RequestId))} refused");

            // The usage API and the CLI add up to the same rows, and the replica's GPU time is metered.
            var report = (await http.GetFromJsonAsync("/v1/usage?by=cluster&since=1h", ShoalJsonContext.Default.UsageReportDto))!;
            var demo = Assert.Single(report.Rows);
            Assert.Equal(("demo", (long)rows.Length), (demo.Group, demo.Requests));
            Assert.True(demo.GpuSeconds > 0, $"no GPU-seconds for the cluster: {demo}");
            var apiByNode = (await http.GetFromJsonAsync("/v1/usage?by=node&since=1h", ShoalJsonContext.Default.UsageReportDto))!;
            output.WriteLine($"by cluster: {string.Join("; ", report.Rows)}; by node: {string.Join("; ", apiByNode.Rows)}");
            var cli = ShoalProcess.Start("cli", ["usage", "--addr", api, "--api-key", await ApiKeys.ReadOperatorKeyAsync(dir.Combine("server")), "--by", "node", "--since", "1h", "--json"]);
            processes.Add(cli);
            Assert.Equal(0, await cli.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            var byNode = JsonSerializer.Deserialize(cli.Output[cli.Output.IndexOf('{', StringComparison.Ordinal)..], ShoalJsonContext.Default.UsageReportDto)!;
            output.WriteLine($"shoal usage --by node --json: {cli.Output}");
            Assert.Equal(rows.Length, byNode.Rows.Sum(r => r.Requests));
            Assert.Contains(byNode.Rows, r => r.GpuSeconds > 0);
            // A project's endpoint key is not a management key: it may not read usage.
            using var asEndpoint = new HttpClient { BaseAddress = new Uri(api) }.WithKey(endpointKey);
            Assert.Equal(HttpStatusCode.Forbidden, (await asEndpoint.GetAsync("/v1/usage?by=cluster")).StatusCode);
        }
        catch
        {
            foreach (var p in processes) output.WriteLine($"--- {p.Name} (pid {p.Pid}, exited {p.HasExited})\n{p.Output}");
            throw;
        }
        finally
        {
            foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    /// <summary><paramref name="count"/> requests, every third streamed, 6 at a time; each must succeed.</summary>
    private async Task<List<Sent>> WaveAsync(HttpClient edge, int count)
    {
        using var gate = new SemaphoreSlim(6);
        var tasks = Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                return await TrySendAsync(edge, i, stream: i % 3 == 0) ?? throw new InvalidOperationException($"request {i} failed");
            }
            finally
            {
                gate.Release();
            }
        });
        return [.. await Task.WhenAll(tasks)];
    }

    /// <summary>One chat completion read to its end; its request id, or null when it failed.</summary>
    private async Task<Sent?> TrySendAsync(HttpClient edge, int i, bool stream)
    {
        try
        {
            using var content = Chat(i, stream, maxTokens: 4);
            using var response = await edge.PostAsync("/c/demo/v1/chat/completions", content);
            await response.Content.ReadAsStringAsync();
            if (!response.Headers.TryGetValues(GatewayHeaders.RequestId, out var ids)) return null;
            if (!response.IsSuccessStatusCode)
            {
                _refused[ids.Single()] = (int)response.StatusCode;
                return null;
            }
            return new Sent(ids.Single(), stream);
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>A stream of about ten seconds: signals when its headers came, returns its request id once it is cut (null if it ended whole).</summary>
    private static async Task<string?> StartLongStreamAsync(HttpClient edge, TaskCompletionSource begun)
    {
        using var content = Chat(1000, stream: true, maxTokens: 2000);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/chat/completions") { Content = content };
        using var response = await edge.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var id = response.Headers.GetValues(GatewayHeaders.RequestId).Single();
        begun.TrySetResult();
        try
        {
            await response.Content.ReadAsStringAsync();
            return null;
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            return id;
        }
    }

    private static StringContent Chat(int i, bool stream, int maxTokens) => new(
        $"{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello {i}\"}}],\"max_tokens\":{maxTokens},\"stream\":{(stream ? "true" : "false")}}}",
        Encoding.UTF8, "application/json");
}
