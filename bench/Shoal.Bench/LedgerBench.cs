using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Bench;

/// <summary>
/// <c>ledger [requests] [clients]</c> (issue 16, must-show 3): a real <c>shoal server</c>, an agent with
/// two simulator replicas and a standalone <c>shoal edge</c> with its usage spool. <c>requests</c>
/// (default 5,000) answered requests, a third streamed, from <c>clients</c> (default 32) at once; at 30 %
/// one replica process is killed mid-stream (its streams are cut), at 50 % the edge is killed with
/// kill -9 and started again at once (clients retry until it answers). Then it waits until the
/// control plane holds a row for every answered request and counts: rows, request ids missing
/// (among whole responses: must be 0), ids stored twice (must be 0), cut rows, and how long the
/// rows took to be stored after the load ended.
/// </summary>
internal static class LedgerBench
{
    private sealed record Answer(string Id, bool Streamed, bool Whole, int Status);

    public static async Task RunAsync(string[] args)
    {
        var total = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5_000;
        var clients = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 32;
        using var dir = new TempDirectory("shoal-ledger-bench");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        var standalonePort = FreePort.Next();
        var api = $"http://127.0.0.1:{apiPort}";
        Console.WriteLine(Fmt($"## Usage ledger: {total:N0} requests (a third streamed), {clients} clients, a replica killed mid-stream, the edge killed (kill -9) and restarted, {DateTime.UtcNow:yyyy-MM-dd}"));
        var processes = new List<ShoalProcess>();
        ShoalProcess StartEdge()
        {
            var p = ShoalProcess.Start("edge",
            [
                "edge", "--server", api, "--key-file", dir.Combine("server", "edge.key"), "--listen", $"127.0.0.1:{standalonePort}",
                "--spool-dir", dir.Combine("spool"), "--name", "bench-edge", "--log-level", "Warning",
            ]);
            processes.Add(p);
            return p;
        }
        try
        {
            processes.Add(ShoalProcess.Start("server",
            [
                "server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"),
                "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes",
            ]));
            using var http = new HttpClient { BaseAddress = new Uri(api), Timeout = TimeSpan.FromSeconds(60) };
            await UntilAsync(async () => (await http.GetAsync("/healthz")).IsSuccessStatusCode, TimeSpan.FromSeconds(60));
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", await ApiKeys.ReadOperatorKeyAsync(dir.Combine("server")));
            var endpointKey = await ApiKeys.CreateAsync(http);
            var tokenResponse = await http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 1 }, ShoalJsonContext.Default.CreateTokenRequest);
            tokenResponse.EnsureSuccessStatusCode();
            var token = (await tokenResponse.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
            processes.Add(ShoalProcess.Start("node",
            [
                "agent", "--server", api, "--token", token, "--name", "node", "--simulate-gpus", "rtx-4090:2",
                "--data-dir", dir.Combine("node"), "--enable-process-runtime", "--runtime", "process", "--log-level", "Warning",
            ]));
            var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
            {
                Name = "demo",
                Image = "shoal/sim",
                Gpu = "rtx-4090",
                Replicas = 2,
                Env = new() { ["SIM_DECODE_MS"] = "2", ["SIM_STARTUP_DELAY_MS"] = "0", ["SIM_BATCH_SLOTS"] = "64" },
            }, ShoalJsonContext.Default.CreateClusterRequest);
            created.EnsureSuccessStatusCode();
            await UntilAsync(async () => (await http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto))!.Cluster.ReadyReplicas == 2, TimeSpan.FromSeconds(60));
            var edgeProcess = StartEdge();
            using var edge = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients * 2 }) { BaseAddress = new Uri($"http://127.0.0.1:{standalonePort}"), Timeout = TimeSpan.FromSeconds(60) };
            edge.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", endpointKey);
            await UntilAsync(async () => (await SendAsync(edge, 0)) is { Whole: true, Status: 200 }, TimeSpan.FromSeconds(60));

            var answers = new ConcurrentQueue<Answer>();
            var answered = 0;
            var retries = 0;
            var replicaKilled = 0;
            var edgeKilled = 0;
            var edgeRestart = Task.CompletedTask;
            var clock = Stopwatch.StartNew();
            async Task ClientAsync(int c)
            {
                for (var i = c; ; i += clients)
                {
                    if (Volatile.Read(ref answered) >= total) return;
                    var answer = await SendAsync(edge, i);
                    if (answer is null)
                    {
                        // No response at all (the edge is down): not a request the ledger could know; try again.
                        Interlocked.Increment(ref retries);
                        await Task.Delay(20);
                        continue;
                    }
                    answers.Enqueue(answer);
                    var n = Interlocked.Increment(ref answered);
                    if (n >= total * 3 / 10 && Interlocked.Exchange(ref replicaKilled, 1) == 0)
                    {
                        // One replica process dies mid-stream (the agent restarts it): its streams are cut.
                        var pid = ReplicaProcesses.Find().Values.SelectMany(p => p).First();
                        Process.GetProcessById(pid).Kill();
                    }
                    if (n >= total / 2 && Interlocked.Exchange(ref edgeKilled, 1) == 0)
                    {
                        edgeRestart = Task.Run(async () =>
                        {
                            await edgeProcess.KillAsync();
                            edgeProcess = StartEdge();
                        });
                    }
                }
            }
            await Task.WhenAll(Enumerable.Range(0, clients).Select(ClientAsync));
            await edgeRestart;
            var loadSeconds = clock.Elapsed.TotalSeconds;
            var all = answers.ToArray();
            var loadEnd = Stopwatch.StartNew();
            var whole = all.Where(a => a.Whole).ToList();
            UsageRecord[] rows = [];
            await UntilAsync(async () =>
            {
                rows = (await http.GetFromJsonAsync("/v1/usage/records?since=1h&limit=100000", ShoalJsonContext.Default.UsageRecordArray))!;
                var stored = rows.Select(r => r.RequestId).ToHashSet(StringComparer.Ordinal);
                return whole.All(a => stored.Contains(a.Id));
            }, TimeSpan.FromSeconds(120));
            var storedAfter = loadEnd.Elapsed.TotalSeconds;

            var byId = rows.GroupBy(r => r.RequestId, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
            var cutAtClient = all.Where(a => !a.Whole).ToList();
            var ids = all.Select(a => a.Id).ToHashSet(StringComparer.Ordinal);
            Console.WriteLine(Fmt($"load: {loadSeconds:F1} s; answered {all.Length:N0} ({all.Count(a => a.Streamed):N0} streamed), {whole.Count:N0} whole ({whole.Count(a => a.Status != 200)} not 200), {cutAtClient.Count} cut at the client; {retries} tries without a response while the edge restarted"));
            Console.WriteLine(Fmt($"rows stored: {rows.Length:N0}; ids stored twice: {byId.Values.Count(v => v > 1)}; whole responses without a row: {whole.Count(a => !byId.ContainsKey(a.Id))}"));
            Console.WriteLine(Fmt($"cut at the client: {cutAtClient.Count(a => byId.ContainsKey(a.Id))} with a row (cut by the replica kill, recorded cut), {cutAtClient.Count(a => !byId.ContainsKey(a.Id))} without (in flight when the edge was killed); rows marked cut: {rows.Count(r => r.Cut)}"));
            Console.WriteLine(Fmt($"rows of requests no client saw answered: {rows.Count(r => !ids.Contains(r.RequestId))} (the readiness probe, answered before the load)"));
            Console.WriteLine(Fmt($"every whole response's row stored {storedAfter:F1} s after the load ended"));
            var report = (await http.GetFromJsonAsync("/v1/usage?by=node&since=1h", ShoalJsonContext.Default.UsageReportDto))!;
            foreach (var r in report.Rows) Console.WriteLine(Fmt($"by node {r.Group}: {r.Requests:N0} requests, {r.Errors} errors, {r.GpuSeconds:F1} GPU-seconds"));
        }
        catch
        {
            foreach (var p in processes) Console.Error.WriteLine($"--- {p.Name} (exited {p.HasExited})\n{p.Output}");
            throw;
        }
        finally
        {
            foreach (var p in processes.AsEnumerable().Reverse()) await p.StopAsync(TimeSpan.FromSeconds(15));
            foreach (var p in processes) await p.DisposeAsync();
        }
    }

    /// <summary>One chat completion read to its end (a third streamed); null when no response came at all.</summary>
    private static async Task<Answer?> SendAsync(HttpClient edge, int i)
    {
        var stream = i % 3 == 0;
        using var content = new StringContent(
            $"{{\"model\":\"shoal-sim\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello {i}\"}}],\"max_tokens\":{(stream ? 64 : 8)},\"stream\":{(stream ? "true" : "false")}}}",
            Encoding.UTF8, "application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/c/demo/v1/chat/completions") { Content = content };
        HttpResponseMessage response;
        try
        {
            response = await edge.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
        using (response)
        {
            if (!response.Headers.TryGetValues(GatewayHeaders.RequestId, out var ids)) return null;
            var id = ids.Single();
            try
            {
                await response.Content.ReadAsStringAsync();
                return new Answer(id, stream, true, (int)response.StatusCode);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
            {
                return new Answer(id, stream, false, (int)response.StatusCode);
            }
        }
    }

    private static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                if (await condition()) return;
            }
            catch (HttpRequestException)
            {
                // Not up yet.
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException("timed out");
            await Task.Delay(200);
        }
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
