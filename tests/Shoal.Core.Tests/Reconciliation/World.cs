using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Model;
using Shoal.Core.Reconciliation;
using Shoal.Core.Scheduling;

namespace Shoal.Core.Tests.Reconciliation;

/// <summary>
/// A control plane's model in plain dictionaries, stepped by the pure reconciler: each
/// <see cref="Step"/> plans a pass and applies it as the control plane would (no store, no lock),
/// and agents' reports are played by the test (<see cref="Ready"/>, <see cref="Restart"/>…).
/// </summary>
internal sealed class World
{
    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero));
    public Dictionary<string, ClusterRecord> Clusters { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, ReplicaRecord> Replicas { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, NodeRecord> Nodes { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, NodeLink> Links { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, ReplicaLoad> Loads { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, DateTimeOffset> LoadsAt { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, List<DateTimeOffset>> RestartTimes { get; } = new(StringComparer.Ordinal);
    public HashSet<string> Leaving { get; } = new(StringComparer.Ordinal);
    public List<ClusterEventRecord> Events { get; } = [];
    public ReconcilerOptions Options { get; set; } = new();

    public DateTimeOffset Now => Time.GetUtcNow();

    public NodeRecord AddNode(string name, int gpus = 1, string type = "rtx-4090", string[]? labels = null)
    {
        var node = new NodeRecord
        {
            Id = "n-" + name,
            Name = name,
            SecretHash = "x",
            State = NodeState.Ready,
            Hardware = new NodeHardware
            {
                Gpus = [.. Enumerable.Range(0, gpus).Select(i => new GpuInfo { Index = i, Uuid = $"{name}-{i}", Name = type, Type = type })],
            },
            Labels = labels ?? [],
        };
        Nodes[node.Id] = node;
        Links[node.Id] = new NodeLink(true, null, null, null, NodeReliability.Steady);
        return node;
    }

    public ClusterRecord AddCluster(string name, int replicas, string gpu = "rtx-4090", string image = "shoal/sim:1")
    {
        var cluster = new ClusterRecord
        {
            Id = "c-" + name,
            Spec = new ClusterSpec { Name = name, Image = image, Gpu = gpu, Replicas = replicas },
            CreatedAt = Now,
            UpdatedAt = Now,
        };
        Clusters[cluster.Id] = cluster;
        return cluster;
    }

    /// <summary>What <c>shoal scale</c> does: the count changes, nothing else.</summary>
    public void Scale(string cluster, int replicas)
    {
        var c = Clusters["c-" + cluster];
        Clusters[c.Id] = c with { Spec = c.Spec with { Replicas = replicas } };
    }

    /// <summary>What <c>shoal update --image</c> does: a new generation, the old spec kept, a rollout progressing.</summary>
    public void Update(string cluster, string image)
    {
        var c = Clusters["c-" + cluster];
        var generations = new Dictionary<long, GenerationSpec>(c.Rollout.Generations) { [c.Generation] = new GenerationSpec(c.Spec, c.ImageDigest) };
        Clusters[c.Id] = c with
        {
            Spec = c.Spec with { Image = image },
            Generation = c.Generation + 1,
            ImageDigest = null,
            Rollout = c.Rollout with
            {
                State = RolloutStates.Progressing, StartedAt = Now, Generations = generations, StableGeneration = c.Generation,
                FailedAttempts = 0, RetryAt = null, Failure = null, FailedAt = null,
            },
        };
    }

    public ReconcileInput Input() => new()
    {
        Now = Now,
        Clusters = Clusters,
        Replicas = Replicas,
        Nodes = Nodes,
        Link = id => Links.TryGetValue(id, out var l) ? l : NodeLink.Unknown,
        Serving = r => r.State == ReplicaState.Ready && r.Healthy && r.HostPort is not null && r.NodeId is not null
            && Links.TryGetValue(r.NodeId, out var l) && l.Connected && l.AddressRefused is null,
        Loads = Loads,
        LoadsAt = LoadsAt,
        RestartTimes = RestartTimes,
        LeavingFlappingNodes = Leaving,
        Options = Options,
        // As the control plane passes it: only nodes whose link is down are looked at for loss.
        Unlinked = Links.Where(kv => !kv.Value.Connected).Select(kv => kv.Key).ToList(),
    };

    /// <summary>One pass, applied as the control plane applies a committed plan.</summary>
    public ReconcilePlan Step()
    {
        var input = Input();
        CheckSettled(input);
        var plan = Reconciler.Plan(input);
        Leaving.ExceptWith(plan.StoppedLeavingFlapping);
        Leaving.UnionWith(plan.StartedLeavingFlapping);
        foreach (var id in plan.Deleted)
        {
            Replicas.Remove(id);
            Loads.Remove(id);
            LoadsAt.Remove(id);
            RestartTimes.Remove(id);
        }
        foreach (var r in plan.Upserts) Replicas[r.Id] = r;
        foreach (var c in plan.Clusters.Values) Clusters[c.Id] = c;
        foreach (var n in plan.Nodes.Values) Nodes[n.Id] = n;
        Events.AddRange(plan.Events);
        return plan;
    }

    /// <summary>
    /// Every pass of every test checks the reconciler's shortcut: a cluster it takes for settled (and
    /// skips) is one the whole of its share of the pass would leave exactly as it is.
    /// </summary>
    private static void CheckSettled(ReconcileInput input)
    {
        var byCluster = input.Replicas.Values.GroupBy(r => r.ClusterId).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        foreach (var cluster in input.Clusters.Values)
        {
            var replicas = byCluster.GetValueOrDefault(cluster.Id) ?? [];
            if (!ClusterReconciler.Settled(input, cluster, replicas)) continue;
            var plan = new ReconcilePlan(input.Now, new Dictionary<string, ReplicaRecord>(input.Replicas, StringComparer.Ordinal));
            ClusterReconciler.ReconcileFully(input, plan, cluster, [.. replicas]);
            var changed = plan.Replicas.Count != input.Replicas.Count || plan.Replicas.Any(kv => !input.Replicas.TryGetValue(kv.Key, out var r) || r != kv.Value);
            if (!plan.IsEmpty || changed || plan.StartedLeavingFlapping.Count > 0 || plan.StoppedLeavingFlapping.Count > 0 || plan.Routes)
            {
                throw new InvalidOperationException($"cluster {cluster.Name} was taken for settled, but its full reconcile changes it");
            }
        }
    }

    /// <summary>Passes until one changes nothing (at most 20).</summary>
    public void Settle()
    {
        for (var i = 0; i < 20; i++)
        {
            if (Step().IsEmpty) return;
        }
        throw new InvalidOperationException("the reconciler did not settle in 20 passes");
    }

    public IEnumerable<ReplicaRecord> Of(string cluster) => Replicas.Values.Where(r => r.ClusterId == "c-" + cluster);

    /// <summary>The agent reports the replica ready and healthy.</summary>
    public void Ready(ReplicaRecord r) =>
        Replicas[r.Id] = Replicas[r.Id] with { State = ReplicaState.Ready, Healthy = true, HostPort = 9000, PulledAt = Now, StartedAt = Now, ReadyAt = Now };

    /// <summary>Every assigned replica becomes ready.</summary>
    public void AllReady()
    {
        foreach (var r in Replicas.Values.Where(r => r.NodeId is not null && r.State == ReplicaState.Assigned).ToList()) Ready(r);
    }

    /// <summary>The agent reports <paramref name="count"/> more restarts of the replica.</summary>
    public void Restart(ReplicaRecord r, int count = 1, string? reason = null)
    {
        var current = Replicas[r.Id];
        Replicas[r.Id] = current with { Restarts = current.Restarts + count, Reason = reason, State = ReplicaState.Starting, Healthy = false };
        if (!RestartTimes.TryGetValue(r.Id, out var times)) RestartTimes[r.Id] = times = [];
        Replacements.RecordRestarts(times, count, Now, Options);
    }

    public void Report(ReplicaRecord r, double running, double waiting)
    {
        Loads[r.Id] = new ReplicaLoad { Running = running, Waiting = waiting };
        LoadsAt[r.Id] = Now;
    }

    public void Disconnect(string node) => Links["n-" + node] = Links["n-" + node] with { Connected = false, DisconnectedSince = Now };

    public void Reconnect(string node)
    {
        Links["n-" + node] = Links["n-" + node] with { Connected = true, DisconnectedSince = null };
        var n = Nodes["n-" + node];
        Nodes[n.Id] = n with { State = Reconciler.SchedulingState(n with { State = NodeState.Ready }) };
    }

    public void Advance(TimeSpan by) => Time.Advance(by);
}
