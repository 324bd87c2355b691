using System.Text.Json;
using Shoal.Edge.Gateway;

namespace Shoal.Edge;

/// <summary>The gateway's OpenAI facade at the edge's root: <c>/v1/chat/completions</c>, <c>/v1/completions</c>, <c>/v1/embeddings</c>, <c>/v1/models</c>.</summary>
public sealed partial class EdgeProxy
{
    /// <summary>
    /// A request to one of the OpenAI paths at the edge's root: an endpoint key is required; the
    /// body is read (replayable) and its <c>model</c> picks the cluster among the key's project's
    /// clusters that serve it (<see cref="Routing.EdgeRouter.FindModel"/>), then
    /// <see cref="ServeClusterAsync"/>. <c>/v1/models</c> lists the models of the key's project.
    /// Public clusters of other projects are not reached this way (only as <c>/c/{cluster}/…</c>).
    /// </summary>
    private async Task ServeOpenAiAsync(HttpContext context)
    {
        var request = context.Request;
        var grant = _access.Find(request.Headers.Authorization);
        if (grant is null)
        {
            _metrics.CountUnauthorized();
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await GatewayPipeline.WriteOpenAiErrorAsync(context, StatusCodes.Status401Unauthorized, "invalid_request_error", "invalid_api_key",
                "Incorrect or missing API key: send Authorization: Bearer <endpoint key> (shoal keys create NAME --role endpoint).");
            return;
        }
        // The user's key is for Shoal; the node that serves the request never sees it.
        request.Headers.Authorization = default;
        var operation = OpenAiPaths.OperationOf(request.Method, request.Path);
        if (operation == OpenAiOperation.Models)
        {
            await WriteModelsAsync(context, grant.Project);
            return;
        }

        if (request.ContentLength > _options.MaxRequestBodyBytes)
        {
            await WriteOpenAiTooLargeAsync(context, "the request body is larger than the edge accepts");
            return;
        }
        var (accepted, body, replayable) = await ReadBodyAsync(context);
        if (!accepted) return;
        if (!replayable)
        {
            await WriteOpenAiTooLargeAsync(context, $"the /v1 facade reads bodies of up to {EdgeOptions.ReplayBufferBytes} bytes to route them by model; send larger ones to /c/{{cluster}}/v1/…");
            return;
        }
        var model = body is null ? null : OpenAiRequestInspector.FindModel(body.Span);
        var view = model is null ? null : _router.FindModel(grant.Project, model);
        if (view is null)
        {
            body?.Dispose();
            _metrics.CountUnknownCluster();
            await GatewayPipeline.WriteOpenAiErrorAsync(context, StatusCodes.Status404NotFound, "invalid_request_error", "model_not_found",
                model is null
                    ? "You must provide a model parameter."
                    : $"The model '{model}' does not exist or you do not have access to it.", "model");
            return;
        }
        await ServeClusterAsync(context, view, request.Path, grant, body);
    }

    private static Task WriteOpenAiTooLargeAsync(HttpContext context, string message) =>
        GatewayPipeline.WriteOpenAiErrorAsync(context, StatusCodes.Status413PayloadTooLarge, "invalid_request_error", "request_too_large", message);

    /// <summary>OpenAI's model list: <c>{"object":"list","data":[{"id","object":"model","created","owned_by"}]}</c>, owned by the project.</summary>
    private async Task WriteModelsAsync(HttpContext context, string project)
    {
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(context.Response.BodyWriter);
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        foreach (var model in _router.ModelsOf(project))
        {
            json.WriteStartObject();
            json.WriteString("id", model);
            json.WriteString("object", "model");
            json.WriteNumber("created", 0);
            json.WriteString("owned_by", project);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }
}
