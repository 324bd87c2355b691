namespace Shoal.Contracts;

/// <summary>
/// The edge's view of the world: for each cluster, the replicas that may take requests.
/// Immutable; a new table replaces the old one as a whole.
/// </summary>
public sealed record RouteTable
{
    public static readonly RouteTable Empty = new();

    public long Version { get; init; }
    public Dictionary<string, ClusterRoute> Clusters { get; init; } = new(StringComparer.Ordinal);
}

/// <summary>One cluster's endpoint settings and its routable replicas.</summary>
public sealed record ClusterRoute
{
    public required string Cluster { get; init; }
    public RouteDestination[] Destinations { get; init; } = [];
}

/// <summary>A ready replica and how to reach it.</summary>
public sealed record RouteDestination
{
    public required string ReplicaId { get; init; }
    public required string NodeId { get; init; }
    /// <summary>Base address, such as <c>http://127.0.0.1:41234</c>.</summary>
    public required string Address { get; init; }
    public double Waiting { get; init; }
}
