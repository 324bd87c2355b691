using Shoal.Contracts;

namespace Shoal.Edge.Gateway;

/// <summary>
/// What a request costs at its cluster's <see cref="ClusterPrice"/>: prompt tokens × the input price
/// + completion tokens × the output price (both per 1,000,000) + GPU-seconds × the GPU-second price,
/// where a request's GPU-seconds are its time on a replica (from its first attempt to its end, time
/// held waiting for a ready replica left out) × the cluster's GPUs per replica. Pure; exact in
/// <see cref="decimal"/> but for the GPU-seconds, which are rounded to the microsecond.
/// </summary>
public static class Cost
{
    private const decimal Million = 1_000_000m;
    /// <summary>The most GPU-seconds one request is charged for (a guard against a broken clock; about 11.5 GPU-days).</summary>
    public const double MaxGpuSeconds = 1_000_000;

    /// <summary>The cost of <paramref name="promptTokens"/>, <paramref name="completionTokens"/> and <paramref name="gpuSeconds"/> at <paramref name="price"/> (0 without a price).</summary>
    public static decimal Of(ClusterPrice? price, long promptTokens, long completionTokens, double gpuSeconds)
    {
        if (price is null) return 0m;
        var cost = 0m;
        if (price.InputPerMillion is { } input && promptTokens > 0) cost += promptTokens * input / Million;
        if (price.OutputPerMillion is { } output && completionTokens > 0) cost += completionTokens * output / Million;
        if (price.PerGpuSecond is { } perSecond && gpuSeconds > 0) cost += GpuSeconds(gpuSeconds) * perSecond;
        return cost;
    }

    /// <summary>
    /// What <paramref name="call"/> cost, having spent <paramref name="onReplica"/> on replicas: its
    /// prompt tokens as the ledger counts them (reported, else the estimate), the completion tokens
    /// delivered, and <paramref name="onReplica"/> × the route's GPUs per replica.
    /// </summary>
    public static decimal Of(GatewayCall call, TimeSpan onReplica)
    {
        ArgumentNullException.ThrowIfNull(call);
        return Of(call.Route.Price, PromptTokens(call), call.CompletionTokens, onReplica.TotalSeconds * Math.Max(1, call.Route.GpuCount));
    }

    /// <summary>
    /// The most <paramref name="call"/> may cost, reserved against budgets before it goes out: its
    /// prompt estimate, <c>max_tokens</c> (or <paramref name="defaultMaxTokens"/> when it gave none),
    /// and <paramref name="maxOnReplica"/> × the route's GPUs per replica.
    /// </summary>
    public static decimal MostOf(GatewayCall call, long defaultMaxTokens, TimeSpan maxOnReplica)
    {
        ArgumentNullException.ThrowIfNull(call);
        var price = call.Route.Price;
        if (price is null) return 0m;
        var completion = call.MaxTokens is { } max and >= 0 ? max : defaultMaxTokens;
        return Of(price, call.Inspected ? call.PromptEstimate : 0, completion, maxOnReplica.TotalSeconds * Math.Max(1, call.Route.GpuCount));
    }

    /// <summary>True when the price has a token part (the request's token figures matter to its reservation).</summary>
    public static bool HasTokenPrice(ClusterPrice? price) => price is not null && (price.InputPerMillion > 0 || price.OutputPerMillion > 0);

    /// <summary>Prompt tokens as the gateway bills them: the response's usage, else the body's estimate.</summary>
    public static long PromptTokens(GatewayCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.UsageReported ? call.PromptTokens : Math.Max(call.PromptTokens, call.Inspected ? call.PromptEstimate : 0);
    }

    private static decimal GpuSeconds(double seconds) => (decimal)Math.Round(Math.Min(seconds, MaxGpuSeconds), 6);
}
