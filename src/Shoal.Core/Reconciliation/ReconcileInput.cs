using Shoal.Contracts;
using Shoal.Core.Model;
using Shoal.Core.Scheduling;

namespace Shoal.Core.Reconciliation;

/// <summary>The control plane's settings the reconciler decides by.</summary>
public sealed record ReconcilerOptions
{
    /// <summary>How long a disconnected node keeps its replicas before they are replaced elsewhere.</summary>
    public TimeSpan NodeGracePeriod { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Restarts within <see cref="CrashLoopWindow"/> that make a replica crash-looping.</summary>
    public int CrashLoopRestarts { get; init; } = 3;
    public TimeSpan CrashLoopWindow { get; init; } = TimeSpan.FromMinutes(5);
    /// <summary>How long new replicas of a cluster avoid a node its replica crash-looped or flapped on.</summary>
    public TimeSpan CrashLoopAvoidFor { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>How long new replicas of a cluster prefer a node where one of its replicas finished draining.</summary>
    public TimeSpan WarmFor { get; init; } = TimeSpan.FromMinutes(30);
    /// <summary>Restarts of an update's new replica that make the update fail (and roll back).</summary>
    public int RolloutFailureRestarts { get; init; } = 3;
    /// <summary>Added to a replica's health interval before a load report may end its drain.</summary>
    public TimeSpan DrainSettle { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Failed attempts (replicas replaced before the spec ever worked) after which a cluster gives up and is failed.</summary>
    public int MaxFailedAttempts { get; init; } = 5;
    /// <summary>The wait before the replacement of the first failed attempt; it doubles with each further one.</summary>
    public TimeSpan AttemptBackoff { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>The longest wait between attempts.</summary>
    public TimeSpan AttemptBackoffMax { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>
/// What the control plane knows of a node's link now (not stored): whether its agent is connected,
/// since when it is gone, and whether edges may reach it.
/// </summary>
/// <param name="Connected">An agent session is open.</param>
/// <param name="DisconnectedSince">When the link was lost (or the server started without it); null while connected or offline.</param>
/// <param name="Grace">This disconnect's grace period when not the usual one (after a server start).</param>
/// <param name="AddressRefused">Why edges may not connect to the node's address (direct mode); null when they may.</param>
/// <param name="Reliability">From the node's recent disconnects.</param>
public readonly record struct NodeLink(bool Connected, DateTimeOffset? DisconnectedSince, TimeSpan? Grace, string? AddressRefused, NodeReliability Reliability)
{
    /// <summary>A node with no agent connected since the server started, and no history.</summary>
    public static readonly NodeLink Unknown = new(false, null, null, null, NodeReliability.Steady);
}

/// <summary>
/// Everything one reconcile pass decides from: the model (clusters, replicas, nodes), the nodes'
/// links, what agents reported (load, restarts), and the time. Read-only: the pass never changes
/// it, and says what to change in a <see cref="ReconcilePlan"/>. The control plane hands its own
/// collections in (under its lock) without copying them.
/// </summary>
public sealed class ReconcileInput
{
    public required DateTimeOffset Now { get; init; }
    public required IReadOnlyDictionary<string, ClusterRecord> Clusters { get; init; }
    public required IReadOnlyDictionary<string, ReplicaRecord> Replicas { get; init; }
    public required IReadOnlyDictionary<string, NodeRecord> Nodes { get; init; }
    /// <summary>Each node's link now (<see cref="NodeLink.Unknown"/> for a node never connected since the server started).</summary>
    public required Func<string, NodeLink> Link { get; init; }
    /// <summary>Whether edges may send requests to the replica now (ready, healthy, on a connected node, address allowed), draining or not.</summary>
    public required Func<ReplicaRecord, bool> Serving { get; init; }
    /// <summary>Each replica's last reported load.</summary>
    public IReadOnlyDictionary<string, ReplicaLoad> Loads { get; init; } = Empty<ReplicaLoad>.Map;
    /// <summary>When each replica's load was last reported.</summary>
    public IReadOnlyDictionary<string, DateTimeOffset> LoadsAt { get; init; } = Empty<DateTimeOffset>.Map;
    /// <summary>When each replica's agent reported its restarts (within the crash-loop window).</summary>
    public IReadOnlyDictionary<string, List<DateTimeOffset>> RestartTimes { get; init; } = Empty<List<DateTimeOffset>>.Map;
    /// <summary>Replicas already being moved off a flapping node: the move goes on even if room is gone.</summary>
    public IReadOnlySet<string> LeavingFlappingNodes { get; init; } = new HashSet<string>();
    public ReconcilerOptions Options { get; init; } = new();

    /// <summary>
    /// Ids of the nodes whose link may be down (no agent connected): the only ones a pass looks at for
    /// lost nodes. Null: every node (a caller that cannot say cheaply). Nodes left out must be connected
    /// or never seen since the server started.
    /// </summary>
    public IReadOnlyCollection<string>? Unlinked { get; init; }

    public NodeLink LinkOf(string nodeId) => Link(nodeId);

    /// <summary>Serving and not draining: edges send it requests.</summary>
    public bool IsRoutable(ReplicaRecord r) => r.DrainingSince is null && Serving(r);

    private static class Empty<T>
    {
        public static readonly IReadOnlyDictionary<string, T> Map = new Dictionary<string, T>(StringComparer.Ordinal);
    }
}
