using Shoal.Contracts;
using Shoal.Edge.Gateway;

namespace Shoal.Edge.Tests.Gateway;

/// <summary>Gateway calls as the pipeline would make them, with the token figures the facade fills.</summary>
internal static class GatewayCalls
{
    public static readonly ClusterPrice TokenPrice = new() { InputPerMillion = 1m, OutputPerMillion = 2m };

    public static ClusterRoute Route(ClusterPrice? price, string project = "alpha", int gpuCount = 1) =>
        new() { Cluster = "chat", Project = project, Price = price, GpuCount = gpuCount };

    public static GatewayCall Make(ClusterRoute route, EndpointKeyGrant? grant = null, long prompt = 0, long? maxTokens = null) => new()
    {
        RequestId = "req_" + Guid.NewGuid().ToString("N"),
        Arrived = 0,
        ArrivedAt = DateTimeOffset.UnixEpoch,
        Grant = grant,
        Project = route.Project,
        Route = route,
        Operation = OpenAiOperation.ChatCompletions,
        Inspected = true,
        PromptEstimate = prompt,
        MaxTokens = maxTokens,
    };

    public static EndpointKeyGrant Key(string id, string project = "alpha", BudgetSpec? budget = null, decimal? spent = null) =>
        new(project, null) { KeyId = id, Budget = budget, SpentUsd = spent };

    /// <summary>The call ended with this usage; its cost as the pipeline sets it (no GPU time).</summary>
    public static void Used(GatewayCall call, long prompt, long completion)
    {
        call.PromptTokens = prompt;
        call.CompletionTokens = completion;
        call.UsageReported = true;
        call.CostUsd = Cost.Of(call, TimeSpan.Zero);
    }
}
