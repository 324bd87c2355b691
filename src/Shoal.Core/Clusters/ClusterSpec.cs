using Shoal.Contracts;

namespace Shoal.Core.Clusters;

/// <summary>What a user asked for: the validated, normalised spec of a cluster.</summary>
public sealed record ClusterSpec
{
    public const int DefaultPort = 8000;
    public const int MaxReplicas = 1000;

    public required string Name { get; init; }
    public required string Image { get; init; }
    public required string Gpu { get; init; }
    public int GpuCount { get; init; } = 1;
    public int Replicas { get; init; } = 1;
    public int Port { get; init; } = DefaultPort;
    public Dictionary<string, string> Env { get; init; } = new(StringComparer.Ordinal);
    public string[] Args { get; init; } = [];
    public HealthCheckSpec Health { get; init; } = new();
    /// <summary>Pull credentials for a private registry; never shown by the API, sent only to nodes running the cluster.</summary>
    public RegistryCredentials? RegistryAuth { get; init; }
    /// <summary>How the edge balances requests: <see cref="BalancingPolicy.LeastOutstanding"/> (default) or <see cref="BalancingPolicy.RoundRobin"/>.</summary>
    public string Routing { get; init; } = BalancingPolicy.LeastOutstanding;
    /// <summary>How long the edge holds a request while the cluster has no ready replica, in seconds. Default 30.</summary>
    public int QueueTimeoutSeconds { get; init; } = DefaultQueueTimeoutSeconds;

    public const int DefaultQueueTimeoutSeconds = 30;
    public const int MaxQueueTimeoutSeconds = 300;
}
