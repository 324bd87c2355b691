using Shoal.Core.Model;

namespace Shoal.Core.Reconciliation;

/// <summary>
/// What one reconcile pass decided, for the control plane to commit to the store in one
/// transaction and then apply in memory. Events carry <c>Seq = 0</c>: the control plane numbers them.
/// </summary>
public sealed class ReconcilePlan
{
    internal ReconcilePlan(DateTimeOffset now, Dictionary<string, ReplicaRecord> replicas)
    {
        Now = now;
        Replicas = replicas;
    }

    public DateTimeOffset Now { get; }
    /// <summary>Every replica as the pass leaves it (a working copy of the input's).</summary>
    public Dictionary<string, ReplicaRecord> Replicas { get; }
    /// <summary>Replicas new or changed by the pass (filled when the pass ends).</summary>
    public List<ReplicaRecord> Upserts { get; } = [];
    /// <summary>Replicas the pass removed.</summary>
    public List<string> Deleted { get; } = [];
    /// <summary>Nodes the pass changed, revisions bumped where their assignment set changed.</summary>
    public Dictionary<string, NodeRecord> Nodes { get; } = new(StringComparer.Ordinal);
    /// <summary>Clusters the pass changed (rollout progress, rollback, generations pruned, nodes avoided).</summary>
    public Dictionary<string, ClusterRecord> Clusters { get; } = new(StringComparer.Ordinal);
    public List<ClusterEventRecord> Events { get; } = [];
    /// <summary>Nodes whose assignment set changed: they are sent a new one.</summary>
    public HashSet<string> ChangedNodes { get; } = new(StringComparer.Ordinal);
    /// <summary>Replicas whose move off a flapping node began in this pass.</summary>
    public HashSet<string> StartedLeavingFlapping { get; } = new(StringComparer.Ordinal);
    /// <summary>Replicas whose node is no longer flapping: a move not begun is not needed.</summary>
    public HashSet<string> StoppedLeavingFlapping { get; } = new(StringComparer.Ordinal);
    /// <summary>Nodes the pass took offline (gone past their grace).</summary>
    public List<string> OfflineNodes { get; } = [];
    /// <summary>Clusters rolled back: name, the generation gone back to, why.</summary>
    public List<(string Cluster, long Generation, string Failure)> RolledBack { get; } = [];
    public int Created { get; internal set; }
    public int Removed { get; internal set; }
    public int Placed { get; internal set; }
    public int Pending { get; internal set; }
    /// <summary>A replica left routing (a drain began).</summary>
    public bool Routes { get; internal set; }

    /// <summary>Nothing to write.</summary>
    public bool IsEmpty => Upserts.Count == 0 && Deleted.Count == 0 && Nodes.Count == 0 && Clusters.Count == 0 && Events.Count == 0;

    internal ClusterRecord ClusterOf(string id, IReadOnlyDictionary<string, ClusterRecord> current) =>
        Clusters.GetValueOrDefault(id) ?? current[id];

    internal void Remove(ReplicaRecord r)
    {
        if (!Replicas.Remove(r.Id)) return;
        Deleted.Add(r.Id);
        Removed++;
        if (r.NodeId is not null) ChangedNodes.Add(r.NodeId);
    }

    internal void Add(ReplicaRecord r)
    {
        Replicas[r.Id] = r;
        Created++;
    }
}
