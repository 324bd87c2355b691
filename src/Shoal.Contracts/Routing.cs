namespace Shoal.Contracts;

/// <summary>
/// The edge's view of the world: for each cluster, the replicas that may take requests.
/// Immutable; a new table replaces the old one as a whole (an edge builds it from its previous
/// table and a <see cref="RouteDelta"/>, or takes it whole). Destinations are sorted by replica id
/// and lost nodes by id (ordinal), which lets deltas be computed and applied by merging.
/// </summary>
public sealed record RouteTable
{
    public static readonly RouteTable Empty = new();

    public long Version { get; init; }
    public Dictionary<string, ClusterRoute> Clusters { get; init; } = new(StringComparer.Ordinal);
    /// <summary>
    /// Nodes the control plane has lost (disconnected, still within their grace period). Their
    /// replicas are out of the table; requests an edge still has in flight to them are cut and,
    /// when no response has started, retried elsewhere, rather than waiting on a dead or frozen node.
    /// </summary>
    public string[] LostNodes { get; init; } = [];
    /// <summary>
    /// Replicas out of the table because they drain, sorted by id (ordinal): requests an edge has in
    /// flight to them run to their end. Requests in flight to a replica that left the table for any
    /// other reason (unhealthy, failed, removed) are cut while no response has started, and retried elsewhere.
    /// </summary>
    public string[] DrainingReplicas { get; init; } = [];
}

/// <summary>One cluster's endpoint settings and its routable replicas.</summary>
public sealed record ClusterRoute
{
    public required string Cluster { get; init; }
    /// <summary>The project that owns the cluster: endpoint keys of this project may call it.</summary>
    public string Project { get; init; } = "default";
    /// <summary>Answers without an endpoint key.</summary>
    public bool Public { get; init; }
    /// <summary>How the edge picks a replica: <see cref="BalancingPolicy.LeastOutstanding"/> (default) or <see cref="BalancingPolicy.RoundRobin"/>.</summary>
    public string Balancing { get; init; } = BalancingPolicy.LeastOutstanding;
    /// <summary>How long a request waits for a ready replica before it gets 503, in milliseconds.</summary>
    public int QueueTimeoutMs { get; init; } = BalancingPolicy.DefaultQueueTimeoutMs;
    /// <summary>Why the cluster will have no replica until someone acts (it failed: the reason); null otherwise. Requests get 503 with it at once instead of waiting.</summary>
    public string? Unavailable { get; init; }
    /// <summary>
    /// Most requests the edge holds for the cluster while it has no ready replica (beyond: 503 with
    /// <c>Retry-After</c>). Default <see cref="BalancingPolicy.DefaultMaxHeld"/>.
    /// </summary>
    public int MaxHeld { get; init; } = BalancingPolicy.DefaultMaxHeld;
    /// <summary>
    /// Time-to-first-byte cap of an attempt, in milliseconds: an attempt without response headers by
    /// then is cut and retried on another replica (when the request may be retried). Null: the edge's
    /// default; 0: no cap.
    /// </summary>
    public int? FirstByteTimeoutMs { get; init; }
    /// <summary>
    /// Model names the cluster serves, for the gateway's <c>/v1</c> facade (a request's <c>model</c>
    /// picks the cluster among those its key may call); declared with <c>shoal deploy --model</c>, or
    /// what its replicas list on <c>/v1/models</c>. Null or empty: reachable only as <c>/c/{cluster}/…</c>.
    /// </summary>
    public string[]? Models { get; init; }
    /// <summary>What the cluster charges (for budgets and the ledger's cost); null: nothing.</summary>
    public ClusterPrice? Price { get; init; }
    /// <summary>GPUs per replica: a request's GPU-seconds are its duration times this (for <see cref="ClusterPrice.PerGpuSecond"/>).</summary>
    public int GpuCount { get; init; } = 1;
    public RouteDestination[] Destinations { get; init; } = [];
}

/// <summary>Names of the edge's balancing policies, as they appear in cluster specs and route tables.</summary>
public static class BalancingPolicy
{
    public const string LeastOutstanding = "least-outstanding";
    public const string RoundRobin = "round-robin";
    public const int DefaultQueueTimeoutMs = 30_000;
    public const int DefaultMaxHeld = 1000;

    public static bool IsKnown(string? value) => value is LeastOutstanding or RoundRobin;
}

/// <summary>How the edge reaches a replica.</summary>
public static class RouteVia
{
    /// <summary>The edge connects to <see cref="RouteDestination.Address"/> itself.</summary>
    public const string Direct = "direct";
    /// <summary>The edge sends the request over one of the node's tunnels; the agent connects to the replica's local port.</summary>
    public const string Tunnel = "tunnel";
}

/// <summary>A ready replica and how to reach it.</summary>
public sealed record RouteDestination
{
    public required string ReplicaId { get; init; }
    public required string NodeId { get; init; }
    /// <summary>Base address, such as <c>http://127.0.0.1:41234</c>.</summary>
    public required string Address { get; init; }
    /// <summary><see cref="RouteVia.Direct"/> or <see cref="RouteVia.Tunnel"/>; with a tunnel, the port of <see cref="Address"/> is the replica's port on its node.</summary>
    public string Via { get; init; } = RouteVia.Direct;
    public double Waiting { get; init; }
}

/// <summary>
/// The difference between two route tables: applied to the table of <see cref="BaseVersion"/> it
/// gives the table of <see cref="Version"/>. Lists that did not change are null (left out on the wire).
/// </summary>
public sealed record RouteDelta
{
    public long BaseVersion { get; init; }
    public long Version { get; init; }
    /// <summary>Clusters that are new, whole.</summary>
    public ClusterRoute[]? AddedClusters { get; init; }
    /// <summary>Clusters whose settings changed, whole (destinations included).</summary>
    public ClusterRoute[]? ChangedClusters { get; init; }
    /// <summary>Names of clusters that are gone.</summary>
    public string[]? RemovedClusters { get; init; }
    /// <summary>Clusters whose settings stayed and whose destinations changed.</summary>
    public DestinationDelta[]? Destinations { get; init; }
    /// <summary>Lost nodes that are new.</summary>
    public string[]? LostNodesAdded { get; init; }
    /// <summary>Lost nodes that are no longer lost.</summary>
    public string[]? LostNodesRemoved { get; init; }
    /// <summary>The whole lost-node list, when it could not be said as added and removed (it was not sorted).</summary>
    public string[]? LostNodes { get; init; }
    /// <summary>Draining replicas that are new.</summary>
    public string[]? DrainingAdded { get; init; }
    /// <summary>Replicas no longer draining.</summary>
    public string[]? DrainingRemoved { get; init; }
    /// <summary>The whole draining list, when it could not be said as added and removed (it was not sorted).</summary>
    public string[]? DrainingReplicas { get; init; }
}

/// <summary>How one cluster's destinations changed.</summary>
public sealed record DestinationDelta
{
    public required string Cluster { get; init; }
    /// <summary>Replicas that are new, sorted by replica id.</summary>
    public RouteDestination[]? Added { get; init; }
    /// <summary>Replicas whose node, address or way of reaching them changed, whole.</summary>
    public RouteDestination[]? Changed { get; init; }
    /// <summary>Ids of replicas that are gone (not ready, unhealthy, draining, node lost or removed).</summary>
    public string[]? Removed { get; init; }
    /// <summary>Replica id → new <see cref="RouteDestination.Waiting"/>, for replicas whose only change is their load.</summary>
    public Dictionary<string, double>? Waiting { get; init; }
}
