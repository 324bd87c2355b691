using Shoal.Contracts;

namespace Shoal.Store;

/// <summary>A provisioning token; only its hash is stored.</summary>
public sealed record ProvisioningTokenRecord
{
    public required string Id { get; init; }
    public required string Hash { get; init; }
    public string? Description { get; init; }
    public int MaxUses { get; init; } = 1;
    public int Uses { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset ExpiresAt { get; init; }
    public DateTimeOffset? RevokedAt { get; init; }
    /// <summary>Nodes it admits wait as pending until <c>shoal nodes approve</c>.</summary>
    public bool ManualApproval { get; init; }
    /// <summary>The most GPUs a node it admits may report; null for no cap.</summary>
    public int? MaxGpus { get; init; }
    /// <summary>Labels given to the nodes it admits.</summary>
    public string[] Labels { get; init; } = [];
    /// <summary>Nodes it admits may be reached directly at their address (still only within the server's allowed networks).</summary>
    public bool AllowDirect { get; init; }
}

/// <summary>A project: it owns clusters and keys.</summary>
public sealed record ProjectRecord
{
    public required string Name { get; init; }
    public string? Description { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    /// <summary>The gateway's limits for all the project's endpoint keys together; null: none.</summary>
    public GatewayLimits? Limits { get; init; }
    /// <summary>The project's budget at the gateway; null: none.</summary>
    public BudgetSpec? Budget { get; init; }
}

/// <summary>An API key; only its hash is stored (and a short prefix to recognise it).</summary>
public sealed record ApiKeyRecord
{
    public required string Id { get; init; }
    public required string Hash { get; init; }
    public required string Prefix { get; init; }
    public required string Name { get; init; }
    /// <summary>One of <see cref="ApiKeyRoles"/>.</summary>
    public required string Role { get; init; }
    /// <summary>Null for operator keys.</summary>
    public string? Project { get; init; }
    /// <summary>Management calls per minute; null for the default.</summary>
    public int? RateLimitPerMinute { get; init; }
    public DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    public DateTimeOffset? RevokedAt { get; init; }
    public string? CreatedBy { get; init; }
    /// <summary>The gateway's limits of this (endpoint) key; null: none beyond its project's.</summary>
    public GatewayLimits? Limits { get; init; }
    /// <summary>The gateway's budget of this (endpoint) key; null: none beyond its project's.</summary>
    public BudgetSpec? Budget { get; init; }

    /// <summary>Usable at <paramref name="now"/>: not revoked, not expired.</summary>
    public bool IsValidAt(DateTimeOffset now) => RevokedAt is null && (ExpiresAt is not { } e || e > now);
}

/// <summary>Everything the control plane loads at start.</summary>
public sealed record StoreSnapshot(
    IReadOnlyList<ClusterRecord> Clusters,
    IReadOnlyList<ReplicaRecord> Replicas,
    IReadOnlyList<NodeRecord> Nodes)
{
    /// <summary>The highest event sequence number stored (0 when none), so new events continue after it.</summary>
    public long LastEventSeq { get; init; }
}

/// <summary>A set of writes applied in one transaction: all or nothing.</summary>
public sealed class StoreChanges
{
    public List<ClusterRecord> UpsertClusters { get; } = [];
    /// <summary>Cluster ids to delete; their replicas go with them.</summary>
    public List<string> DeleteClusters { get; } = [];
    public List<ReplicaRecord> UpsertReplicas { get; } = [];
    public List<string> DeleteReplicas { get; } = [];
    public List<NodeRecord> UpsertNodes { get; } = [];
    /// <summary>Node ids to delete (after the replica deletes and upserts, so replicas can move off first).</summary>
    public List<string> DeleteNodes { get; } = [];
    /// <summary>Events to add (after the upserts, so a new cluster's first event can refer to it).</summary>
    public List<ClusterEventRecord> AppendEvents { get; } = [];
    /// <summary>Replica runs begun or ended (for GPU-seconds); a run already stored keeps its first end.</summary>
    public List<ReplicaRunRecord> ReplicaRuns { get; } = [];

    public bool IsEmpty =>
        UpsertClusters.Count == 0 && DeleteClusters.Count == 0 && UpsertReplicas.Count == 0 &&
        DeleteReplicas.Count == 0 && UpsertNodes.Count == 0 && DeleteNodes.Count == 0 && AppendEvents.Count == 0 &&
        ReplicaRuns.Count == 0;
}

/// <summary>Why a provisioning token was refused, or <see cref="Accepted"/>.</summary>
public enum TokenUseOutcome
{
    Accepted,
    NotFound,
    Expired,
    Revoked,
    Exhausted,
}

/// <summary>A cluster name that is already taken in its project.</summary>
public sealed class StoreConflictException(string message, Exception? inner = null) : Exception(message, inner);
