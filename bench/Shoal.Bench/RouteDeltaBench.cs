using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using Shoal.Contracts;
using Shoal.ControlPlane;
using Shoal.ControlPlane.Edges;
using Shoal.ControlPlane.Reconciliation;
using Shoal.Core.Routing;
using Shoal.Edge;
using Shoal.Server;

namespace Shoal.Bench;

/// <summary>
/// Route propagation at fleet scale: a table of 10,000 replicas in 1,000 clusters (one replica per
/// node), 100 nodes lost per minute (each back 30 s later) and load figures changing as heartbeats
/// report them. A real server streams it to a real standalone edge over loopback, first as whole
/// tables (an edge that does not ask for deltas), then as deltas; measured per phase: bytes per
/// second to the edge, and delay from a change to the edge's table.
/// </summary>
/// <remarks>
/// The fleet is a model in this process, not 10,000 agents: the server's control loops are stopped
/// and the benchmark publishes tables into the server's route holder the way the route publisher
/// does (a new immutable table per change, built whole with new objects, coalescing changes that
/// arrive while one is built). Everything from the holder on (the edge gateway's diff and batching,
/// JSON, the WebSocket, the edge's apply) is the production path.
/// </remarks>
internal static class RouteDeltaBench
{
    private const int Clusters = 1_000;
    private const int ReplicasPerCluster = 10;
    private const int Nodes = Clusters * ReplicasPerCluster;

    public static async Task RunAsync(TimeSpan phase, int nodesLostPerMinute, int loadChangesPerSecond)
    {
        var dir = Directory.CreateTempSubdirectory("shoal-route-delta-bench-");
        try
        {
            await using var server = await ShoalServer.StartAsync(
                new ServerOptions { Listen = "127.0.0.1:0", NoEdge = true, DataDir = dir.FullName, LogLevel = LogLevel.Warning },
                logging: l => l.SetMinimumLevel(LogLevel.Warning));
            // The benchmark is the only route publisher from here on.
            await server.Services.GetServices<IHostedService>().OfType<ControlLoops>().Single().StopAsync(CancellationToken.None);
            var holder = server.Services.GetRequiredService<RouteTableHolder>();
            var fleet = new Fleet(new Random(12));
            holder.Update(fleet.Build());

            Console.WriteLine(Fmt($"## Route deltas: {Nodes:N0} replicas in {Clusters:N0} clusters, {nodesLostPerMinute} nodes lost per minute (back after 30 s), {loadChangesPerSecond:N0} load changes per second"));
            var full = JsonSerializer.SerializeToUtf8Bytes<EdgeMessage>(new RoutesMessage { Table = holder.Current }, ShoalJsonContext.Default.EdgeMessage).Length;
            Console.WriteLine(Fmt($"whole table: {full / 1024.0:N0} KiB of JSON; each phase {phase.TotalSeconds:N0} s"));
            DiffCost(fleet);
            foreach (var deltas in new[] { false, true })
            {
                await RunPhaseAsync(server, holder, fleet, deltas, phase, nodesLostPerMinute, loadChangesPerSecond);
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static async Task RunPhaseAsync(ShoalServer server, RouteTableHolder holder, Fleet fleet, bool deltas, TimeSpan phase, int nodesLostPerMinute, int loadChangesPerSecond)
    {
        await using var edge = await EdgeServer.StartAsync(
            new EdgeServerOptions
            {
                Server = server.ApiAddress.ToString(),
                Key = await File.ReadAllTextAsync(server.EdgeKeyFile!),
                Edge = new EdgeOptions { Listen = "127.0.0.1:0" },
                LogLevel = LogLevel.Warning,
                RouteDeltas = deltas,
            },
            logging: l => l.SetMinimumLevel(LogLevel.Warning));
        await edge.Control.FirstTable.WaitAsync(TimeSpan.FromSeconds(30));
        var edgeRoutes = edge.Services.GetRequiredService<IRouteTableSource>();
        var gateway = server.Services.GetRequiredService<EdgeGateway>();

        // Changes wait here, tagged with the first version that holds them, until the edge's table reaches it.
        var pending = new ConcurrentQueue<(long Version, long At, bool State)>();
        var stateDelays = new List<double>();
        var loadDelays = new List<double>();
        using var observer = ChangeToken.OnChange(edgeRoutes.GetChangeToken, () =>
        {
            var now = Stopwatch.GetTimestamp();
            var version = edgeRoutes.Current.Version;
            while (pending.TryPeek(out var change) && change.Version <= version && pending.TryDequeue(out change))
            {
                lock (stateDelays) (change.State ? stateDelays : loadDelays).Add(Stopwatch.GetElapsedTime(change.At, now).TotalMilliseconds);
            }
        });

        var bytes = edge.Control.BytesReceived;
        var (tables, deltasReceived, resyncs) = (edge.Control.TablesReceived, edge.Control.DeltasReceived, edge.Control.ResyncsRequested);
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var published = 0;
        var wall = Stopwatch.StartNew();
        using (var stop = new CancellationTokenSource(phase))
        {
            var changed = new SemaphoreSlim(0, 1);
            var churn = Task.Run(() => ChurnAsync(fleet, changed, nodesLostPerMinute, loadChangesPerSecond, stop.Token));
            // The route publisher: one table per wake-up; changes made while it builds go into the next.
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await changed.WaitAsync(stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                var (table, changes) = fleet.BuildWithChanges();
                foreach (var (at, state) in changes) pending.Enqueue((table.Version, at, state));
                holder.Update(table);
                published++;
            }
            await churn;
        }
        var seconds = wall.Elapsed.TotalSeconds;
        var cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds;
        bytes = edge.Control.BytesReceived - bytes;

        // Quiet: the edge must end with the server's table (load figures may wait one interval).
        var settled = Stopwatch.StartNew();
        while (Canonical(edgeRoutes.Current) != Canonical(holder.Current) && settled.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(50);
        var same = Canonical(edgeRoutes.Current) == Canonical(holder.Current);

        Console.WriteLine(deltas ? "### After: deltas" : "### Before: whole tables");
        Console.WriteLine(Fmt($"tables published {published:N0} ({published / seconds:N0}/s); edge received {(edge.Control.TablesReceived - tables):N0} whole tables, {(edge.Control.DeltasReceived - deltasReceived):N0} deltas, {(edge.Control.ResyncsRequested - resyncs)} resyncs"));
        Console.WriteLine(Fmt($"bytes to the edge: {bytes / seconds / 1024:N1} KiB/s ({bytes / 1024.0 / 1024.0:N1} MiB in {seconds:N0} s); process CPU {cpuSeconds / seconds:N2} cores (server, edge and fleet model together)"));
        lock (stateDelays)
        {
            Console.WriteLine(Fmt($"replica/node change -> edge table: median {Pct(stateDelays, 50):F1} ms, p99 {Pct(stateDelays, 99):F1} ms, max {(stateDelays.Count == 0 ? 0 : stateDelays.Max()):F1} ms ({stateDelays.Count:N0} changes)"));
            Console.WriteLine(Fmt($"load figure -> edge table: median {Pct(loadDelays, 50):F1} ms, p99 {Pct(loadDelays, 99):F1} ms, max {(loadDelays.Count == 0 ? 0 : loadDelays.Max()):F1} ms ({loadDelays.Count:N0} changes)"));
        }
        Console.WriteLine(Fmt($"edge's table equal to the server's at the end: {(same ? "yes" : "NO")}; server totals: {gateway.RouteTablesSent} whole, {gateway.RouteDeltasSent} deltas"));
    }

    /// <summary>What one edge's stream spends per table: a diff of two successive tables (new objects throughout, as built).</summary>
    private static void DiffCost(Fleet fleet)
    {
        var times = new List<double>();
        var sizes = new List<double>();
        var previous = fleet.Build();
        for (var i = 0; i < 60; i++)
        {
            for (var n = 0; n < 125; n++) fleet.ChangeLoad(); // one 250 ms batch of load figures
            if (i % 10 == 0) fleet.LoseNode();
            var next = fleet.Build();
            // The fastest of a few runs: CPU cost, not time lost to other processes on a shared machine.
            var best = double.MaxValue;
            RouteDelta delta = null!;
            for (var r = 0; r < 5; r++)
            {
                var sw = Stopwatch.StartNew();
                delta = Core.Routing.RouteDeltas.Diff(previous, next);
                best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
            }
            times.Add(best);
            var applied = Core.Routing.RouteDeltas.Apply(previous, delta);
            if (applied.Clusters.Count != next.Clusters.Count) throw new InvalidOperationException("diff and apply disagree");
            sizes.Add(JsonSerializer.SerializeToUtf8Bytes<EdgeMessage>(new RouteDeltaMessage { Delta = delta }, ShoalJsonContext.Default.EdgeMessage).Length);
            previous = next;
        }
        times.RemoveRange(0, 10);
        Console.WriteLine(Fmt($"diff of two successive tables (10,000 replicas, ~125 load figures changed), fastest of 5 each: median {Pct(times, 50):F2} ms, p99 {Pct(times, 99):F2} ms; delta {Pct(sizes, 50) / 1024:N1} KiB median"));
    }

    private static async Task ChurnAsync(Fleet fleet, SemaphoreSlim changed, int nodesLostPerMinute, int loadChangesPerSecond, CancellationToken ct)
    {
        var tick = TimeSpan.FromMilliseconds(50);
        var lossEvery = TimeSpan.FromMinutes(1) / Math.Max(1, nodesLostPerMinute);
        var clock = Stopwatch.StartNew();
        var nextLoss = lossEvery;
        var loadsPerTick = loadChangesPerSecond * tick.TotalSeconds;
        var carry = 0.0;
        using var timer = new PeriodicTimer(tick);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                var any = false;
                carry += loadsPerTick;
                // Heartbeats arrive spread over the tick, each a change of its own.
                for (; carry >= 1; carry--) any |= fleet.ChangeLoad();
                while (clock.Elapsed >= nextLoss)
                {
                    fleet.LoseNode();
                    nextLoss += lossEvery;
                    any = true;
                }
                any |= fleet.ReturnNodes(TimeSpan.FromSeconds(30));
                if (any)
                {
                    try
                    {
                        changed.Release();
                    }
                    catch (SemaphoreFullException)
                    {
                        // The publisher is awake already.
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The phase is over.
        }
    }

    private static string Canonical(RouteTable table) => JsonSerializer.Serialize(
        table with { Version = 0, Clusters = table.Clusters.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(StringComparer.Ordinal) },
        ShoalJsonContext.Default.RouteTable);

    private static double Pct(List<double> values, double p)
    {
        if (values.Count == 0) return 0;
        var sorted = values.Order().ToArray();
        return sorted[Math.Max(0, (int)Math.Ceiling(p / 100 * sorted.Length) - 1)];
    }

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>The fleet the control plane knows: one replica per node, some nodes lost, each replica's load.</summary>
    private sealed class Fleet
    {
        private readonly Lock _lock = new();
        private readonly Random _random;
        private readonly string[] _clusterNames = new string[Clusters];
        private readonly string[] _replicaIds = new string[Nodes];
        private readonly string[] _nodeIds = new string[Nodes];
        private readonly double[] _waiting = new double[Nodes];
        private readonly long[] _lostAt = new long[Nodes];
        private readonly List<(long At, bool State)> _changes = [];
        private long _version;

        public Fleet(Random random)
        {
            _random = random;
            const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
            string Id(int n) => string.Create(n, random, (span, r) =>
            {
                for (var i = 0; i < span.Length; i++) span[i] = alphabet[r.Next(alphabet.Length)];
            });
            for (var c = 0; c < Clusters; c++) _clusterNames[c] = $"model-{c:D4}";
            for (var i = 0; i < Nodes; i++)
            {
                _replicaIds[i] = $"{_clusterNames[i / ReplicasPerCluster]}-{Id(6)}";
                _nodeIds[i] = "n-" + Id(12);
            }
        }

        /// <summary>A heartbeat reported another load figure for a random replica; false when that changed nothing in the table.</summary>
        public bool ChangeLoad()
        {
            lock (_lock)
            {
                var i = _random.Next(Nodes);
                var next = _random.Next(0, 8);
                if (_lostAt[i] != 0 || _waiting[i] == next) return false;
                _waiting[i] = next;
                _changes.Add((Stopwatch.GetTimestamp(), false));
                return true;
            }
        }

        public void LoseNode()
        {
            lock (_lock)
            {
                int i;
                do i = _random.Next(Nodes); while (_lostAt[i] != 0);
                _lostAt[i] = Stopwatch.GetTimestamp();
                _changes.Add((_lostAt[i], true));
            }
        }

        public bool ReturnNodes(TimeSpan after)
        {
            lock (_lock)
            {
                var any = false;
                var now = Stopwatch.GetTimestamp();
                for (var i = 0; i < Nodes; i++)
                {
                    if (_lostAt[i] == 0 || Stopwatch.GetElapsedTime(_lostAt[i], now) < after) continue;
                    _lostAt[i] = 0;
                    _changes.Add((now, true));
                    any = true;
                }
                return any;
            }
        }

        public RouteTable Build() => BuildWithChanges().Table;

        /// <summary>A new table as the control plane builds one (new objects throughout), and the changes it is the first to hold.</summary>
        public (RouteTable Table, List<(long At, bool State)> Changes) BuildWithChanges()
        {
            double[] waiting;
            long[] lostAt;
            List<(long, bool)> changes;
            long version;
            lock (_lock)
            {
                waiting = (double[])_waiting.Clone();
                lostAt = (long[])_lostAt.Clone();
                changes = [.. _changes];
                _changes.Clear();
                version = ++_version;
            }
            var clusters = new Dictionary<string, ClusterRoute>(StringComparer.Ordinal);
            var lost = new List<string>();
            for (var c = 0; c < Clusters; c++)
            {
                var destinations = new List<RouteDestination>(ReplicasPerCluster);
                for (var i = c * ReplicasPerCluster; i < (c + 1) * ReplicasPerCluster; i++)
                {
                    if (lostAt[i] != 0)
                    {
                        lost.Add(_nodeIds[i]);
                        continue;
                    }
                    destinations.Add(new RouteDestination
                    {
                        ReplicaId = _replicaIds[i],
                        NodeId = _nodeIds[i],
                        Address = $"http://10.{i / 65536}.{i / 256 % 256}.{i % 256}:{40000 + i % 1000}",
                        Via = RouteVia.Direct,
                        Waiting = waiting[i],
                    });
                }
                destinations.Sort((a, b) => string.CompareOrdinal(a.ReplicaId, b.ReplicaId));
                clusters[_clusterNames[c]] = new ClusterRoute { Cluster = _clusterNames[c], Project = "default", Destinations = [.. destinations] };
            }
            lost.Sort(StringComparer.Ordinal);
            return (new RouteTable { Version = version, Clusters = clusters, LostNodes = [.. lost] }, changes);
        }
    }
}
