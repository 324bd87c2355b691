using System.Diagnostics;
using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Model;
using Shoal.Core.Reconciliation;
using Shoal.Core.Scheduling;

namespace Shoal.Bench;

/// <summary>
/// One reconcile pass in the middle of the fleet benchmark's deploy, as pure code (no store, no
/// lock, no server): 10,000 single-GPU nodes, 1,000 clusters of 10 replicas, of which most are placed
/// and settled, some placed and starting, and the newest just created (their replicas waiting for a
/// node). Prints the pass's median and p99 time and what it allocates.
/// </summary>
internal static class ReconcileBench
{
    public static void Run(string[] args)
    {
        var runs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 40;
        var (settled, starting, fresh) = (800, 150, 50);
        var input = Model(10_000, settled, starting, fresh, 10);
        Console.WriteLine(Fmt($"## One reconcile pass at 10,000 nodes: {settled} clusters settled, {starting} starting, {fresh} just created (x 10 replicas), {runs} passes"));

        var check = Reconciler.Plan(input);
        Console.WriteLine(Fmt($"- the pass places {check.Placed}, creates {check.Created}, writes {check.Upserts.Count} replicas and {check.Events.Count} events"));
        for (var i = 0; i < 10; i++) Reconciler.Plan(input); // warm-up (tiered compilation)

        var times = new List<double>();
        var allocated = new List<double>();
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        for (var i = 0; i < runs; i++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            var sw = Stopwatch.StartNew();
            Reconciler.Plan(input);
            times.Add(sw.Elapsed.TotalMilliseconds);
            allocated.Add((GC.GetAllocatedBytesForCurrentThread() - before) / 1024.0 / 1024.0);
        }
        // CPU time is the steadier figure on a shared machine (wall time includes the waits for a core).
        var cpuPerPass = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMilliseconds / runs;
        times.Sort();
        allocated.Sort();
        Console.WriteLine(Fmt($"- pass: median {Pct(times, 50):F2} ms, p99 {Pct(times, 99):F2} ms; process CPU per pass {cpuPerPass:F2} ms; allocated per pass: median {Pct(allocated, 50):F2} MiB"));
    }

    private static ReconcileInput Model(int nodeCount, int settled, int starting, int fresh, int replicasEach)
    {
        var now = new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero);
        var nodes = new Dictionary<string, NodeRecord>(StringComparer.Ordinal);
        for (var i = 0; i < nodeCount; i++)
        {
            var node = new NodeRecord
            {
                Id = $"node-{i:D5}-{i * 7919 % 100_000:D5}",
                Name = $"sim-{i:D5}",
                SecretHash = "x",
                State = NodeState.Ready,
                Hardware = new NodeHardware { Gpus = [new GpuInfo { Index = 0, Uuid = $"gpu-{i}", Name = "rtx-4090", Type = "rtx-4090" }] },
                Images = ["shoal/sim:1"],
            };
            nodes[node.Id] = node;
        }
        var nodeIds = nodes.Keys.ToArray();
        var clusters = new Dictionary<string, ClusterRecord>(StringComparer.Ordinal);
        var replicas = new Dictionary<string, ReplicaRecord>(StringComparer.Ordinal);
        var next = 0;
        for (var c = 0; c < settled + starting + fresh; c++)
        {
            var cluster = new ClusterRecord
            {
                Id = $"cl-{c:D4}",
                Spec = new ClusterSpec { Name = $"bench-{c:D4}", Image = "shoal/sim:1", Gpu = "rtx-4090", Replicas = replicasEach },
                CreatedAt = now.AddSeconds(-10),
                UpdatedAt = now.AddSeconds(-10),
            };
            clusters[cluster.Id] = cluster;
            for (var k = 0; k < replicasEach; k++)
            {
                var placed = c < settled + starting;
                var ready = c < settled;
                var r = new ReplicaRecord
                {
                    Id = $"{cluster.Name}-{k:D6}",
                    ClusterId = cluster.Id,
                    NodeId = placed ? nodeIds[next++ * 7 % nodeCount] : null,
                    GpuIndexes = placed ? [0] : [],
                    State = ready ? ReplicaState.Ready : placed ? ReplicaState.Assigned : ReplicaState.Pending,
                    Healthy = ready,
                    HostPort = ready ? 9000 : null,
                    ReadyAt = ready ? now.AddSeconds(-5) : null,
                    CreatedAt = now.AddSeconds(placed ? -10 : -0.1),
                    UpdatedAt = now.AddSeconds(-1),
                };
                replicas[r.Id] = r;
            }
        }
        var connected = new NodeLink(true, null, null, null, NodeReliability.Steady);
        return new ReconcileInput
        {
            Now = now,
            Clusters = clusters,
            Replicas = replicas,
            Nodes = nodes,
            Link = _ => connected,
            Serving = r => r.State == ReplicaState.Ready && r.Healthy && r.HostPort is not null && r.NodeId is not null,
            Unlinked = [],
        };
    }

    private static double Pct(List<double> sorted, double p) => sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Count) - 1, 0, sorted.Count - 1)];

    private static string Fmt(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
