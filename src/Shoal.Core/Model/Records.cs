using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Core.Model;

/// <summary>A cluster as stored: the user's spec plus bookkeeping.</summary>
public sealed record ClusterRecord
{
    public required string Id { get; init; }
    public string Project { get; init; } = "default";
    public required ClusterSpec Spec { get; init; }
    /// <summary>Increases with every spec change (not with scaling).</summary>
    public long Generation { get; init; } = 1;
    /// <summary>The image pinned by digest (first one a node resolved), so every replica runs the same bits.</summary>
    public string? ImageDigest { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
    /// <summary>The latest update's state, earlier generations' specs still in use, nodes to avoid.</summary>
    public ClusterRollout Rollout { get; init; } = new();

    public string Name => Spec.Name;
}

/// <summary>A replica: where it is placed (desired) and what its node last said of it (observed).</summary>
public sealed record ReplicaRecord
{
    public required string Id { get; init; }
    public required string ClusterId { get; init; }
    public long Generation { get; init; } = 1;
    public string? NodeId { get; init; }
    public int[] GpuIndexes { get; init; } = [];
    public ReplicaState State { get; init; } = ReplicaState.Pending;
    public string? Reason { get; init; }
    public bool Healthy { get; init; }
    public int Restarts { get; init; }
    public int? ExitCode { get; init; }
    public int? HostPort { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? AssignedAt { get; init; }
    public DateTimeOffset? PulledAt { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public DateTimeOffset? ReadyAt { get; init; }
    public DateTimeOffset UpdatedAt { get; init; }
    /// <summary>The exact image the replica runs, as its node reported.</summary>
    public string? ImageDigest { get; init; }
    /// <summary>Pull progress (0-100) while pulling; observed only, not stored.</summary>
    public double? PullProgress { get; init; }
    /// <summary>When the replica left routing to finish its in-flight requests before it stops; null unless draining.</summary>
    public DateTimeOffset? DrainingSince { get; init; }
    /// <summary>Why it drains (scale down, replaced by generation N, node drained…).</summary>
    public string? DrainReason { get; init; }
    /// <summary>When its agent reported each restart within the crash-loop window (kept so a server restart does not reset a crash loop).</summary>
    public DateTimeOffset[] RecentRestarts { get; init; } = [];
    /// <summary>
    /// The last failure its agent reported (exit code and last output, pull error, failing health check): kept
    /// while the replica restarts, when its reason is cleared, so a crash loop's replacement can say why.
    /// </summary>
    public string? LastFailure { get; init; }
}

/// <summary>A registered node. The secret is kept only as a hash.</summary>
public sealed record NodeRecord
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required string SecretHash { get; init; }
    public NodeHardware Hardware { get; init; } = new();
    public string[] Runtimes { get; init; } = [];
    public string[] Images { get; init; } = [];
    public string Address { get; init; } = "127.0.0.1";
    public NodeState State { get; init; } = NodeState.Disconnected;
    public bool Cordoned { get; init; }
    /// <summary>Its replicas are being moved elsewhere (set by <c>shoal nodes drain</c>, cleared when none is left).</summary>
    public bool Draining { get; init; }
    /// <summary>Bumped whenever the node's assignment set changes.</summary>
    public long Revision { get; init; }
    /// <summary>The last revision the agent acknowledged.</summary>
    public long AckedRevision { get; init; }
    /// <summary>How many times the node's connection was lost.</summary>
    public int Disconnects { get; init; }
    public DateTimeOffset RegisteredAt { get; init; }
    public DateTimeOffset? LastSeenAt { get; init; }
    /// <summary>False while the node waits for <c>shoal nodes approve</c> (its token asked for manual approval): it gets no work.</summary>
    public bool Approved { get; init; } = true;
    /// <summary>Labels the operator gave the node (through its token), such as <c>trusted</c>.</summary>
    public string[] Labels { get; init; } = [];
    /// <summary>The most GPUs the node may report (from its token); null for no cap.</summary>
    public int? MaxGpus { get; init; }
    /// <summary>The operator lets edges connect to the node's address (direct mode); otherwise only its tunnels are used.</summary>
    public bool DirectAllowed { get; init; }
    /// <summary>Its agent last asked to be reached over its tunnels (kept so a restarted server routes to it before it reconnects).</summary>
    public bool Tunnel { get; init; } = true;
    /// <summary>When it lost its connection within the reliability window (kept so a restart does not make a flapping node steady).</summary>
    public DateTimeOffset[] RecentDisconnects { get; init; } = [];
}

/// <summary>
/// Something that happened to a cluster, a replica of it, or the node under one (scheduled,
/// ready, node lost, replaced…). <see cref="Seq"/> orders events across all clusters.
/// </summary>
public sealed record ClusterEventRecord
{
    /// <summary>How many events the store keeps per cluster; older ones are dropped as new ones come.</summary>
    public const int RetainedPerCluster = 1000;

    public required long Seq { get; init; }
    public required string ClusterId { get; init; }
    public DateTimeOffset At { get; init; }
    /// <summary>One of <see cref="ClusterEventTypes"/>.</summary>
    public required string Type { get; init; }
    public string? ReplicaId { get; init; }
    public string? NodeId { get; init; }
    /// <summary>The node's name when the event happened (the node may be gone when it is read).</summary>
    public string? NodeName { get; init; }
    public required string Message { get; init; }
    /// <summary>The API key that caused it (<c>id (name)</c>); null for what the control plane did by itself.</summary>
    public string? Actor { get; init; }
}
