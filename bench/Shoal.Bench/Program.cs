using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using Microsoft.Extensions.Logging;
using Shoal.Agent;
using Shoal.Contracts;
using Shoal.ControlPlane;
using Shoal.Core.Scheduling;
using Shoal.Server;

// Shoal benchmarks. Usage: dotnet run -c Release --project bench/Shoal.Bench -- [schedule|reconcile [passes]|deploy|routes|routes-delta [seconds] [nodes lost/min] [load changes/s]|all|proxy [seconds] [rounds] [pinned|unpinned] [warm-up seconds]|edge|edge-ttft|routing [seconds]|first-byte [rounds]|hold [requests] [max held] [queue timeout s]|container [rounds]|cli-startup [runs] [label=shoal-path ...]|cli-deploy [rounds] [label=shoal-path]|fleet [nodes] [sqlite|postgres|CONNECTION] [clusters] [replicas]|autoscale [png] [model-load-ms]|autoscale-zero [burst] [model-load-ms] [cold-edge]|coldstart-docker [rounds]|gateway-tokens [rounds]|ledger [requests] [clients]|gateway-limits [seconds] [clients] [both|up|killed]|gateway [rounds] [requests] [clients]|gateway-path [rounds] [requests]]
// `container`, `coldstart-docker` and `cli-deploy` need a Docker engine and a static busybox; `proxy` needs wrk and nginx; `fleet`, `autoscale`, `ledger` and `gateway-limits` start a `shoal server` process (and PostgreSQL for `postgres`); none is part of `all`.
var which = args.Length > 0 ? args[0] : "all";
// The fleet simulator stands in for 10,000 `shoal agent` processes, whose idle thread-pool workers sleep
// instead of spinning: so do this process's (spinning took a third of the simulator's CPU in a deploy).
if (which == "fleet" && Environment.GetEnvironmentVariable("SHOAL_BENCH_AGENT_SPIN") != "1") AgentHost.PreferSleepingThreadPool();
if (which == "backend")
{
    await Shoal.Bench.ProxyBench.BackendAsync(int.Parse(args[1], CultureInfo.InvariantCulture));
    return 0;
}
if (which == "gateway-backend")
{
    await Shoal.Bench.GatewayWrk.BackendAsync(int.Parse(args[1], CultureInfo.InvariantCulture));
    return 0;
}
if (which == "plain-yarp")
{
    await Shoal.Bench.ProxyBench.PlainYarpAsync(int.Parse(args[1], CultureInfo.InvariantCulture), int.Parse(args[2], CultureInfo.InvariantCulture));
    return 0;
}
if (which == "hold-edge")
{
    await Shoal.Bench.HoldBench.EdgeAsync(args[1], int.Parse(args[2], CultureInfo.InvariantCulture));
    return 0;
}
if (which == "tunnel-agent")
{
    // As `shoal agent` does first thing, unless SHOAL_BENCH_AGENT_SPIN=1 keeps the runtime's default (for comparison).
    if (Environment.GetEnvironmentVariable("SHOAL_BENCH_AGENT_SPIN") != "1") AgentHost.PreferSleepingThreadPool();
    await Shoal.Bench.ProxyBench.TunnelAgentAsync(args[1].Split(','), args[2], args[3], int.Parse(args[4], CultureInfo.InvariantCulture));
    return 0;
}
// Directories of benchmarks killed earlier go; this one's go on Ctrl-C and SIGTERM too.
Shoal.Bench.BenchTempDirs.Install();
if (which == "proxy") await Shoal.Bench.ProxyBench.RunAsync(args);
if (which == "fleet") await Shoal.Bench.FleetBench.RunAsync(args);
if (which == "reconcile") Shoal.Bench.ReconcileBench.Run(args);
if (which == "autoscale") await Shoal.Bench.AutoscaleBench.RunAsync(args);
if (which == "autoscale-zero") await Shoal.Bench.AutoscaleBench.RunFromZeroAsync(args);
if (which == "coldstart-docker") await Shoal.Bench.AutoscaleBench.RunDockerColdStartAsync(args);
if (which == "ledger") await Shoal.Bench.LedgerBench.RunAsync(args);
if (which == "gateway") await Shoal.Bench.GatewayBench.RunAsync(args);
if (which == "gateway-path") await Shoal.Bench.GatewayPathBench.RunAsync(args);
if (which == "gateway-limits") await Shoal.Bench.GatewayLimitsBench.RunAsync(args);
if (which is "routes" or "all") await Shoal.Bench.RoutesBench.RunAsync();
if (which is "routes-delta")
{
    await Shoal.Bench.RouteDeltaBench.RunAsync(
        TimeSpan.FromSeconds(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 60),
        nodesLostPerMinute: args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 100,
        loadChangesPerSecond: args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 2_500);
}
if (which is "schedule" or "all") Schedule();
if (which is "deploy" or "all") await DeployAsync();
if (which is "cli-startup") await Shoal.Bench.CliStartup.RunAsync(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 30, args.Skip(2).ToArray());
if (which is "cli-deploy") await Shoal.Bench.CliStartup.DeployAsync(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 10, args.Skip(2).ToArray());
if (which is "container") await Shoal.Bench.ContainerStart.RunAsync(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20);
if (which is "edge-ttft" or "edge") await EdgeBench.TimeToFirstTokenAsync();
if (which is "first-byte")
{
    var rounds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5;
    Shoal.Bench.FirstByteBench.Run(rounds, threads: 1);
    Shoal.Bench.FirstByteBench.Run(rounds, threads: 2);
}
if (which is "hold")
{
    await Shoal.Bench.HoldBench.RunAsync(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 6_000,
        maxHeld: args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 5_000,
        timeout: TimeSpan.FromSeconds(args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 10));
}
if (which is "gateway-tokens") await Shoal.Bench.GatewayTokensBench.RunAsync(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5);
if (which is "routing" or "edge") await EdgeBench.RoutingAsync(TimeSpan.FromSeconds(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 60), load: 0.8);
return 0;

static void Schedule()
{
    Console.WriteLine("## Scheduler: 10,000 nodes; the current scheduler and the one before it (reference), alternating, side by side");
    string[] types = ["rtx-4090", "rtx-3090", "a100-80gb", "h100"];
    var nodes = Enumerable.Range(0, 10_000)
        .Select(i => new NodeCapacity($"n{i:D5}", true, Enumerable.Range(0, 1 + (i / 4) % 4).Select(g => new GpuSlot(g, types[i % types.Length])).ToArray(), 1.0 - (i % 10) / 20.0))
        .ToArray();
    var homogeneous = Enumerable.Range(0, 10_000)
        .Select(i => new NodeCapacity($"n{i:D5}", true, [new GpuSlot(0, "rtx-4090"), new GpuSlot(1, "rtx-4090")], 1.0 - (i % 10) / 20.0))
        .ToArray();
    // The fleet benchmark's shape: 10,000 single-GPU nodes, half of them running a replica, and one
    // reconcile pass that places the clusters a burst of API calls created (20 clusters x 10).
    var single = Enumerable.Range(0, 10_000)
        .Select(i => new NodeCapacity($"n{i:D5}", true, [new GpuSlot(0, "rtx-4090")], 1.0))
        .ToArray();
    var halfFull = Enumerable.Range(0, 5_000).Select(i => new PlacedReplica($"old{i / 10}", $"n{(i * 7919) % 10_000:D5}", [0])).ToArray();
    var scenarios = new (string Name, NodeCapacity[] Fleet, PlacedReplica[] Existing, PlacementRequest[] Requests)[]
    {
        ("1 cluster x 10,000 replicas, 10,000 nodes with 2x rtx-4090", homogeneous, [], Enumerable.Range(0, 10_000).Select(i => new PlacementRequest($"r{i}", "c0", "rtx-4090", 1, "img")).ToArray()),
        ("100 clusters x 100 replicas, mixed fleet of 10,000 nodes", nodes, [], Enumerable.Range(0, 10_000).Select(i => new PlacementRequest($"r{i}", $"c{i / 100}", types[(i / 100) % types.Length], 1, "img")).ToArray()),
        ("1,000 clusters x 10 replicas, mixed fleet of 10,000 nodes", nodes, [], Enumerable.Range(0, 10_000).Select(i => new PlacementRequest($"r{i}", $"c{i / 10}", types[(i / 10) % types.Length], 1, "img")).ToArray()),
        ("one pass of a deploy burst: 20 clusters x 10 onto 10,000 1-GPU nodes, 5,000 busy", single, halfFull, Enumerable.Range(0, 200).Select(i => new PlacementRequest($"r{i}", $"new{i / 10}", "rtx-4090", 1, "img")).ToArray()),
    };
    foreach (var (name, fleet, existing, requests) in scenarios)
    {
        Scheduler.Schedule(fleet, existing, requests); // warm-up
        Shoal.Core.Tests.Scheduling.ReferenceScheduler.Schedule(fleet, existing, requests);
        var current = new List<double>();
        var reference = new List<double>();
        var placed = 0;
        for (var i = 0; i < 15; i++)
        {
            var sw = Stopwatch.StartNew();
            var result = Scheduler.Schedule(fleet, existing, requests);
            current.Add(sw.Elapsed.TotalMilliseconds);
            placed = result.Count(p => p.Placed);
            sw.Restart();
            Shoal.Core.Tests.Scheduling.ReferenceScheduler.Schedule(fleet, existing, requests);
            reference.Add(sw.Elapsed.TotalMilliseconds);
        }
        Console.WriteLine(Fmt($"{name} ({placed} placed, 15 runs each): current median {Pct(current, 50):F2} ms, p99 {Pct(current, 99):F2} ms; reference median {Pct(reference, 50):F2} ms, p99 {Pct(reference, 99):F2} ms; ratio of medians {Pct(reference, 50) / Pct(current, 50):F1}x"));
    }
}

static async Task DeployAsync()
{
    Console.WriteLine("## Deploy to first ready replica (simulator, no startup delay)");
    var dir = Shoal.Bench.BenchTempDirs.Create("shoal-bench-");
    using var loggers = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Warning));
    await using var server = await ShoalServer.StartAsync(new ServerOptions
    {
        Listen = "127.0.0.1:0",
        EdgeListen = "127.0.0.1:0",
        DataDir = Path.Combine(dir.FullName, "server"),
        LogLevel = LogLevel.Warning,
        AllowLoopbackNodes = true,
        AllowSimulatedGpus = true,
        // SIGINT/SIGTERM end the benchmark (BenchTempDirs cleans up), not only this in-process server.
        StoppedByHost = true,
    }, logging: l => l.SetMinimumLevel(LogLevel.Warning));
    using var http = Shoal.Bench.BenchKeys.OperatorClient(server);
    var token = (await (await http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest(), ShoalJsonContext.Default.CreateTokenRequest))
        .Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
    using var stop = new CancellationTokenSource();
    var agent = AgentHost.RunAsync(new AgentOptions
    {
        Server = server.ApiAddress.ToString(),
        Token = token,
        Name = "bench-node",
        DataDir = Path.Combine(dir.FullName, "agent"),
        SimulateGpus = "rtx-4090:1",
        EnableProcessRuntime = true,
        Runtime = "process",
        SimCommand = $"{ShoalExecutable()} sim",
        StopGracePeriod = TimeSpan.FromSeconds(2),
    }, loggers, TimeProvider.System, stop.Token);
    while ((await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!.All(n => n.State != NodeState.Ready)) await Task.Delay(20);

    var total = new List<double>();
    var waitForNode = new List<double>();
    var startToReady = new List<double>();
    const int Runs = 20;
    for (var i = 0; i < Runs + 2; i++)
    {
        var name = $"bench-{i}";
        var sw = Stopwatch.StartNew();
        var created = await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = name, Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 }, ShoalJsonContext.Default.CreateClusterRequest);
        created.EnsureSuccessStatusCode();
        ClusterStatusDto status;
        while (true)
        {
            status = (await http.GetFromJsonAsync($"/v1/clusters/{name}/status", ShoalJsonContext.Default.ClusterStatusDto))!;
            if (status.Cluster.ReadyReplicas == 1) break;
            if (sw.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException("replica never became ready");
            await Task.Delay(2);
        }
        var elapsed = sw.Elapsed.TotalMilliseconds;
        var r = status.Replicas.Single();
        if (i >= 2)
        {
            total.Add(elapsed);
            waitForNode.Add((r.AssignedAt!.Value - r.CreatedAt).TotalMilliseconds);
            startToReady.Add((r.ReadyAt!.Value - r.StartedAt!.Value).TotalMilliseconds);
        }
        (await http.DeleteAsync($"/v1/clusters/{name}")).EnsureSuccessStatusCode();
        // Let the agent stop the replica so the GPU is free for the next run.
        while ((await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!.Single().Replicas > 0) await Task.Delay(5);
        await Task.Delay(200);
    }
    Console.WriteLine(Fmt($"deploy -> first ready, seen by the API client: median {Pct(total, 50):F0} ms, p99 {Pct(total, 99):F0} ms, max {total.Max():F0} ms ({Runs} runs)"));
    Console.WriteLine(Fmt($"  of which waiting for a node: median {Pct(waitForNode, 50):F1} ms; process start to first healthy probe: median {Pct(startToReady, 50):F0} ms"));
    await stop.CancelAsync();
    try
    {
        await agent;
    }
    catch (OperationCanceledException)
    {
    }
    Shoal.Bench.BenchTempDirs.Remove(dir);
}

static string ShoalExecutable()
{
    var d = new DirectoryInfo(AppContext.BaseDirectory);
    while (d is not null && !File.Exists(Path.Combine(d.FullName, "Shoal.slnx"))) d = d.Parent;
    var config = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
    return Path.Combine(d!.FullName, "src", "Shoal.Cli", "bin", config, "net10.0", "shoal");
}

static double Pct(List<double> values, double p)
{
    var sorted = values.Order().ToArray();
    var rank = (int)Math.Ceiling(p / 100 * sorted.Length) - 1;
    return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
}

static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
