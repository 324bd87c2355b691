namespace Shoal.Core.Clusters;

/// <summary>
/// A cluster's rollout bookkeeping, kept with the cluster in the store: where its latest update
/// stands, the specs of earlier generations that replicas still run (so they keep getting exactly
/// their own spec until they are replaced), and nodes its replicas should avoid for a while.
/// </summary>
public sealed record ClusterRollout
{
    /// <summary>One of <c>RolloutStates</c>: progressing, complete, rolled-back.</summary>
    public string State { get; init; } = "complete";

    /// <summary>What the update changed, or why it was rolled back.</summary>
    public string? Reason { get; init; }

    public DateTimeOffset? StartedAt { get; init; }

    public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>The last generation that completed: where a failed update goes back to.</summary>
    public long StableGeneration { get; init; } = 1;

    /// <summary>Specs of earlier generations still run by a replica (or the stable one), by generation.</summary>
    public Dictionary<long, GenerationSpec> Generations { get; init; } = [];

    /// <summary>Node id → until when new replicas of the cluster avoid it (a replica crash-looped there).</summary>
    public Dictionary<string, DateTimeOffset> AvoidNodes { get; init; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Node id → when a replica of the cluster last finished draining there (a scale-down, say): the
    /// node still holds the image and likely the model's files in its caches, so a scale-up prefers it.
    /// </summary>
    public Dictionary<string, DateTimeOffset> WarmNodes { get; init; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Replicas of the current generation replaced in a row for failing before any replica of it was
    /// ever ready (crash loops, images that cannot be pulled): attempts at a spec that has not worked yet.
    /// </summary>
    public int FailedAttempts { get; init; }

    /// <summary>No replacement for a failed attempt is made before this (back-off growing with each attempt).</summary>
    public DateTimeOffset? RetryAt { get; init; }

    /// <summary>
    /// Set when the cluster gave up: its current spec failed on every attempt. It runs no replica and
    /// uses no GPU until an update (or <c>shoal update</c> with the same spec) tries again.
    /// </summary>
    public string? Failure { get; init; }

    /// <summary>When the cluster gave up.</summary>
    public DateTimeOffset? FailedAt { get; init; }
}

/// <summary>The spec of one earlier generation, with the image digest it was pinned to.</summary>
public sealed record GenerationSpec(ClusterSpec Spec, string? ImageDigest);
