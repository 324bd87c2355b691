using System.Text.Json;
using Shoal.Contracts;
using Shoal.Edge.Routing;
using Shoal.Edge.Upstreams;
using Yarp.ReverseProxy.Forwarder;

namespace Shoal.Edge;

/// <summary>
/// The edge's request path: find the cluster, pick a ready replica, forward with YARP's
/// <see cref="IHttpForwarder"/>. No ready replica: 503 with Retry-After.
/// </summary>
public sealed partial class EdgeProxy
{
    /// <summary>Response header naming the replica that served the request.</summary>
    public const string ReplicaHeader = "x-shoal-replica";

    private readonly IHttpForwarder _forwarder;
    private readonly IRouteTableSource _routes;
    private readonly EdgeOptions _options;
    private readonly ILogger<EdgeProxy> _logger;
    private readonly IUpstreamConnector _upstreams;
    private readonly ForwarderRequestConfig _requestConfig = new() { ActivityTimeout = TimeSpan.FromMinutes(5) };

    public EdgeProxy(IHttpForwarder forwarder, IRouteTableSource routes, EdgeOptions options, ReplicaSelector selector, IUpstreamConnector upstreams, ILogger<EdgeProxy> logger)
    {
        _forwarder = forwarder;
        _routes = routes;
        _options = options;
        Selector = selector;
        _logger = logger;
        _upstreams = upstreams;
    }

    public ReplicaSelector Selector { get; }

    public async Task InvokeAsync(HttpContext context)
    {
        if (!ClusterNameResolver.TryResolve(context.Request, _options.Domain, out var cluster, out var forwardPath))
        {
            await WriteErrorAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound,
                "no cluster in the request: use http://{cluster}." + _options.Domain + "/… or /c/{cluster}/…");
            return;
        }

        if (!_routes.Current.Clusters.TryGetValue(cluster, out var route))
        {
            await WriteErrorAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, $"cluster '{cluster}' not found");
            return;
        }

        var destination = Selector.Pick(route.Destinations);
        if (destination is null)
        {
            context.Response.Headers.RetryAfter = _options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, ErrorCodes.Unavailable,
                $"cluster '{cluster}' has no ready replica yet; retry shortly");
            return;
        }

        context.Request.Path = forwardPath;
        context.Items[ReplicaHeader] = destination.ReplicaId;
        using var lease = Selector.Begin(destination.ReplicaId);
        var (client, address) = _upstreams.Resolve(destination);
        var error = await _forwarder.SendAsync(context, address, client, _requestConfig, ReplicaHeaderTransformer.Instance);
        if (error != ForwarderError.None)
        {
            var feature = context.GetForwarderErrorFeature();
            LogForwardFailed(_logger, cluster, destination.ReplicaId, error, feature?.Exception?.Message);
        }
    }

    internal static Task WriteErrorAsync(HttpContext context, int status, string code, string message)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, new ErrorResponse(new ErrorBody(code, message, status)),
            ShoalJsonContext.Default.ErrorResponse, context.RequestAborted);
    }

    /// <summary>Default forwarding, plus the name of the replica that served, set after the upstream headers so the edge's value wins.</summary>
    private sealed class ReplicaHeaderTransformer : HttpTransformer
    {
        public static readonly ReplicaHeaderTransformer Instance = new();

        public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
        {
            var result = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
            if (httpContext.Items[ReplicaHeader] is string replica) httpContext.Response.Headers[ReplicaHeader] = replica;
            return result;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Forwarding to cluster {Cluster} replica {Replica} failed: {Error} {Detail}")]
    private static partial void LogForwardFailed(ILogger logger, string cluster, string replica, ForwarderError error, string? detail);
}
