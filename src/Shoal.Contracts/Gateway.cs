using System.Text.Json.Serialization;

namespace Shoal.Contracts;

/// <summary>
/// Limits of an endpoint key or of a project at the edge's gateway (issue 16). Null: no limit of
/// that kind. A project's limits hold for all its keys together; a key's for that key alone; a
/// request must fit both.
/// </summary>
public sealed record GatewayLimits
{
    /// <summary>Requests admitted per minute.</summary>
    public int? RequestsPerMinute { get; init; }
    /// <summary>Tokens (prompt + completion) per minute; reserved before the request goes out, settled from the response's usage.</summary>
    public long? TokensPerMinute { get; init; }
    /// <summary>Requests in flight at once.</summary>
    public int? MaxConcurrent { get; init; }

    [JsonIgnore]
    public bool IsEmpty => RequestsPerMinute is null && TokensPerMinute is null && MaxConcurrent is null;
}

/// <summary>A spending limit in US dollars per period (<see cref="BudgetPeriods"/>), for a project or a key. Budgets fail closed.</summary>
public sealed record BudgetSpec
{
    public required decimal AmountUsd { get; init; }
    /// <summary>One of <see cref="BudgetPeriods"/>; periods start at 00:00 UTC (day), Monday (week) or the 1st (month).</summary>
    public string Period { get; init; } = BudgetPeriods.Month;
}

public static class BudgetPeriods
{
    public const string Day = "day";
    public const string Week = "week";
    public const string Month = "month";

    public static bool IsKnown(string? value) => value is Day or Week or Month;
}

/// <summary>What a cluster charges; any mix of token prices and a GPU-time price. Null parts cost nothing.</summary>
public sealed record ClusterPrice
{
    /// <summary>US dollars per 1,000,000 prompt (input) tokens.</summary>
    public decimal? InputPerMillion { get; init; }
    /// <summary>US dollars per 1,000,000 completion (output) tokens.</summary>
    public decimal? OutputPerMillion { get; init; }
    /// <summary>US dollars per GPU-second of the request's duration on its replica.</summary>
    public decimal? PerGpuSecond { get; init; }
}

/// <summary>A project's gateway settings as the control plane pushes them to edges.</summary>
public sealed record ProjectGrant
{
    public GatewayLimits? Limits { get; init; }
    public BudgetSpec? Budget { get; init; }
    /// <summary>What the project spent in the budget's current period as the control plane's ledger knew at push time (a floor for the edges' counters after a restart).</summary>
    public decimal? SpentUsd { get; init; }
}

/// <summary>Every project that has gateway limits or a budget; sent on connect and when one changes. Replaces what the edge had.</summary>
public sealed record ProjectGrantsMessage : EdgeMessage
{
    public Dictionary<string, ProjectGrant> Projects { get; init; } = new(StringComparer.Ordinal);
}

/// <summary>
/// One request through an edge, for the usage ledger: written by the edge when the request ends,
/// stored by the control plane once per <see cref="RequestId"/> (shipping it twice stores it once).
/// </summary>
public sealed record UsageRecord
{
    /// <summary>Longest <see cref="Model"/> kept (an edge cuts longer ones; the control plane skips a record with a longer one).</summary>
    public const int MaxModelLength = 256;

    /// <summary>Unique per request (the edge makes it; also sent to the client as <c>x-request-id</c>).</summary>
    public required string RequestId { get; init; }
    /// <summary>When the request arrived at the edge.</summary>
    public required DateTimeOffset At { get; init; }
    /// <summary>The endpoint key's id; null for a public cluster called without a key.</summary>
    public string? KeyId { get; init; }
    public required string Project { get; init; }
    public required string Cluster { get; init; }
    /// <summary>The model the request named, when it named one.</summary>
    public string? Model { get; init; }
    /// <summary>The replica (and its node) that served the last attempt; null when none was tried.</summary>
    public string? ReplicaId { get; init; }
    public string? NodeId { get; init; }
    public long PromptTokens { get; init; }
    /// <summary>Completion tokens the client received (for a cut stream: what was delivered).</summary>
    public long CompletionTokens { get; init; }
    /// <summary>Milliseconds from arrival to the first response byte; null when no response came.</summary>
    public double? TimeToFirstTokenMs { get; init; }
    public double DurationMs { get; init; }
    /// <summary>The status the client got.</summary>
    public int Status { get; init; }
    /// <summary>Attempts made on replicas (1 = no retry or failover).</summary>
    public int Attempts { get; init; }
    public bool Streamed { get; init; }
    /// <summary>The response was cut before its end (a replica lost mid-stream, or the client left).</summary>
    public bool Cut { get; init; }
    /// <summary>What the request cost at the cluster's price.</summary>
    public decimal CostUsd { get; init; }
    /// <summary>The edge that served it (its advertised URL or name).</summary>
    public string? Edge { get; init; }
}

/// <summary>
/// Usage records from a standalone edge's spool, in spool order. The control plane stores them (once
/// per request id) and answers with <see cref="UsageAckMessage"/> carrying the same <see cref="Sequence"/>;
/// until then the edge keeps them and sends them again after a reconnect.
/// </summary>
public sealed record UsageBatch : EdgeRequest
{
    /// <summary>Its <c>type</c> on the wire.</summary>
    public const string Discriminator = "usage";

    /// <summary>The edge's number for this batch (increasing within one spool).</summary>
    public long Sequence { get; init; }
    public UsageRecord[] Records { get; init; } = [];
}

/// <summary>The records of the batch <see cref="Sequence"/> are stored: the edge may drop them from its spool.</summary>
public sealed record UsageAckMessage : EdgeMessage
{
    public long Sequence { get; init; }
}

/// <summary>OpenAI's error body: <c>{"error": {"message", "type", "param", "code"}}</c>, for the gateway's <c>/v1</c> answers.</summary>
public sealed record OpenAiErrorResponse(OpenAiError Error);

public sealed record OpenAiError
{
    public required string Message { get; init; }
    public required string Type { get; init; }
    public string? Param { get; init; }
    public string? Code { get; init; }
}

/// <summary>Names used by the gateway on the wire.</summary>
public static class GatewayHeaders
{
    public const string RequestId = "x-request-id";
    public const string LimitRequests = "x-ratelimit-limit-requests";
    public const string RemainingRequests = "x-ratelimit-remaining-requests";
    public const string ResetRequests = "x-ratelimit-reset-requests";
    public const string LimitTokens = "x-ratelimit-limit-tokens";
    public const string RemainingTokens = "x-ratelimit-remaining-tokens";
    public const string ResetTokens = "x-ratelimit-reset-tokens";
}
