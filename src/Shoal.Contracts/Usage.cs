namespace Shoal.Contracts;

/// <summary>How <c>GET /v1/usage</c> groups its rows (<c>?by=</c>).</summary>
public static class UsageGroupings
{
    public const string Node = "node";
    public const string Cluster = "cluster";
    public const string Key = "key";
    public const string Project = "project";

    public static bool IsKnown(string? value) => value is Node or Cluster or Key or Project;
}

/// <summary>
/// One group's usage over the asked period: requests through the edges (from the usage ledger) and,
/// for nodes, clusters and projects, the GPU-seconds their replicas ran (from replica running time).
/// </summary>
public sealed record UsageRowDto
{
    /// <summary>The node id, cluster name, key id or project name; <c>-</c> for requests without one (no key, no node reached).</summary>
    public required string Group { get; init; }
    public long Requests { get; init; }
    public long PromptTokens { get; init; }
    public long CompletionTokens { get; init; }
    public decimal CostUsd { get; init; }
    /// <summary>GPUs × seconds their replicas ran within the period; 0 for keys.</summary>
    public double GpuSeconds { get; init; }
    /// <summary>Requests answered with a status of 400 or more, or cut before their end.</summary>
    public long Errors { get; init; }
}

/// <summary>The answer of <c>GET /v1/usage</c>.</summary>
public sealed record UsageReportDto
{
    public required string By { get; init; }
    public required DateTimeOffset Since { get; init; }
    public required DateTimeOffset Until { get; init; }
    public UsageRowDto[] Rows { get; init; } = [];
}
