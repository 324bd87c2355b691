using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Shoal.Contracts;
using Shoal.Edge.Access;
using Shoal.Edge.Control;
using Shoal.Edge.Gateway;
using Shoal.Edge.Metrics;
using Shoal.Edge.Routing;
using Shoal.Edge.Upstreams;
using Yarp.ReverseProxy.Forwarder;

namespace Shoal.Edge;

/// <summary>
/// The edge's request path: find the cluster, pick a ready replica, forward with YARP's
/// <see cref="IHttpForwarder"/>. A failure before the first response byte (no connection, 502/503,
/// or 429 from a full replica) is retried on another replica with the buffered body; with no
/// replica to send to, the request waits in the cluster's <see cref="HoldQueue"/> (bounded, oldest
/// first) until one can take it or the cluster's queue timeout passes (then 503 with Retry-After).
/// Responses stream through unbuffered.
/// </summary>
public sealed partial class EdgeProxy
{
    /// <summary>Response header naming the replica that served the request.</summary>
    public const string ReplicaHeader = "x-shoal-replica";

    /// <summary>Responses of known length up to this size are written to the client without a stall guard: they fit in Kestrel's response buffer (64 KiB), so writing them never waits for the client.</summary>
    private const long GuardedResponseBytes = 32 * 1024;

    private readonly IHttpForwarder _forwarder;
    private readonly EdgeRouter _router;
    private readonly PassiveHealth _health;
    private readonly IUpstreamConnector _upstreams;
    private readonly HoldReleaser _holding;
    private readonly EdgeDemandReporter _demand;
    private readonly EdgeMetrics _metrics;
    private readonly EndpointAccess _access;
    private readonly GatewayPipeline _gateway;
    private readonly EdgeOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<EdgeProxy> _logger;
    private readonly ForwarderRequestConfig _requestConfig;
    private readonly string _retryAfter;

    public EdgeProxy(IHttpForwarder forwarder, EdgeRouter router, ReplicaSelector selector, PassiveHealth health, IUpstreamConnector upstreams,
        HoldReleaser holding, EdgeDemandReporter demand, EdgeMetrics metrics, EndpointAccess access, GatewayPipeline gateway, EdgeOptions options, TimeProvider time, ILogger<EdgeProxy> logger)
    {
        _access = access;
        _gateway = gateway;
        _forwarder = forwarder;
        _router = router;
        Selector = selector;
        _health = health;
        _upstreams = upstreams;
        _holding = holding;
        _demand = demand;
        _metrics = metrics;
        _options = options;
        _time = time;
        _logger = logger;
        // Replicas speak HTTP/1.1 (over a socket or a tunnel); asking for it outright skips version negotiation.
        _requestConfig = new ForwarderRequestConfig
        {
            ActivityTimeout = options.ActivityTimeout,
            Version = System.Net.HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
        _retryAfter = options.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        _metricsKeyHash = string.IsNullOrWhiteSpace(options.MetricsKey) ? null : Shoal.Core.Security.Secrets.Hash(options.MetricsKey.Trim());
    }

    public ReplicaSelector Selector { get; }

    private readonly string? _metricsKeyHash;

    private bool MetricsKeyPresented(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        return _metricsKeyHash is not null && header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            && Shoal.Core.Security.Secrets.Matches(header[7..].Trim(), _metricsKeyHash);
    }

    public async Task InvokeAsync(HttpContext context)
    {
        if (!ClusterNameResolver.TryResolve(context.Request, _options.Domain, out var cluster, out var forwardPath))
        {
            if (OpenAiPaths.OperationOf(context.Request.Method, context.Request.Path) != OpenAiOperation.None) await ServeOpenAiAsync(context);
            else await ServeEdgeAsync(context);
            return;
        }

        var view = _router.Find(cluster);
        if (view is null)
        {
            _metrics.CountUnknownCluster();
            await WriteErrorAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, $"cluster '{cluster}' not found");
            return;
        }
        switch (_access.Check(view.Route, context.Request.Headers.Authorization, out var grant))
        {
            case AccessDecision.Allowed:
                // The user's key is for Shoal; the node that serves the request never sees it.
                context.Request.Headers.Authorization = default;
                break;
            case AccessDecision.Unauthenticated:
                _metrics.CountUnauthorized();
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await WriteErrorAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized,
                    $"cluster '{cluster}' needs an endpoint key of its project: send Authorization: Bearer <key> (shoal keys create NAME --role endpoint)");
                return;
            case AccessDecision.OtherProject:
                _metrics.CountUnknownCluster();
                await WriteErrorAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, $"cluster '{cluster}' not found");
                return;
        }
        await ServeClusterAsync(context, view, forwardPath, grant, body: null);
    }

    /// <summary>
    /// Serves a request whose cluster and key are settled: the gateway's admission, then forwarding
    /// (with retries and holding), then the gateway's ledger row. <paramref name="body"/> is a body
    /// the caller already read (the <c>/v1</c> facade reads it to find the model), else null.
    /// </summary>
    private async Task ServeClusterAsync(HttpContext context, ClusterView view, PathString forwardPath, EndpointKeyGrant? grant, BufferedBody? body)
    {
        var cluster = view.Route.Cluster;
        var arrived = _time.GetTimestamp();
        var call = _gateway.Begin(context, view.Route, grant, forwardPath, arrived);
        var exchange = new Exchange(this, view, call);
        var state = view.State;
        Interlocked.Increment(ref state._arrivals);
        try
        {
            await ForwardAsync(context, cluster, forwardPath, exchange, arrived, body);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away while its request was held or its body was read.
        }
        finally
        {
            _gateway.Complete(context, call);
            state.CountResponse(context.Response.StatusCode);
            state.Duration.Observe(_time.GetElapsedTime(arrived));
            if (exchange.FirstByte != 0) state.TimeToFirstByte.Observe(_time.GetElapsedTime(arrived, exchange.FirstByte));
        }
    }

    /// <summary>The edge's own endpoints, for requests that name no cluster.</summary>
    private Task ServeEdgeAsync(HttpContext context)
    {
        var request = context.Request;
        if (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method))
        {
            if (request.Path.Equals("/metrics", StringComparison.Ordinal))
            {
                if (!MetricsKeyPresented(request))
                {
                    context.Response.Headers.WWWAuthenticate = "Bearer";
                    return WriteErrorAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized,
                        _metricsKeyHash is null
                            ? "metrics need a metrics key, and this edge has none (shoal edge --metrics-key-file; shoal server keeps metrics.key in its data dir)"
                            : "metrics need the metrics key: Authorization: Bearer <key>");
                }
                context.Response.ContentType = EdgeMetrics.ContentType;
                return context.Response.WriteAsync(_metrics.Render(), context.RequestAborted);
            }
            if (request.Path.Equals("/healthz", StringComparison.Ordinal))
            {
                context.Response.ContentType = "text/plain";
                return context.Response.WriteAsync("ok", context.RequestAborted);
            }
        }
        _metrics.CountUnknownCluster();
        return WriteErrorAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound,
            "no cluster in the request: use http://{cluster}." + _options.Domain + "/… or /c/{cluster}/…");
    }

    private async Task ForwardAsync(HttpContext context, string cluster, PathString forwardPath, Exchange exchange, long arrived, BufferedBody? body)
    {
        var request = context.Request;
        var view = exchange.View;
        var call = exchange.Call;
        // A request that will likely wait (its cluster has no replica, or others wait already) leaves
        // its body where Kestrel has it until it is released, so held requests take no body buffers;
        // unless the gateway needs its token figures to admit it.
        var bodyRead = body is not null || (view.Targets.Length > 0 && view.State.Queue.Count == 0) || _gateway.NeedsBody(call);
        var replayable = body is not null;
        if (body is null && bodyRead)
        {
            (var accepted, body, replayable) = await ReadBodyAsync(context);
            if (!accepted) return;
        }
        else if (!bodyRead && request.ContentLength > _options.MaxRequestBodyBytes)
        {
            await WriteTooLargeAsync(context);
            return;
        }
        if (bodyRead) InspectBody(request, call, ref body);
        using var _ = body;
        if (!await _gateway.AdmitAsync(context, call)) return;
        request.Path = forwardPath;

        var clientAborted = context.RequestAborted;
        EdgeReplica? last = null;
        EdgeReplica?[]? tried = null;
        var attempts = 0;
        while (true)
        {
            // Requests held for the cluster go first: a new one queues behind them (the release pass hands it on in turn).
            var behind = !exchange.Held && view.State.Queue.Count > 0;
            var picked = behind ? null : Selector.Pick(view, last, tried);
            if (picked is null && !behind)
            {
                view = _router.Find(cluster);
                if (view is null)
                {
                    await WriteErrorAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, $"cluster '{cluster}' not found");
                    return;
                }
                exchange.View = view;
                picked = Selector.Pick(view, last, tried);
            }
            if (picked is null && view.Route.Unavailable is { } unavailable)
            {
                // Nothing will come up on its own (the cluster failed): no point holding the request.
                context.Response.Headers.RetryAfter = _retryAfter;
                await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, ErrorCodes.Unavailable, $"cluster '{cluster}' has no replica: {unavailable}");
                return;
            }
            if (picked is not { } target)
            {
                var outcome = await HoldAsync(context, view, arrived, exchange);
                if (outcome == HoldOutcome.Aborted) return;
                if (outcome != HoldOutcome.Released)
                {
                    if (outcome == HoldOutcome.Full) Interlocked.Increment(ref view.State._holdRefused);
                    else if (exchange.Held) Interlocked.Increment(ref view.State._holdTimeouts);
                    context.Response.Headers.RetryAfter = _retryAfter;
                    await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, ErrorCodes.Unavailable, outcome == HoldOutcome.Full
                        ? $"cluster '{cluster}' has no ready replica and holds {view.Route.MaxHeld} requests for one already; retry shortly"
                        : $"cluster '{cluster}' has no ready replica; retry shortly");
                    return;
                }
                view = _router.Find(cluster);
                if (view is null)
                {
                    await WriteErrorAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, $"cluster '{cluster}' not found");
                    return;
                }
                exchange.View = view;
                // Time has passed and the world changed: the replica that failed before may be back.
                last = null;
                continue;
            }

            if (!bodyRead)
            {
                var (accepted, read, canReplay) = await ReadBodyAsync(context);
                if (!accepted) return;
                InspectBody(request, call, ref read);
                if (read is not null) context.Response.RegisterForDispose(read);
                (body, replayable, bodyRead) = (read, canReplay, true);
                // The upload may have taken a while: pick again from what holds now.
                continue;
            }
            attempts++;
            var elapsed = _time.GetElapsedTime(arrived);
            exchange.Begin(target, replayable && attempts < _options.MaxAttempts && elapsed < _options.RetryBudget);
            if (body is not null) request.Body = body.Open();
            var (client, address) = _upstreams.Resolve(target.Destination);
            var replica = target.State;
            Interlocked.Increment(ref replica._inFlight);
            ForwarderError error;
            // The forwarder stops when RequestAborted fires: for the attempt it also fires when the
            // replica's node is lost, so a request on a frozen node does not wait for its sockets to time out;
            // and, while no response has come, when the replica leaves routing or the first-byte cap passes.
            var cut = CancellationTokenSource.CreateLinkedTokenSource(clientAborted, replica.LostToken);
            var guard = exchange.Guard = new AttemptGuard(cut);
            var departed = replica.DepartedToken.UnsafeRegister(s_cutDeparted, guard);
            var cap = exchange.MayRetry ? FirstByteCap(view, replica, elapsed) : TimeSpan.Zero;
            var timer = cap > TimeSpan.Zero ? _time.CreateTimer(s_cutFirstByte, guard, cap, Timeout.InfiniteTimeSpan) : null;
            context.RequestAborted = cut.Token;
            try
            {
                error = await _forwarder.SendAsync(context, address, client, _requestConfig, exchange);
            }
            finally
            {
                timer?.Dispose();
                departed.Dispose();
                context.RequestAborted = clientAborted;
                Interlocked.Decrement(ref replica._inFlight);
                _holding.AfterAttempt(view.State, replica);
            }
            var wasCut = cut.IsCancellationRequested && !clientAborted.IsCancellationRequested;
            cut.Dispose();
            if (wasCut && guard.CutBeforeAnswer is { } why)
            {
                // Nothing reached the client: the attempt goes elsewhere (when the request may be retried).
                replica.CountError();
                if (why == AttemptGuard.FirstByteTimeout)
                {
                    Interlocked.Increment(ref view.State._firstByteTimeouts);
                    ReportFailure(replica, refused: false);
                }
                else
                {
                    Interlocked.Increment(ref view.State._departedCuts);
                }
                var reason = why == AttemptGuard.FirstByteTimeout ? "no response headers within the first-byte timeout" : "it left routing (unhealthy or removed)";
                if (!exchange.MayRetry)
                {
                    LogForwardFailed(_logger, cluster, replica.ReplicaId, error, reason);
                    ResetResponse(context, call);
                    await WriteErrorAsync(context, StatusCodes.Status502BadGateway, ErrorCodes.Unavailable, "the replica left routing before it answered");
                    return;
                }
                LogRetryUnanswered(_logger, cluster, replica.ReplicaId, reason, cap.TotalMilliseconds);
                ResetResponse(context, call);
                view = exchange.View = _router.Find(cluster) ?? view;
            }
            else if (wasCut)
            {
                replica.CountError();
                if (context.Response.HasStarted)
                {
                    // A stream from a lost node: end it with an error the client sees.
                    LogCutStream(_logger, cluster, replica.ReplicaId);
                    call.Cut = true;
                    context.Abort();
                    return;
                }
                if (!exchange.MayRetry)
                {
                    LogForwardFailed(_logger, cluster, replica.ReplicaId, error, "the replica's node was lost");
                    await WriteErrorAsync(context, StatusCodes.Status502BadGateway, ErrorCodes.Unavailable, "the replica's node was lost before it answered");
                    return;
                }
                LogRetryLost(_logger, cluster, replica.ReplicaId);
                ResetResponse(context, call);
                // The table that said so no longer has the replica: pick from it.
                view = exchange.View = _router.Find(cluster) ?? view;
            }
            else if (exchange.Refused != 0)
            {
                // The replica answered 502/503/429 and the transformer held the answer back for a retry.
                LogRetryStatus(_logger, cluster, replica.ReplicaId, exchange.Refused);
                ResetResponse(context, call);
            }
            else if (error == ForwarderError.None)
            {
                var status = context.Response.StatusCode;
                // The replica's first whole response through this edge ends its warm-up (an error answer does not).
                if (replica._served == 0 && status < 500) _demand.Served(replica);
                if (exchange.Accounted) return;
                replica.CountOutcome(status);
                if (status is StatusCodes.Status502BadGateway or StatusCodes.Status503ServiceUnavailable) ReportFailure(replica, refused: false);
                else if (status != StatusCodes.Status429TooManyRequests) _health.ReportSuccess(replica);
                return;
            }
            else if (error == ForwarderError.RequestBodyDestination && !context.Response.HasStarted
                && (exchange.Answered is >= 400 and < 500 || !replayable))
            {
                // The replica stopped taking the body and closed the connection: it refused the body
                // (a body larger than it takes), which is not the replica failing. When its answer
                // came first, that is what the client gets; over HTTP/1.1 the reset usually destroys
                // that answer before it can be read (a .NET HttpClient limit, dotnet/runtime#119350),
                // and a streamed body (over the replay buffer) cut this way is taken for a 413.
                var status = exchange.Answered is >= 400 and < 500 ? exchange.Answered : StatusCodes.Status413PayloadTooLarge;
                replica.CountOutcome(status);
                LogBodyRefused(_logger, cluster, replica.ReplicaId, status);
                ResetResponse(context, call);
                await WriteErrorAsync(context, status, status == StatusCodes.Status413PayloadTooLarge ? ErrorCodes.PayloadTooLarge : ErrorCodes.InvalidArgument,
                    status == StatusCodes.Status413PayloadTooLarge
                        ? "the replica refused the request body: it is larger than the replica accepts"
                        : $"the replica answered {status} before it had read the whole request body");
                return;
            }
            else
            {
                var exception = context.GetForwarderErrorFeature()?.Exception;
                // A response that had begun ends here, short of its end (the replica died, or the client left): the ledger row says cut.
                if (context.Response.HasStarted) call.Cut = true;
                if (IsDestinationFault(error))
                {
                    replica.CountError();
                    ReportFailure(replica, IsConnectionRefused(exception));
                }
                if (context.RequestAborted.IsCancellationRequested) return;
                if (context.Response.HasStarted || !exchange.MayRetry || !IsRetryable(error) || !CanRetryAfter(view, replica))
                {
                    LogForwardFailed(_logger, cluster, replica.ReplicaId, error, exception?.Message);
                    if (!context.Response.HasStarted) await WriteForwardErrorAsync(context, error, exception);
                    return;
                }
                LogRetryError(_logger, cluster, replica.ReplicaId, error);
                ResetResponse(context, call);
            }

            Interlocked.Increment(ref view.State._retries);
            last = replica;
            tried ??= new EdgeReplica?[_options.MaxAttempts];
            tried[attempts - 1] = replica;
        }
    }

    /// <summary>The gateway reads the body's figures; a body it rewrote (a stream asked for its usage) goes with its new length.</summary>
    private void InspectBody(HttpRequest request, GatewayCall call, ref BufferedBody? body)
    {
        var before = body;
        _gateway.InspectBody(call, ref body);
        if (!ReferenceEquals(before, body) && body is not null && request.ContentLength is not null) request.ContentLength = body.Length;
    }

    /// <summary>
    /// Queues the request in its cluster's hold queue until a replica can take it, up to the queue
    /// timeout from arrival; a request that waits again (its replica failed) keeps its place by arrival.
    /// </summary>
    private async Task<HoldOutcome> HoldAsync(HttpContext context, ClusterView view, long arrived, Exchange exchange)
    {
        var timeout = TimeSpan.FromMilliseconds(view.Route.QueueTimeoutMs);
        if (_time.GetElapsedTime(arrived) >= timeout) return HoldOutcome.TimedOut;
        var state = view.State;
        using var held = state.Queue.TryEnqueue(arrived, arrived + (long)(timeout.TotalSeconds * _time.TimestampFrequency), view.Route.MaxHeld, context.RequestAborted);
        if (held is null) return HoldOutcome.Full;
        if (!exchange.Held)
        {
            exchange.Held = true;
            Interlocked.Increment(ref state._held);
        }
        // A cluster at zero: the control plane hears of it now, not at the next report.
        if (view.Targets.Length == 0) _demand.Wake(state);
        _holding.AfterQueued(state);
        return await held.Task;
    }

    /// <summary>
    /// Reads a body of up to <see cref="EdgeOptions.ReplayBufferBytes"/> into a pooled buffer so it can be replayed.
    /// Larger bodies stream through once. Over <see cref="EdgeOptions.MaxRequestBodyBytes"/>: 413.
    /// </summary>
    private async ValueTask<(bool Accepted, BufferedBody? Body, bool Replayable)> ReadBodyAsync(HttpContext context)
    {
        var request = context.Request;
        var length = request.ContentLength;
        if (length > _options.MaxRequestBodyBytes)
        {
            await WriteTooLargeAsync(context);
            return (false, null, false);
        }
        if (length == 0 || context.Features.Get<IHttpRequestBodyDetectionFeature>() is { CanHaveBody: false }) return (true, null, true);
        if (length > EdgeOptions.ReplayBufferBytes) return (true, null, false);

        // Known length: read exactly that. Chunked: read until the end or one byte past the replay limit.
        var limit = length is { } known ? (int)known : EdgeOptions.ReplayBufferBytes + 1;
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(limit, length is null ? 16 * 1024 : limit));
        var read = 0;
        try
        {
            while (read < limit)
            {
                if (read == buffer.Length)
                {
                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(limit, buffer.Length * 2));
                    buffer.AsSpan(0, read).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = bigger;
                }
                var n = await request.Body.ReadAsync(buffer.AsMemory(read, Math.Min(buffer.Length, limit) - read), context.RequestAborted);
                if (n == 0) break;
                read += n;
            }
        }
        catch (Exception e)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            if (e is BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge })
            {
                await WriteTooLargeAsync(context);
                return (false, null, false);
            }
            if (e is BadHttpRequestException bad)
            {
                await WriteErrorAsync(context, bad.StatusCode, ErrorCodes.InvalidArgument, "the request body could not be read: " + bad.Message);
                return (false, null, false);
            }
            throw;
        }

        if (read > EdgeOptions.ReplayBufferBytes)
        {
            var rest = new PrefixedStream(buffer, read, request.Body);
            context.Response.RegisterForDispose(rest);
            request.Body = rest;
            return (true, null, false);
        }
        return (true, new BufferedBody(buffer, read), true);
    }

    private static readonly Action<object?> s_cutDeparted = static state => ((AttemptGuard)state!).CutUnanswered(AttemptGuard.Departed);
    private static readonly TimerCallback s_cutFirstByte = static state => ((AttemptGuard)state!).CutUnanswered(AttemptGuard.FirstByteTimeout);

    /// <summary>
    /// The first-byte cap of an attempt that may be retried: the cluster's, else the edge's; none
    /// when no other replica could take over (cutting would only turn a slow answer into none) or
    /// when the retry would start past the retry budget.
    /// </summary>
    private TimeSpan FirstByteCap(ClusterView view, EdgeReplica replica, TimeSpan elapsed)
    {
        var cap = view.Route.FirstByteTimeoutMs is { } ms ? TimeSpan.FromMilliseconds(ms) : _options.FirstByteTimeout ?? TimeSpan.Zero;
        if (cap <= TimeSpan.Zero || elapsed + cap > _options.RetryBudget) return TimeSpan.Zero;
        return Selector.HasOther(view, replica) ? cap : TimeSpan.Zero;
    }

    private void ReportFailure(EdgeReplica replica, bool refused)
    {
        if (_health.ReportFailure(replica, refused))
        {
            LogEjected(_logger, replica.Cluster, replica.ReplicaId, _health.EjectedFor(replica).TotalSeconds);
        }
    }

    /// <summary>A retry makes sense when another replica can take it now, or this one was ejected (then the request may wait for one).</summary>
    private bool CanRetryAfter(ClusterView view, EdgeReplica failed) => _health.IsEjected(failed) || Selector.HasOther(view, failed);

    /// <summary>Called by the transformer when a replica answers 502/503/429: true to drop that answer and try another replica.</summary>
    private bool TakeRefusal(Exchange exchange, int status)
    {
        var replica = exchange.Target.State;
        exchange.Accounted = true;
        replica.CountOutcome(status);
        // 429 means "full", not "broken": another replica may have room, but it is no reason to eject.
        if (status != StatusCodes.Status429TooManyRequests) ReportFailure(replica, refused: false);
        return CanRetryAfter(exchange.View, replica);
    }

    private static bool IsDestinationFault(ForwarderError error) => error is ForwarderError.Request or ForwarderError.RequestTimedOut
        or ForwarderError.RequestBodyDestination or ForwarderError.ResponseBodyDestination;

    private static bool IsRetryable(ForwarderError error) => error is ForwarderError.Request or ForwarderError.RequestTimedOut or ForwarderError.RequestBodyDestination;

    private static bool IsConnectionRefused(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError }) return true;
            if (e is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.ConnectionRefused }) return true;
        }
        return false;
    }

    private static void ResetResponse(HttpContext context, GatewayCall call)
    {
        context.Features.Set<IForwarderErrorFeature>(null);
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.Headers.Clear();
        context.Response.Headers[GatewayHeaders.RequestId] = call.RequestId;
    }

    private static Task WriteForwardErrorAsync(HttpContext context, ForwarderError error, Exception? exception)
    {
        if (exception is BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge }) return WriteTooLargeAsync(context);
        return error switch
        {
            ForwarderError.RequestTimedOut => WriteErrorAsync(context, StatusCodes.Status504GatewayTimeout, ErrorCodes.Unavailable, "the replica did not answer in time"),
            ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.RequestBodyClient =>
                WriteErrorAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.InvalidArgument, "the request body could not be read from the client"),
            _ => WriteErrorAsync(context, StatusCodes.Status502BadGateway, ErrorCodes.Unavailable, "no replica could be reached to answer the request"),
        };
    }

    private static Task WriteTooLargeAsync(HttpContext context) =>
        WriteErrorAsync(context, StatusCodes.Status413PayloadTooLarge, ErrorCodes.PayloadTooLarge, "the request body is larger than the edge accepts");

    internal static Task WriteErrorAsync(HttpContext context, int status, string code, string message)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, new ErrorResponse(new ErrorBody(code, message, status)),
            ShoalJsonContext.Default.ErrorResponse, context.RequestAborted);
    }

    /// <summary>
    /// One attempt's cut while no response has come: by its first-byte cap or by its replica leaving
    /// routing, whichever is first, and neither once the response headers arrived.
    /// </summary>
    private sealed class AttemptGuard(CancellationTokenSource cut)
    {
        public const int FirstByteTimeout = 1;
        public const int Departed = 2;
        private const int Answered = 3;
        private int _state;

        /// <summary>Why the attempt was cut before its answer (<see cref="FirstByteTimeout"/> or <see cref="Departed"/>); null when it was not.</summary>
        public int? CutBeforeAnswer => Volatile.Read(ref _state) is FirstByteTimeout or Departed ? _state : null;

        /// <summary>The response headers came: false when the attempt was cut first (then its answer is dropped).</summary>
        public bool Answer() => Interlocked.CompareExchange(ref _state, Answered, 0) is 0 or Answered;

        public void CutUnanswered(int why)
        {
            if (Interlocked.CompareExchange(ref _state, why, 0) != 0) return;
            try
            {
                cut.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The attempt ended meanwhile.
            }
        }
    }

    /// <summary>
    /// One request's attempts: YARP's default forwarding, plus the name of the replica that served
    /// (set after the upstream headers so the edge's value wins), the time of the first response
    /// byte, and holding back a 502/503/429 while another replica may still answer.
    /// </summary>
    private sealed class Exchange : HttpTransformer
    {
        private readonly EdgeProxy _proxy;

        public Exchange(EdgeProxy proxy, ClusterView view, GatewayCall call)
        {
            _proxy = proxy;
            View = view;
            Call = call;
        }

        /// <summary>The request's passage through the gateway.</summary>
        public GatewayCall Call { get; }

        public ClusterView View { get; set; }

        public RouteTarget Target { get; private set; }

        public bool MayRetry { get; private set; }

        public bool Held { get; set; }

        /// <summary>The attempt's outcome was already counted and reported to passive health (by <see cref="TakeRefusal"/>).</summary>
        public bool Accounted { get; set; }

        /// <summary>Status the replica answered in this attempt; 0 while none came.</summary>
        public int Answered { get; private set; }

        /// <summary>Status of an answer held back for a retry; 0 when the last attempt was not.</summary>
        public int Refused { get; private set; }

        public long FirstByte { get; private set; }

        /// <summary>The current attempt's cut before an answer.</summary>
        public AttemptGuard? Guard { get; set; }

        public void Begin(RouteTarget target, bool mayRetry)
        {
            Target = target;
            MayRetry = mayRetry;
            if (Call.Attempts++ == 0) Call.Sent = _proxy._time.GetTimestamp();
            Call.ReplicaId = target.Destination.ReplicaId;
            Call.NodeId = target.Destination.NodeId;
            Refused = 0;
            Answered = 0;
            Accounted = false;
        }

        public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
        {
            if (proxyResponse is null) return false;
            // Cut by the first-byte cap or the replica leaving routing just before: this answer is dropped for a retry.
            if (Guard is { } guard && !guard.Answer()) return false;
            var status = (int)proxyResponse.StatusCode;
            Answered = status;
            if (MayRetry && status is StatusCodes.Status502BadGateway or StatusCodes.Status503ServiceUnavailable or StatusCodes.Status429TooManyRequests
                && _proxy.TakeRefusal(this, status))
            {
                Refused = status;
                return false;
            }
            var copy = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
            httpContext.Response.Headers[ReplicaHeader] = Target.Destination.ReplicaId;
            if (proxyResponse.Content.Headers.ContentLength is not { } length || length > GuardedResponseBytes)
            {
                // A stream, or a body larger than Kestrel buffers: a client that stops reading would
                // hold the replica, so writes to it are timed. A small body is read from the replica
                // whole whether or not the client reads, and skips the wrapper.
                var proxy = _proxy;
                httpContext.Response.Body = new ClientStallGuard(httpContext.Response.Body, httpContext, proxy._options.ClientStallTimeout, proxy._time);
            }
            FirstByte = _proxy._time.GetTimestamp();
            Call.FirstByte = FirstByte;
            _proxy._gateway.OnResponse(httpContext, Call, proxyResponse);
            return copy;
        }

        public override async ValueTask TransformResponseTrailersAsync(HttpContext httpContext, HttpResponseMessage proxyResponse, CancellationToken cancellationToken)
        {
            // The answer's body was passed on whole: what the usage tap held back goes out before it ends.
            await _proxy._gateway.OnResponseEndAsync(Call, cancellationToken);
            await base.TransformResponseTrailersAsync(httpContext, proxyResponse, cancellationToken);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Forwarding to cluster {Cluster} replica {Replica} failed: {Error} {Detail}")]
    private static partial void LogForwardFailed(ILogger logger, string cluster, string replica, ForwarderError error, string? detail);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Cluster} replica {Replica} refused the request body ({Status}) and closed the connection")]
    private static partial void LogBodyRefused(ILogger logger, string cluster, string replica, int status);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Cluster} replica {Replica} answered {Status}; retrying on another replica")]
    private static partial void LogRetryStatus(ILogger logger, string cluster, string replica, int status);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Cluster} replica {Replica} failed before answering ({Error}); retrying on another replica")]
    private static partial void LogRetryError(ILogger logger, string cluster, string replica, ForwarderError error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Cluster} replica {Replica}: attempt cut, {Reason} (cap {CapMs} ms); retrying on another replica")]
    private static partial void LogRetryUnanswered(ILogger logger, string cluster, string replica, string reason, double capMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Cluster} replica {Replica}: its node was lost before it answered; retrying on another replica")]
    private static partial void LogRetryLost(ILogger logger, string cluster, string replica);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster {Cluster} replica {Replica}: its node was lost mid-response; the client's stream is cut")]
    private static partial void LogCutStream(ILogger logger, string cluster, string replica);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster {Cluster} replica {Replica} ejected for {Seconds} s after consecutive failures")]
    private static partial void LogEjected(ILogger logger, string cluster, string replica, double seconds);
}
