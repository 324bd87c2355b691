using Shoal.Contracts;

namespace Shoal.Edge.Gateway;

/// <summary>Which OpenAI operation a request is, from its path (after the cluster prefix, if any).</summary>
public enum OpenAiOperation
{
    /// <summary>Not an OpenAI path: the gateway counts the request (requests, concurrency, ledger) but no tokens.</summary>
    None,
    ChatCompletions,
    Completions,
    Embeddings,
    Models,
}

/// <summary>
/// One request's passage through the gateway (issue 16): who calls (key, project), what (cluster,
/// model, token figures from the body), what the admission stages reserved, and what the response
/// delivered. Made by <see cref="GatewayPipeline.Begin"/>, completed once by <see cref="GatewayPipeline.Complete"/>.
/// Written by the request's own flow only (one thread at a time), except the response counters,
/// which the response tap writes while the response streams and the proxy reads after it ended.
/// </summary>
public sealed class GatewayCall
{
    public required string RequestId { get; init; }
    /// <summary>Arrival, as a <see cref="TimeProvider.GetTimestamp"/>.</summary>
    public required long Arrived { get; init; }
    public required DateTimeOffset ArrivedAt { get; init; }
    /// <summary>The valid endpoint key's grant; null for a public cluster called without a (valid) key.</summary>
    public EndpointKeyGrant? Grant { get; init; }
    public string? KeyId => Grant?.KeyId;
    public required string Project { get; init; }
    /// <summary>The cluster's route when the request arrived (settings: price, models, project).</summary>
    public required ClusterRoute Route { get; set; }
    public string Cluster => Route.Cluster;
    public OpenAiOperation Operation { get; set; }

    // ---- From the request body (set when the body is inspected) ----
    /// <summary>The body was read and inspected (token figures below are meaningful).</summary>
    public bool Inspected { get; set; }
    public string? Model { get; set; }
    public bool Stream { get; set; }
    /// <summary>The client itself asked for usage in the stream (<c>stream_options.include_usage</c>); when false, the gateway asked and strips that chunk.</summary>
    public bool ClientAskedUsage { get; set; }
    /// <summary>Estimated prompt tokens, from the body's text.</summary>
    public long PromptEstimate { get; set; }
    /// <summary><c>max_tokens</c> / <c>max_completion_tokens</c> from the body; null when absent.</summary>
    public long? MaxTokens { get; set; }

    // ---- Reservations (set by admission stages) ----
    /// <summary>Tokens reserved against token limits before the request went out.</summary>
    public long ReservedTokens { get; set; }
    /// <summary>US dollars reserved against budgets before the request went out.</summary>
    public decimal ReservedCostUsd { get; set; }
    /// <summary>State of the rate-limit stage for this request (owned by that stage).</summary>
    public object? LimitTicket { get; set; }
    /// <summary>State of the budget stage for this request (owned by that stage).</summary>
    public object? BudgetTicket { get; set; }
    /// <summary>What the request cost at the cluster's price (<see cref="Gateway.Cost"/>), set by <see cref="GatewayPipeline.Complete"/> before the stages settle.</summary>
    public decimal CostUsd { get; set; }

    // ---- Attempts and response ----
    public int Attempts { get; set; }
    /// <summary>Start of the first attempt on a replica, as a timestamp; 0 while none (the time held for a ready replica is before it).</summary>
    public long Sent { get; set; }
    public string? ReplicaId { get; set; }
    public string? NodeId { get; set; }
    /// <summary>First response byte to the client, as a timestamp; 0 while none.</summary>
    public long FirstByte { get; set; }
    /// <summary>Prompt tokens as the response's <c>usage</c> said (0 when it said nothing).</summary>
    public long PromptTokens;
    /// <summary>Completion tokens delivered to the client (from <c>usage</c>, or counted from a cut stream).</summary>
    public long CompletionTokens;
    /// <summary>The response carried a <c>usage</c> object (its figures are exact).</summary>
    public bool UsageReported { get; set; }
    /// <summary>The response was cut before its end.</summary>
    public bool Cut { get; set; }
    /// <summary>The response's usage tap, when the answer has one.</summary>
    internal OpenAiUsageTap? Tap { get; set; }
    /// <summary>Set by <see cref="GatewayPipeline.Complete"/>: the call is over (guards against completing twice).</summary>
    internal int Completed;
    /// <summary>Bit i: admission stage i admitted the call (and must complete it).</summary>
    internal int AdmittedStages;

    /// <summary>Tokens the request used as far as the gateway knows: reported usage, else the estimate for the prompt and what was delivered.</summary>
    public long TotalTokens => (UsageReported ? PromptTokens : Math.Max(PromptTokens, Inspected ? PromptEstimate : 0)) + CompletionTokens;
}
