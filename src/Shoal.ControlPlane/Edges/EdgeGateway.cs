using System.Net.WebSockets;
using System.Text.Json;
using Shoal.Contracts;
using Shoal.Core.Routing;
using Shoal.Core.Security;
using Shoal.ControlPlane.State;

namespace Shoal.ControlPlane.Edges;

/// <summary>
/// The control plane's end of <c>/v1/edge/connect</c>: authenticates a standalone edge by the edge
/// key, registers the URL it advertises for tunnels, and streams it node credentials and the route
/// table, always the newest (a slow edge skips tables, never queues them). An edge that names
/// <see cref="EdgeProtocol.RouteDeltasFeature"/> gets the whole table once and then deltas
/// (<see cref="EdgeRouteFeed"/>), and the whole table again when it asks to resync.
/// </summary>
public sealed partial class EdgeGateway
{
    private readonly RouteTableHolder _routes;
    private readonly ControlPlaneState _state;
    private readonly EdgeDirectory _directory;
    private readonly EdgeKey _key;
    private readonly Identity.ApiKeyDirectory _keys;
    private readonly ILogger<EdgeGateway> _logger;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly Autoscaling.DemandBook _demand;
    private int _connected;
    private long _connections;
    private long _tablesSent;
    private long _deltasSent;
    private long _resyncs;

    private readonly TimeSpan _warmup;
    private readonly TimeProvider _time;

    private readonly UsageIntake _usage;

    public EdgeGateway(RouteTableHolder routes, ControlPlaneState state, EdgeDirectory directory, EdgeKey key, Identity.ApiKeyDirectory keys, IHostApplicationLifetime lifetime,
        ServerOptions options, TimeProvider time, Autoscaling.DemandBook demand, UsageIntake usage, ILogger<EdgeGateway> logger)
    {
        _usage = usage;
        _demand = demand;
        _warmup = options.HeartbeatInterval * options.MissedHeartbeats;
        _time = time;
        _lifetime = lifetime;
        _routes = routes;
        _state = state;
        _directory = directory;
        _key = key;
        _keys = keys;
        _logger = logger;
    }

    /// <summary>Standalone edges connected now.</summary>
    public int ConnectedCount => Volatile.Read(ref _connected);

    /// <summary>Whole route tables sent to standalone edges since start.</summary>
    public long RouteTablesSent => Interlocked.Read(ref _tablesSent);

    /// <summary>Route deltas sent to standalone edges since start.</summary>
    public long RouteDeltasSent => Interlocked.Read(ref _deltasSent);

    /// <summary>Times a standalone edge asked for the whole table again (it missed or could not apply a delta).</summary>
    public long ResyncsRequested => Interlocked.Read(ref _resyncs);

    public async Task HandleAsync(HttpContext context)
    {
        var auth = context.Request.Headers.Authorization.ToString();
        var presented = auth.StartsWith("Bearer ", StringComparison.Ordinal) ? auth["Bearer ".Length..].Trim() : null;
        if (!_key.Matches(presented))
        {
            await ApiResults.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "a valid edge key is required (Authorization: Bearer …)");
            return;
        }
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ApiResults.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.InvalidArgument, "this endpoint takes a WebSocket upgrade");
            return;
        }
        var advertised = context.Request.Headers[EdgeProtocol.AdvertiseHeader].ToString();
        if (advertised.Length > 0 && !IsHttpUrl(advertised))
        {
            await ApiResults.WriteAsync(context, StatusCodes.Status400BadRequest, ErrorCodes.InvalidArgument, $"{EdgeProtocol.AdvertiseHeader} must be an absolute http or https URL");
            return;
        }

        var deltas = context.Request.Headers[EdgeProtocol.FeaturesHeader].ToString()
            .Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Contains(EdgeProtocol.RouteDeltasFeature, StringComparer.Ordinal);

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        using var registration = advertised.Length > 0 ? _directory.Register(advertised.TrimEnd('/')) : null;
        Interlocked.Increment(ref _connected);
        LogEdgeConnected(_logger, advertised, context.Connection.RemoteIpAddress, deltas ? "deltas" : "whole tables");
        // Stop streaming as soon as the server begins to stop: its agents are about to disconnect, and a
        // table without their replicas must never reach an edge that will keep serving from it.
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _lifetime.ApplicationStopping);
        var changed = new SemaphoreSlim(0, 1);
        // The writer and the usage acknowledgements share the socket: one send at a time.
        using var sending = new SemaphoreSlim(1, 1);
        void Wake()
        {
            try
            {
                changed.Release();
            }
            catch (SemaphoreFullException)
            {
                // Already woken: the writer sends the newest state anyway.
            }
        }
        _state.NodeCredentialsChanged += Wake;
        _keys.EndpointKeysChanged += Wake;
        _keys.ProjectGrantsChanged += Wake;
        // Each connection reports demand under its own name: two edges advertising one URL (or none) do not overwrite each other.
        var demandName = "edge-" + Interlocked.Increment(ref _connections).ToString(System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            var feed = new EdgeRouteFeed(deltas, EdgeRouteFeed.DefaultLoadInterval);
            var reader = ReadAsync(socket, sending, advertised, demandName, feed, Wake, cts.Token);
            var writer = WriteAsync(socket, sending, advertised.TrimEnd('/'), feed, changed, cts.Token);
            await Task.WhenAny(reader, writer);
            await cts.CancelAsync();
            socket.Abort();
            await Task.WhenAll(Quietly(reader), Quietly(writer));
        }
        finally
        {
            _state.NodeCredentialsChanged -= Wake;
            _keys.EndpointKeysChanged -= Wake;
            _keys.ProjectGrantsChanged -= Wake;
            _demand.Remove(demandName);
            Interlocked.Decrement(ref _connected);
            changed.Dispose();
            LogEdgeDisconnected(_logger, advertised);
        }
    }

    /// <param name="socket">The edge's control stream.</param>
    /// <param name="edgeUrl">The URL the edge advertised (as agents are told it): its tunnel verifiers are derived for it.</param>
    /// <param name="feed">Decides whether the edge gets the table whole, a delta, or nothing yet.</param>
    /// <param name="changed">Released when node credentials or routes changed, or the edge asked for a resync.</param>
    /// <param name="ct">Ends the stream.</param>
    private async Task WriteAsync(WebSocket socket, SemaphoreSlim sending, string edgeUrl, EdgeRouteFeed feed, SemaphoreSlim changed, CancellationToken ct)
    {
        IReadOnlyDictionary<string, string>? sentCredentials = null;
        IReadOnlyDictionary<string, EndpointKeyGrant>? sentKeys = null;
        IReadOnlyDictionary<string, ProjectGrant>? sentProjects = null;
        while (!ct.IsCancellationRequested)
        {
            // Take the change token before reading the table so no update slips between them.
            var token = _routes.GetChangeToken();
            var credentials = _state.NodeCredentials;
            if (!ReferenceEquals(credentials, sentCredentials))
            {
                // Verifiers for this edge's own tunnel credentials: nothing of a node secret, nothing good at another edge.
                // An edge that advertises no URL has no tunnels (agents are never told of it).
                var verifiers = edgeUrl.Length == 0 ? new Dictionary<string, string>(StringComparer.Ordinal) : TunnelCredential.Verifiers(credentials, edgeUrl);
                await SendAsync(socket, sending, new NodeCredentialsMessage { Nodes = verifiers }, ct);
                sentCredentials = credentials;
            }
            var keys = _keys.EndpointKeys;
            if (!ReferenceEquals(keys, sentKeys))
            {
                await SendAsync(socket, sending, new EndpointKeysMessage { Keys = new Dictionary<string, EndpointKeyGrant>(keys, StringComparer.Ordinal) }, ct);
                sentKeys = keys;
            }
            var projects = _keys.Projects;
            if (!ReferenceEquals(projects, sentProjects))
            {
                await SendAsync(socket, sending, new ProjectGrantsMessage { Projects = new Dictionary<string, ProjectGrant>(projects, StringComparer.Ordinal) }, ct);
                sentProjects = projects;
            }
            // Just after a server start, agents are still reconnecting: hold tables back (the edge keeps
            // serving from the one it has) until they are back or the warm-up is over.
            if (_state.AwaitingReconnects && _time.GetUtcNow() < _state.LoadedAt + _warmup)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), _time, ct);
                continue;
            }
            var step = feed.Next(_routes.Current, _time.GetUtcNow());
            if (step.Message is { } message)
            {
                await SendAsync(socket, sending, message, ct);
                Interlocked.Increment(ref message is RouteDeltaMessage ? ref _deltasSent : ref _tablesSent);
            }
            // Load figures alone wait for the feed's interval; anything else wakes the writer at once.
            using var registration = token.RegisterChangeCallback(static s => Wake((SemaphoreSlim)s!), changed);
            using var timeout = new CancellationTokenSource(step.Wait ?? TimeSpan.FromSeconds(30), _time);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
            await changed.WaitAsync(wait.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        static void Wake(SemaphoreSlim s)
        {
            try
            {
                s.Release();
            }
            catch (Exception e) when (e is SemaphoreFullException or ObjectDisposedException)
            {
                // Already woken, or the connection is over.
            }
        }
    }

    private static async Task SendAsync(WebSocket socket, SemaphoreSlim sending, EdgeMessage message, CancellationToken ct)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(message, ShoalJsonContext.Default.EdgeMessage);
        await sending.WaitAsync(ct);
        try
        {
            await socket.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, ct);
        }
        finally
        {
            sending.Release();
        }
    }

    /// <summary>
    /// Reads the edge's requests (a resync, when it missed a delta; demand reports for the autoscaler) until it closes, so the close
    /// handshake completes. A request that cannot be read is logged and ignored; one larger than
    /// <see cref="EdgeProtocol.MaxRequestBytes"/> ends the connection.
    /// </summary>
    private async Task ReadAsync(WebSocket socket, SemaphoreSlim sending, string edgeUrl, string demandName, EdgeRouteFeed feed, Action wake, CancellationToken ct)
    {
        var buffer = new byte[EdgeProtocol.MaxRequestBytes];
        while (true)
        {
            var count = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                if (count == buffer.Length)
                {
                    LogRequestTooLarge(_logger, edgeUrl, EdgeProtocol.MaxRequestBytes);
                    await socket.CloseOutputAsync(WebSocketCloseStatus.MessageTooBig, $"requests are at most {EdgeProtocol.MaxRequestBytes} bytes", ct);
                    return;
                }
                result = await socket.ReceiveAsync(buffer.AsMemory(count), ct);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
                    return;
                }
                count += result.Count;
            }
            while (!result.EndOfMessage);

            EdgeRequest? request;
            try
            {
                request = JsonSerializer.Deserialize(buffer.AsSpan(0, count), ShoalJsonContext.Default.EdgeRequest);
            }
            catch (Exception e) when (e is JsonException or NotSupportedException)
            {
                LogBadRequest(_logger, edgeUrl, e.Message);
                continue;
            }
            if (request is ResyncRequest resync)
            {
                Interlocked.Increment(ref _resyncs);
                LogResync(_logger, edgeUrl, resync.Version, resync.Reason ?? "no reason given");
                feed.RequestResync();
                wake();
            }
            else if (request is DemandReport demand)
            {
                _demand.Report(demandName, demand);
            }
            else if (request is UsageBatch usage)
            {
                // Acknowledged only once stored; a store failure leaves it unacknowledged, and the edge sends it again.
                UsageIntakeResult intake;
                try
                {
                    intake = await _usage.StoreAsync(edgeUrl.Length > 0 ? edgeUrl : demandName, usage.Sequence, usage.Records, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogUsageStoreFailed(_logger, edgeUrl, usage.Records?.Length ?? 0, e.Message);
                    continue;
                }
                if (intake.Stored) await SendAsync(socket, sending, new UsageAckMessage { Sequence = usage.Sequence }, ct);
            }
        }
    }

    private static async Task Quietly(Task task)
    {
        try
        {
            await task;
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            // The edge went away or we are shutting down.
        }
    }

    private static bool IsHttpUrl(string value) =>
        Uri.TryCreate(value, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps) && value.Length <= 2048;

    [LoggerMessage(Level = LogLevel.Information, Message = "Edge connected (tunnel URL {Url}) from {Remote}; routes as {Routes}")]
    private static partial void LogEdgeConnected(ILogger logger, string url, System.Net.IPAddress? remote, string routes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Edge {Url} asked for the whole route table (it holds version {Version}: {Reason})")]
    private static partial void LogResync(ILogger logger, string url, long version, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Edge {Url} sent a request that cannot be read ({Error}); ignored")]
    private static partial void LogBadRequest(ILogger logger, string url, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Edge {Url} sent a request larger than {Max} bytes; closing its connection")]
    private static partial void LogRequestTooLarge(ILogger logger, string url, int max);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage records ({Count}) from edge {Url} could not be stored ({Error}); not acknowledged, the edge sends them again")]
    private static partial void LogUsageStoreFailed(ILogger logger, string url, int count, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Edge disconnected (tunnel URL {Url})")]
    private static partial void LogEdgeDisconnected(ILogger logger, string url);
}
