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
    /// <summary>
    /// Env variables whose values are secret: sealed in the store, shown as <c>***</c>, sent only to
    /// nodes running the cluster. Names never also appear in <see cref="Env"/>.
    /// </summary>
    public Dictionary<string, string> SecretEnv { get; init; } = new(StringComparer.Ordinal);
    public string[] Args { get; init; } = [];
    public HealthCheckSpec Health { get; init; } = new();
    /// <summary>Pull credentials for a private registry; never shown by the API, sent only to nodes running the cluster.</summary>
    public RegistryCredentials? RegistryAuth { get; init; }
    /// <summary>How the edge balances requests: <see cref="BalancingPolicy.LeastOutstanding"/> (default) or <see cref="BalancingPolicy.RoundRobin"/>.</summary>
    public string Routing { get; init; } = BalancingPolicy.LeastOutstanding;
    /// <summary>How long the edge holds a request while the cluster has no ready replica, in seconds. Default 30.</summary>
    public int QueueTimeoutSeconds { get; init; } = DefaultQueueTimeoutSeconds;
    /// <summary>
    /// The edge's time-to-first-byte cap for the cluster's requests, in seconds: an attempt without
    /// response headers by then is cut and retried on another replica. Null: the edge's default
    /// (none unless the edge sets one); 0: no cap.
    /// </summary>
    public int? FirstByteTimeoutSeconds { get; init; }
    /// <summary>The endpoint answers without an endpoint key. Default false: only keys of the cluster's project.</summary>
    public bool Public { get; init; }
    /// <summary>Most requests the edge holds while the cluster has no ready replica (beyond: 503). Default 1000.</summary>
    public int MaxHeld { get; init; } = BalancingPolicy.DefaultMaxHeld;
    /// <summary>
    /// Model names the cluster serves on the gateway's <c>/v1</c> facade (<c>shoal deploy --model</c>),
    /// sorted; null: what its ready replicas list on <c>/v1/models</c>.
    /// </summary>
    public string[]? Models { get; init; }
    /// <summary>
    /// Autoscaling settings; null: <see cref="Replicas"/> is fixed. When set, the autoscaler owns
    /// <see cref="Replicas"/> (kept within min..max) and a user's scale is refused.
    /// </summary>
    public AutoscaleSpec? Autoscale { get; init; }
    /// <summary>What the cluster charges per token and per GPU-second (the gateway's budgets and cost); null: nothing. A setting, not part of what replicas run.</summary>
    public ClusterPrice? Price { get; init; }

    /// <summary>How long a draining replica may take to finish its in-flight requests before it is stopped, in seconds. Default 30.</summary>
    public int DrainTimeoutSeconds { get; init; } = DefaultDrainTimeoutSeconds;
    /// <summary>How long a new replica of an update may take to become ready before the update is rolled back, in seconds. Default 120.</summary>
    public int ProgressDeadlineSeconds { get; init; } = DefaultProgressDeadlineSeconds;

    /// <summary>
    /// Labels a node must have to run the cluster's replicas, as the user gave them: null for the
    /// default (<see cref="RequiredNodeLabels"/>), empty for explicitly none.
    /// </summary>
    public string[]? NodeLabels { get; init; }

    /// <summary>The label a cluster with secrets asks of its nodes unless its spec names others.</summary>
    public const string TrustedLabel = "trusted";

    /// <summary>
    /// True when the spec holds something that must reach only nodes the operator trusts:
    /// registry credentials and secret env (sealed at rest too). The one place that decides it.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool HasSecrets => SecretEnv.Count > 0 || RegistryAuth is not null;

    /// <summary>
    /// The labels a node must have to get the cluster's replicas (and so its secrets): those the spec
    /// names, else <see cref="TrustedLabel"/> when it has secrets, else none.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<string> RequiredNodeLabels => NodeLabels ?? (HasSecrets ? [TrustedLabel] : []);

    public const int DefaultQueueTimeoutSeconds = 30;
    public const int MaxQueueTimeoutSeconds = 300;
    public const int MaxFirstByteTimeoutSeconds = 3600;
    public const int DefaultDrainTimeoutSeconds = 30;
    public const int MaxDrainTimeoutSeconds = 3600;
    public const int DefaultProgressDeadlineSeconds = 120;
    public const int MinProgressDeadlineSeconds = 10;
    public const int MaxProgressDeadlineSeconds = 86_400;
    public const int MaxMaxHeld = 100_000;
    public const int MaxModels = 64;
    public const int MaxModelNameLength = 256;
    public const int MaxScaleDownWindowSeconds = 3600;
    public const int MaxScaleToZeroAfterSeconds = 86_400;
    public const double MaxTarget = 10_000;
    /// <summary>Highest price of one part of <see cref="Price"/> in US dollars (per 1M tokens or per GPU-second): a guard against a typo, far above any real price.</summary>
    public const decimal MaxPriceUsd = 10_000m;

    /// <summary>
    /// True when replicas of <paramref name="a"/> and <paramref name="b"/> run the same thing: same
    /// image, GPU, port, env (plain and secret), args, health check and pull credentials. Replica count, routing and
    /// timeouts are not part of it. A change of this is a new generation (a rolling update).
    /// </summary>
    public static bool SameRuntime(ClusterSpec a, ClusterSpec b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return a.Image == b.Image && a.Gpu == b.Gpu && a.GpuCount == b.GpuCount && a.Port == b.Port
            && a.Health == b.Health && a.RegistryAuth == b.RegistryAuth
            && a.Args.AsSpan().SequenceEqual(b.Args)
            && SameEnv(a.Env, b.Env) && SameEnv(a.SecretEnv, b.SecretEnv);
    }

    /// <summary>Plain and secret env together, as the replica's process sees it.</summary>
    public Dictionary<string, string> ReplicaEnv()
    {
        if (SecretEnv.Count == 0) return Env;
        var all = new Dictionary<string, string>(Env, StringComparer.Ordinal);
        foreach (var (name, value) in SecretEnv) all[name] = value;
        return all;
    }

    private static bool SameEnv(Dictionary<string, string> a, Dictionary<string, string> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v == kv.Value);
}
