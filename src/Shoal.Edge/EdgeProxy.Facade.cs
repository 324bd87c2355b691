using Shoal.Edge.Gateway;

namespace Shoal.Edge;

/// <summary>The gateway's OpenAI facade at the edge's root: <c>/v1/chat/completions</c>, <c>/v1/completions</c>, <c>/v1/embeddings</c>, <c>/v1/models</c>.</summary>
public sealed partial class EdgeProxy
{
    /// <summary>
    /// A request to one of the OpenAI paths at the edge's root. Issue 16: authenticate the key, read
    /// the body, pick the cluster that serves its <c>model</c> among those the key may call, and
    /// <see cref="ServeClusterAsync"/>; <c>/v1/models</c> lists the key's models.
    /// </summary>
    private Task ServeOpenAiAsync(HttpContext context) =>
        GatewayPipeline.WriteOpenAiErrorAsync(context, StatusCodes.Status404NotFound, "invalid_request_error", "model_not_found",
            "the /v1 facade routes by model; use /c/{cluster}/v1/… for now", "model");
}
