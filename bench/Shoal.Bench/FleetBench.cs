using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Shoal.Contracts;
using Shoal.Sim.Fleet;
using Shoal.Testing;

namespace Shoal.Bench;

/// <summary>
/// The control plane at fleet scale: a real <c>shoal server</c> process and, in this process, a fleet of
/// simulated agents (<see cref="FleetSimulator"/>, each 1 × rtx-4090, real WebSockets). Measures connect
/// time, the server's CPU and memory, store writes and heartbeat handling in steady state, false node
/// losses (also across a server restart, when every agent reconnects at once), deploy throughput, and how
/// fast closed and silent agents are marked disconnected.
/// Usage: <c>fleet [nodes=1000] [sqlite|postgres|CONNECTION-STRING] [clusters=(nodes-200)/replicas] [replicas=10]</c>
/// (the store may also be given as <c>--store X</c>);
/// <c>SHOAL_BENCH_FLEET_WINDOW</c> sets the steady window in seconds (default 30); <c>SHOAL_BENCH_FLEET_CLIENTS</c>
/// the concurrent API clients of the deploy (default 32).
/// </summary>
internal static class FleetBench
{
    private const string Commits = "shoal.store.commits";
    private const string Rows = "shoal.store.rows";
    private const string Heartbeat = "shoal.agent.heartbeat.duration";
    private const string StaleClosed = "shoal.agent.stale_closed";
    private static readonly TimeSpan s_settle = TimeSpan.FromSeconds(10);

    public static async Task RunAsync(string[] args)
    {
        // fleet NODES [STORE] [CLUSTERS] [REPLICAS], or the store as `--store X` anywhere (then not positional).
        var positional = new List<string>();
        string? storeOption = null;
        for (var i = 1; i < args.Length; i++)
        {
            if (args[i] == "--store" && i + 1 < args.Length) storeOption = args[++i];
            else positional.Add(args[i]);
        }
        if (storeOption is null && positional.Count > 1)
        {
            storeOption = positional[1];
            positional.RemoveAt(1);
        }
        string? Arg(int index) => positional.Count > index ? positional[index] : null;
        var nodes = int.Parse(Arg(0) ?? "1000", CultureInfo.InvariantCulture);
        var storeArg = storeOption ?? "sqlite";
        var replicasPer = int.Parse(Arg(2) ?? "10", CultureInfo.InvariantCulture);
        // 200 GPUs stay free so the replicas of the 100 killed and 100 silenced nodes have somewhere to go.
        var clusters = Arg(1) is { } c ? int.Parse(c, CultureInfo.InvariantCulture) : Math.Max(1, (nodes - 200) / replicasPer);
        var window = TimeSpan.FromSeconds(int.Parse(Environment.GetEnvironmentVariable("SHOAL_BENCH_FLEET_WINDOW") ?? "30", CultureInfo.InvariantCulture));
        var lost = Math.Min(100, nodes / 10);

        using var dir = new TempDirectory("shoal-fleet-bench");
        await using var pg = storeArg == "postgres" ? await PostgresServer.StartAsync() : null;
        var database = pg is not null ? await pg.CreateDatabaseAsync("fleet") : storeArg == "sqlite" ? null : storeArg;
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        List<string> serverArgs = ["server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"),
            "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes"];
        if (database is not null) serverArgs.AddRange(["--database", database]);

        Console.WriteLine(Fmt($"## Control plane at fleet scale: {nodes} simulated agents (1 x rtx-4090 each, heartbeats every 2 s), store {(pg is not null ? "postgres (local, durability off)" : database is null ? "sqlite" : "postgres (given)")}, {DateTime.UtcNow:yyyy-MM-dd}"));
        var server = ShoalProcess.Start("server", serverArgs);
        ServerMetricsWatcher? metrics = null;
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}"), Timeout = TimeSpan.FromMinutes(2) };
            await WaitUpAsync(http);
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", await ApiKeys.ReadOperatorKeyAsync(dir.Combine("server")));
            metrics = new ServerMetricsWatcher(server.Pid);
            var tokenResponse = await http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = nodes, TtlSeconds = 86_400 }, ShoalJsonContext.Default.CreateTokenRequest);
            tokenResponse.EnsureSuccessStatusCode();
            var token = (await tokenResponse.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;

            await using var fleet = new FleetSimulator(new FleetOptions
            {
                Server = http.BaseAddress.ToString(),
                Nodes = nodes,
                Token = token,
                ConnectConcurrency = 512,
                StartDelay = TimeSpan.FromSeconds(1),
            });

            // 1. Connect (and register) every node.
            var sw = Stopwatch.StartNew();
            fleet.Start();
            await fleet.WaitConnectedAsync(nodes, TimeSpan.FromMinutes(5));
            var connect = sw.Elapsed;
            var s = fleet.Snapshot();
            // The meters publish once a second: let the last interval of the phase arrive before summing it.
            await Task.Delay(TimeSpan.FromSeconds(2));
            var connectWrites = metrics.Sum(Commits, DateTimeOffset.MinValue, DateTimeOffset.MaxValue);
            Console.WriteLine(Fmt($"- connect + register {nodes}: {connect.TotalSeconds:F1} s ({nodes / connect.TotalSeconds:F0}/s); WebSocket connect p99 {s.ConnectP99Ms:F0} ms, hello -> welcome p50 {s.HelloP50Ms:F0} ms, p99 {s.HelloP99Ms:F0} ms; {connectWrites:F0} store writes"));

            // 2. Steady state.
            await Task.Delay(s_settle);
            var steady = await SteadyAsync(server.Pid, metrics, fleet, window);
            Console.WriteLine(Fmt($"- steady {window.TotalSeconds:F0} s: server CPU {steady.Cores:F2} cores, RSS {steady.RssMiB:F0} MiB, store writes {steady.CommitsPerSecond:F1}/s ({steady.RowsPerSecond:F1} rows/s), heartbeats handled {steady.HeartbeatsPerSecond:F0}/s, handling p99 {steady.HeartbeatP99Median:F2} ms (median of 1 s intervals; worst interval {steady.HeartbeatP99Max:F2} ms); simulator heartbeat lateness p99 {steady.FleetLateP99:F0} ms (100 ms ticks); simulator process {steady.FleetCores:F2} cores, RSS {steady.FleetRssMiB:F0} MiB"));
            var falseLosses = await FalseLossesAsync(http, metrics, fleet, []);
            Console.WriteLine(Fmt($"- false node losses since the start: {falseLosses}"));

            // 3. Server restart: every agent reconnects at once.
            metrics.Dispose();
            metrics = null;
            var lostBefore = fleet.Snapshot().SessionsLost;
            await server.StopAsync();
            sw.Restart();
            server = ShoalProcess.Start("server", serverArgs);
            await WaitUpAsync(http);
            metrics = new ServerMetricsWatcher(server.Pid);
            await WaitAsync(() => fleet.Snapshot().Connected >= nodes, TimeSpan.FromMinutes(5), "every node back after the restart");
            var back = sw.Elapsed;
            s = fleet.Snapshot();
            Console.WriteLine(Fmt($"- server restart: all {nodes} reconnected {back.TotalSeconds:F1} s after the new process started (agents back off 1 s ±50 %, then 2 s, …)"));
            await Task.Delay(s_settle);
            var cpuAfterRestart = await SteadyAsync(server.Pid, metrics, fleet, TimeSpan.FromSeconds(10));
            var extraLost = fleet.Snapshot().SessionsLost - lostBefore - nodes;
            falseLosses = await FalseLossesAsync(http, metrics, fleet, []);
            Console.WriteLine(Fmt($"- false node losses after the restart: {falseLosses}; sessions lost beyond the restart's own: {Math.Max(0, extraLost)}; steady 10 s after: CPU {cpuAfterRestart.Cores:F2} cores, RSS {cpuAfterRestart.RssMiB:F0} MiB, store writes {cpuAfterRestart.CommitsPerSecond:F1}/s"));

            // 4. Deploy clusters x replicas: time until every assignment is acked.
            var total = clusters * replicasPer;
            var deployFrom = DateTimeOffset.UtcNow;
            var cpuBefore = (Server: ProcessCpuSeconds(server.Pid), Postgres: PostgresCpuSeconds(), Self: Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds);
            sw.Restart();
            var created = 0;
            var apiClients = int.Parse(Environment.GetEnvironmentVariable("SHOAL_BENCH_FLEET_CLIENTS") ?? "32", CultureInfo.InvariantCulture);
            await Parallel.ForAsync(0, clusters, new ParallelOptions { MaxDegreeOfParallelism = apiClients }, async (i, ct) =>
            {
                var response = await http.PostAsJsonAsync("/v1/clusters",
                    new CreateClusterRequest { Name = $"c{i:D5}", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = replicasPer },
                    ShoalJsonContext.Default.CreateClusterRequest, ct);
                response.EnsureSuccessStatusCode();
                Interlocked.Increment(ref created);
            });
            var createdIn = sw.Elapsed;
            await WaitAsync(() => fleet.Snapshot().Replicas >= total, TimeSpan.FromMinutes(10), "every assignment at the nodes");
            var acked = sw.Elapsed;
            await WaitAsync(async () => (await NodesAsync(http)).All(n => n.AckedRevision >= n.Revision), TimeSpan.FromMinutes(5), "every ack recorded by the server");
            var ackedAtServer = sw.Elapsed;
            await WaitAsync(() => fleet.Snapshot().ReplicasReady >= total, TimeSpan.FromMinutes(10), "every replica ready at the nodes");
            await WaitAsync(async () => (await ClustersAsync(http)).Sum(c => c.ReadyReplicas) >= total, TimeSpan.FromMinutes(5), "every replica ready at the server");
            var ready = sw.Elapsed;
            var deployTo = DateTimeOffset.UtcNow;
            await Task.Delay(TimeSpan.FromSeconds(2));
            var deployWrites = metrics.Sum(Commits, deployFrom, deployTo.AddSeconds(1.5));
            Console.WriteLine(Fmt($"- deploy {clusters} clusters x {replicasPer} replicas ({total} placements, {apiClients} API clients): API calls done in {createdIn.TotalSeconds:F1} s; all assignments at the nodes and acked after {acked.TotalSeconds:F1} s = {total / acked.TotalSeconds:F0} placements/s (server's view of the acks complete at {ackedAtServer.TotalSeconds:F1} s); all ready (1 s start delay) at {ready.TotalSeconds:F1} s; {deployWrites:F0} store writes ({deployWrites / ready.TotalSeconds:F0}/s)"));

            Console.WriteLine(Fmt($"  CPU during the deploy (until all ready): server {ProcessCpuSeconds(server.Pid) - cpuBefore.Server:F1} s, PostgreSQL processes {PostgresCpuSeconds() - cpuBefore.Postgres:F1} s, simulator and bench {Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - cpuBefore.Self:F1} s, over {ready.TotalSeconds:F1} s of wall time"));
            PrintLockFigures(metrics, deployFrom, deployTo);

            // 5. Kill sockets, silence agents: how fast each is marked disconnected; replicas replaced after the grace.
            var killed = fleet.Kill(lost);
            var (killedAfter, killedSeen) = await TimeToDisconnectedAsync(http, killed, TimeSpan.FromSeconds(60));
            Console.WriteLine(Fmt($"- kill {killed.Count} sockets at once: marked disconnected (the server's disconnectedSince) after p50 {Pct(killedAfter, 50):F2} s, p99 {Pct(killedAfter, 99):F2} s, max {killedAfter.Max():F2} s; seen in the nodes list after p99 {Pct(killedSeen, 99):F2} s (a listing takes {await ListTimeAsync(http):F2} s)"));
            var silenced = fleet.Silence(lost);
            var (silencedAfter, silencedSeen) = await TimeToDisconnectedAsync(http, silenced, TimeSpan.FromSeconds(60));
            Console.WriteLine(Fmt($"- silence {silenced.Count} agents (socket open): marked disconnected (the server's disconnectedSince) after p50 {Pct(silencedAfter, 50):F2} s, p99 {Pct(silencedAfter, 99):F2} s, max {silencedAfter.Max():F2} s (3 heartbeat intervals = 6 s); seen in the nodes list after p99 {Pct(silencedSeen, 99):F2} s"));
            sw.Restart();
            await WaitAsync(async () => (await ClustersAsync(http)).Sum(c => c.ReadyReplicas) >= total, TimeSpan.FromMinutes(3), "the lost replicas replaced");
            Console.WriteLine(Fmt($"- replicas of the {killed.Count + silenced.Count} lost nodes ready elsewhere {sw.Elapsed.TotalSeconds:F1} s after the last silent one was marked disconnected (grace 10 s)"));
            falseLosses = await FalseLossesAsync(http, metrics, fleet, [.. killed.Select(k => k.NodeId), .. silenced.Select(k => k.NodeId)]);
            Console.WriteLine(Fmt($"- false node losses at the end (nodes the simulator did not drop; the closes for missed heartbeats include the {silenced.Count} silenced): {falseLosses}"));
        }
        catch
        {
            Console.Error.WriteLine(string.Join('\n', server.Output.Split('\n').TakeLast(40)));
            throw;
        }
        finally
        {
            metrics?.Dispose();
            await server.StopAsync();
            await server.DisposeAsync();
        }
    }

    /// <summary>Where the deploy's time went on the server: the state lock's wait and hold per operation, and store commits (p50 = median of 1 s intervals, p99 = worst interval).</summary>
    private static double ProcessCpuSeconds(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return p.TotalProcessorTime.TotalSeconds;
        }
        catch (ArgumentException)
        {
            return 0;
        }
    }

    /// <summary>CPU time of every process named <c>postgres</c> now alive (the benchmark's own server and its backends).</summary>
    private static double PostgresCpuSeconds()
    {
        var total = 0.0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _)) continue;
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "comm")).Trim() != "postgres") continue;
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                total += (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
            }
            catch (IOException)
            {
            }
        }
        return total;
    }

    private static void PrintLockFigures(ServerMetricsWatcher metrics, DateTimeOffset from, DateTimeOffset to)
    {
        foreach (var instrument in new[] { "shoal.state.lock.wait", "shoal.state.lock.held", "shoal.state.plan.duration", "shoal.state.commit.duration", "shoal.store.commit.duration" })
        {
            var byOp = metrics.Between(instrument, from, to.AddSeconds(1.5)).Where(x => x.Count > 0).GroupBy(x => x.Tags).OrderByDescending(g => g.Sum(x => x.Count));
            foreach (var g in byOp.Take(6))
            {
                var p50s = g.Select(x => x.P50).Order().ToArray();
                Console.WriteLine(Fmt($"  {instrument} {g.Key}: {g.Sum(x => x.Count)} times, p50 {p50s[p50s.Length / 2]:F2} ms, p99 {g.Max(x => x.P99):F2} ms"));
            }
        }
    }

    private sealed record Steady(double Cores, double RssMiB, double CommitsPerSecond, double RowsPerSecond, double HeartbeatsPerSecond, double HeartbeatP99Median, double HeartbeatP99Max, double FleetLateP99,
        double FleetCores, double FleetRssMiB);

    private static async Task<Steady> SteadyAsync(int pid, ServerMetricsWatcher metrics, FleetSimulator fleet, TimeSpan window)
    {
        using var process = Process.GetProcessById(pid);
        using var self = Process.GetCurrentProcess();
        fleet.Snapshot();
        var cpu0 = process.TotalProcessorTime;
        var selfCpu0 = self.TotalProcessorTime;
        var from = DateTimeOffset.UtcNow;
        var sw = Stopwatch.StartNew();
        await Task.Delay(window);
        process.Refresh();
        var seconds = sw.Elapsed.TotalSeconds;
        var cores = (process.TotalProcessorTime - cpu0).TotalSeconds / seconds;
        var rss = process.WorkingSet64 / 1024.0 / 1024.0;
        self.Refresh();
        var fleetCores = (self.TotalProcessorTime - selfCpu0).TotalSeconds / seconds;
        var fleetRss = self.WorkingSet64 / 1024.0 / 1024.0;
        var to = DateTimeOffset.UtcNow;
        var fleetStats = fleet.Snapshot();
        var heartbeats = metrics.Between(Heartbeat, from, to);
        var p99s = heartbeats.Where(h => h.Count > 0).Select(h => h.P99).ToList();
        return new Steady(cores, rss, metrics.Sum(Commits, from, to) / seconds, metrics.Sum(Rows, from, to) / seconds,
            // One sample per 1 s interval: a rate per sample, free of the window's edges.
            heartbeats.Count == 0 ? 0 : heartbeats.Sum(h => h.Count) / (double)heartbeats.Count, p99s.Count == 0 ? double.NaN : Pct(p99s, 50), p99s.Count == 0 ? double.NaN : p99s.Max(),
            fleetStats.HeartbeatLateP99Ms ?? double.NaN, fleetCores, fleetRss);
    }

    /// <summary>Nodes the simulator did not drop that the server shows disconnected, or that it closed for missed heartbeats.</summary>
    private static async Task<string> FalseLossesAsync(HttpClient http, ServerMetricsWatcher metrics, FleetSimulator fleet, HashSet<string> dropped)
    {
        var all = await NodesAsync(http);
        var kept = all.Where(n => !dropped.Contains(n.Id)).ToArray();
        var notReady = kept.Count(n => n.State != NodeState.Ready);
        var flapped = kept.Count(n => n.RecentDisconnects > 0);
        var stale = metrics.Sum(StaleClosed, DateTimeOffset.MinValue, DateTimeOffset.MaxValue);
        return Fmt($"{notReady} not ready, {flapped} with a recent disconnect, {stale:F0} sessions closed by this server process for missed heartbeats, simulator sessions lost in total {fleet.Snapshot().SessionsLost}");
    }

    /// <summary>
    /// Seconds from each drop until the server marked the node disconnected (its <c>disconnectedSince</c>),
    /// and until this poll of the nodes list saw it (which adds the listing's own time and the poll's period).
    /// </summary>
    private static async Task<(List<double> Marked, List<double> Seen)> TimeToDisconnectedAsync(HttpClient http, IReadOnlyList<DroppedNode> dropped, TimeSpan timeout)
    {
        var pending = dropped.ToDictionary(d => d.NodeId, d => d.At);
        var marked = new List<double>();
        var seen = new List<double>();
        var sw = Stopwatch.StartNew();
        while (pending.Count > 0)
        {
            if (sw.Elapsed > timeout) throw new TimeoutException($"{pending.Count} dropped nodes still not disconnected after {timeout}");
            var nodes = await NodesAsync(http);
            var now = DateTimeOffset.UtcNow;
            foreach (var n in nodes)
            {
                if (n.State == NodeState.Ready || !pending.Remove(n.Id, out var at)) continue;
                seen.Add((now - at).TotalSeconds);
                marked.Add(((n.DisconnectedSince ?? now) - at).TotalSeconds);
            }
            await Task.Delay(50);
        }
        return (marked, seen);
    }

    private static async Task<double> ListTimeAsync(HttpClient http)
    {
        var sw = Stopwatch.StartNew();
        await NodesAsync(http);
        return sw.Elapsed.TotalSeconds;
    }

    private static async Task<NodeDto[]> NodesAsync(HttpClient http) =>
        (await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!;

    private static async Task<ClusterDto[]> ClustersAsync(HttpClient http) =>
        (await http.GetFromJsonAsync("/v1/clusters", ShoalJsonContext.Default.ClusterDtoArray))!;

    private static async Task WaitUpAsync(HttpClient http)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if ((await http.GetAsync("/healthz")).IsSuccessStatusCode) return;
            }
            catch (HttpRequestException)
            {
            }
            if (sw.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException("the server did not come up");
            await Task.Delay(50);
        }
    }

    private static Task WaitAsync(Func<bool> done, TimeSpan timeout, string what) => WaitAsync(() => Task.FromResult(done()), timeout, what);

    private static async Task WaitAsync(Func<Task<bool>> done, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!await done())
        {
            if (sw.Elapsed > timeout) throw new TimeoutException($"timed out after {timeout} waiting for {what}");
            await Task.Delay(100);
        }
    }

    private static double Pct(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
