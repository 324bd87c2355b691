namespace Shoal.Store;

/// <summary>
/// One time a replica ran on a node, for GPU-time metering: from <see cref="StartedAt"/> (its start as
/// its agent reported it) to <see cref="EndedAt"/> (null while it runs). Stored once per replica id and
/// start, so writing it again changes nothing, and its first end stays.
/// </summary>
public sealed record ReplicaRunRecord
{
    public required string ReplicaId { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public DateTimeOffset? EndedAt { get; init; }
    public required string ClusterId { get; init; }
    public required string Cluster { get; init; }
    public required string Project { get; init; }
    public required string NodeId { get; init; }
    public int Gpus { get; init; }

    /// <summary>GPUs × seconds of this run within [<paramref name="since"/>, <paramref name="until"/>) (a run still going counts up to <paramref name="until"/>).</summary>
    public double GpuSecondsWithin(DateTimeOffset since, DateTimeOffset until)
    {
        var start = StartedAt > since ? StartedAt : since;
        var end = EndedAt is { } e && e < until ? e : until;
        return end <= start ? 0 : Gpus * (end - start).TotalSeconds;
    }
}

/// <summary>What <see cref="IShoalStore.QueryUsageAsync"/> sums: the period, the grouping, and (for a project's key) the one project it may see.</summary>
public sealed record UsageQuery
{
    /// <summary>One of <see cref="Contracts.UsageGroupings"/>.</summary>
    public required string By { get; init; }
    public required DateTimeOffset Since { get; init; }
    public required DateTimeOffset Until { get; init; }
    /// <summary>Only this project's rows; null for all.</summary>
    public string? Project { get; init; }
}
