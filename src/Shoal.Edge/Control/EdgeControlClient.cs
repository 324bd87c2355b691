using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using System.Threading.Channels;
using Shoal.Contracts;
using Shoal.Core.Autoscaling;
using Shoal.Core.Routing;
using Shoal.Core.Tunnels;

namespace Shoal.Edge.Control;

/// <summary>Where a standalone edge takes its route table from.</summary>
public sealed class EdgeControlOptions
{
    /// <summary>The control plane's API address, such as <c>http://127.0.0.1:7400</c>.</summary>
    public required string Server { get; init; }
    /// <summary>The edge key (<c>edge.key</c> in the server's data dir, or its <c>--edge-key</c>).</summary>
    public required string Key { get; init; }
    /// <summary>The URL agents should open tunnels to; null: none (the edge then reaches only direct-mode nodes).</summary>
    public string? AdvertiseUrl { get; init; }
    public TimeSpan ReconnectMin { get; init; } = TimeSpan.FromMilliseconds(250);
    public TimeSpan ReconnectMax { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>
    /// Ask for route deltas after the first whole table (default). False: whole tables on every
    /// change, as edges did before deltas (benchmarks compare the two).
    /// </summary>
    public bool RouteDeltas { get; init; } = true;
}

/// <summary>A standalone edge was misconfigured (bad server address, refused key).</summary>
public sealed class EdgeConfigurationException(string message) : Exception(message);

/// <summary>
/// A standalone edge's link to the control plane: a WebSocket on <c>/v1/edge/connect</c> carrying
/// node credentials and route tables, swapped in atomically. The edge asks for deltas
/// (<see cref="EdgeProtocol.FeaturesHeader"/>): the first table of a connection comes whole, later
/// ones as a <see cref="RouteDelta"/> applied to the table the edge holds; a delta for another
/// version, or one that does not fit, makes the edge ask for the whole table again (a server that
/// does not know deltas simply keeps sending whole tables). When the link breaks the edge keeps
/// serving from the last table and reconnects with back-off; the server sends the current state on
/// every connect, so nothing needs replaying. The edge's <see cref="DemandReport"/>s go up the same
/// stream: only the latest is kept while one is being sent or the link is down, and one writer per
/// connection sends them and the resync requests.
/// </summary>
public sealed partial class EdgeControlClient : IEdgeDemandSink
{
    private readonly EdgeControlOptions _options;
    private readonly Uri _connectUri;
    private readonly RouteTableHolder _routes;
    private readonly NodeCredentialHolder _credentials;
    private readonly Core.Access.EndpointKeyHolder _endpointKeys;
    private readonly Core.Gateway.ProjectGrantHolder? _projectGrants;
    private readonly TimeProvider _time;
    private readonly ILogger<EdgeControlClient> _logger;
    private readonly TaskCompletionSource _firstTable = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _connected;
    // What the writer sends next; each replaces what was pending of its kind.
    private readonly Lock _pendingLock = new();
    private DemandReport? _pendingReport;
    private ResyncRequest? _pendingResync;
    private readonly Channel<bool> _doorbell = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private long _demandReportsSent;
    // The usage ledger's spool, shipped up this stream one batch at a time (null: the edge keeps no ledger).
    private readonly Gateway.UsageSpool? _usage;

    public EdgeControlClient(EdgeControlOptions options, RouteTableHolder routes, NodeCredentialHolder credentials, Core.Access.EndpointKeyHolder endpointKeys, TimeProvider time, ILogger<EdgeControlClient> logger,
        Gateway.UsageSpool? usage = null,
        Core.Gateway.ProjectGrantHolder? projectGrants = null)
    {
        _usage = usage;
        _projectGrants = projectGrants;
        if (usage is not null) usage.Available += () => _doorbell.Writer.TryWrite(true);
        _options = options;
        _connectUri = ConnectUri(options.Server);
        _routes = routes;
        _credentials = credentials;
        _endpointKeys = endpointKeys;
        _time = time;
        _logger = logger;
    }

    /// <summary>True while the stream from the control plane is up.</summary>
    public bool Connected => Volatile.Read(ref _connected) == 1;

    /// <summary>Whole route tables taken in since start.</summary>
    public int TablesReceived { get; private set; }

    /// <summary>Route deltas applied since start.</summary>
    public int DeltasReceived { get; private set; }

    /// <summary>Times the edge asked for the whole table because a delta did not fit its table.</summary>
    public int ResyncsRequested { get; private set; }

    /// <summary>Bytes of control messages received since start (route tables, deltas, credentials, keys).</summary>
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    private long _bytesReceived;

    /// <summary>Demand reports sent to the control plane since start.</summary>
    public long DemandReportsSent => Interlocked.Read(ref _demandReportsSent);

    /// <summary>
    /// Keeps <paramref name="report"/> to send as soon as the writer can (at once while connected);
    /// it replaces a report not sent yet, keeping that one's first-served replicas and wake-up.
    /// </summary>
    public void Report(DemandReport report)
    {
        lock (_pendingLock)
        {
            _pendingReport = _pendingReport is { } older ? Merge(older, report) : report;
        }
        _doorbell.Writer.TryWrite(true);
    }

    /// <summary>The newer report, keeping what the older, unsent one carried that the newer does not repeat: first-served replicas and a wake-up.</summary>
    internal static DemandReport Merge(DemandReport older, DemandReport newer)
    {
        if (older.FirstServed is null && !older.Wake) return newer;
        Dictionary<string, DateTimeOffset>? served = null;
        if (older.FirstServed is not null || newer.FirstServed is not null)
        {
            served = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
            foreach (var (k, v) in older.FirstServed ?? []) served[k] = v;
            foreach (var (k, v) in newer.FirstServed ?? []) served.TryAdd(k, v);
        }
        return newer with { FirstServed = served, Wake = newer.Wake || older.Wake };
    }

    /// <summary>Completes when the first route table has arrived.</summary>
    public Task FirstTable => _firstTable.Task;

    /// <summary>
    /// Runs until cancelled. Throws <see cref="EdgeConfigurationException"/> when the server refuses
    /// the key on the first attempt (a later refusal, say after a key rotation, is retried).
    /// </summary>
    public async Task RunAsync(CancellationToken ct)
    {
        var delay = _options.ReconnectMin;
        var everConnected = false;
        while (!ct.IsCancellationRequested)
        {
            using (var ws = new ClientWebSocket())
            {
                ws.Options.CollectHttpResponseDetails = true;
                ws.Options.KeepAliveInterval = TimeSpan.FromSeconds(5);
                ws.Options.KeepAliveTimeout = TimeSpan.FromSeconds(15);
                ws.Options.SetRequestHeader("Authorization", "Bearer " + _options.Key);
                if (_options.AdvertiseUrl is { Length: > 0 } url) ws.Options.SetRequestHeader(EdgeProtocol.AdvertiseHeader, url);
                if (_options.RouteDeltas) ws.Options.SetRequestHeader(EdgeProtocol.FeaturesHeader, EdgeProtocol.RouteDeltasFeature);
                try
                {
                    using var timeout = new CancellationTokenSource(_options.ConnectTimeout, _time);
                    using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
                    await ws.ConnectAsync(_connectUri, linked.Token);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e) when (e is WebSocketException or HttpRequestException or OperationCanceledException)
                {
                    if (ws.HttpStatusCode == HttpStatusCode.Unauthorized && !everConnected)
                    {
                        throw new EdgeConfigurationException($"the control plane at {_options.Server} refused the edge key (HTTP 401); use the key in the server's data dir ({"edge.key"}) or its --edge-key");
                    }
                    LogConnectFailed(_logger, _connectUri, e.Message, delay);
                    if (!await DelayAsync(delay, ct)) return;
                    delay = Next(delay);
                    continue;
                }

                everConnected = true;
                delay = _options.ReconnectMin;
                Volatile.Write(ref _connected, 1);
                LogConnected(_logger, _connectUri);
                using var connection = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var writer = WriteLoopAsync(ws, connection.Token);
                try
                {
                    var receiving = ReceiveLoopAsync(ws, ct);
                    // A writer that fails (the link broke mid-send) ends the connection as a failed receive does.
                    await (await Task.WhenAny(receiving, writer));
                    if (receiving.IsCompleted) LogConnectionLost(_logger, "closed by the server");
                    else await receiving;
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or JsonException or InvalidDataException)
                {
                    LogConnectionLost(_logger, e.Message);
                }
                finally
                {
                    Volatile.Write(ref _connected, 0);
                    await connection.CancelAsync();
                    try
                    {
                        await writer;
                    }
                    catch (Exception e) when (e is OperationCanceledException or WebSocketException or IOException or ObjectDisposedException)
                    {
                        // The connection is over; what the writer had pending is sent on the next one.
                    }
                }
            }
            if (!await DelayAsync(delay, ct)) return;
            delay = Next(delay);
        }
    }

    private async Task ReceiveLoopAsync(ClientWebSocket ws, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        // Deltas apply only to a table this connection sent whole; after asking for a resync, deltas
        // are dropped until the whole table comes.
        var haveTable = false;
        var awaitingResync = false;
        while (true)
        {
            message.SetLength(0);
            ValueWebSocketReceiveResult result;
            do
            {
                result = await ws.ReceiveAsync(buffer.AsMemory(), ct);
                if (result.MessageType == WebSocketMessageType.Close) return;
                if (message.Length + result.Count > EdgeProtocol.MaxMessageBytes)
                {
                    throw new InvalidDataException($"a control message is larger than {EdgeProtocol.MaxMessageBytes} bytes");
                }
                message.Write(buffer, 0, result.Count);
            }
            while (!result.EndOfMessage);
            Interlocked.Add(ref _bytesReceived, message.Length);

            var parsed = JsonSerializer.Deserialize(message.GetBuffer().AsSpan(0, (int)message.Length), ShoalJsonContext.Default.EdgeMessage);
            switch (parsed)
            {
                case RoutesMessage routes:
                    TablesReceived++;
                    _routes.Update(routes.Table);
                    haveTable = true;
                    awaitingResync = false;
                    _firstTable.TrySetResult();
                    break;
                case RouteDeltaMessage { Delta: var delta }:
                    if (awaitingResync) break;
                    var current = _routes.Current;
                    var refused = "a delta came before the whole table";
                    RouteTable? next = null;
                    if (haveTable)
                    {
                        try
                        {
                            next = RouteDeltas.Apply(current, delta);
                        }
                        catch (Exception e) when (e is RouteDeltaException or NullReferenceException or ArgumentException)
                        {
                            // Whatever does not fit (a gap, a table that diverged, a malformed delta) is cured by the whole table.
                            refused = e.Message;
                        }
                    }
                    if (next is not null)
                    {
                        // Counted first: whoever sees the new table sees the count that includes it.
                        DeltasReceived++;
                        _routes.Update(next);
                    }
                    else
                    {
                        LogResync(_logger, current.Version, refused);
                        awaitingResync = true;
                        ResyncsRequested++;
                        lock (_pendingLock) _pendingResync = new ResyncRequest { Version = current.Version, Reason = refused.Length > 300 ? refused[..300] : refused };
                        _doorbell.Writer.TryWrite(true);
                    }
                    break;
                case NodeCredentialsMessage nodes:
                    _credentials.Update(nodes.Nodes);
                    break;
                case EndpointKeysMessage keys:
                    _endpointKeys.Update(keys.Keys);
                    break;
                case UsageAckMessage ack:
                    // Stored: the next batch may go.
                    if (_usage?.Acknowledge(ack.Sequence) == true) _doorbell.Writer.TryWrite(true);
                    break;
                case ProjectGrantsMessage projects:
                    _projectGrants?.Update(projects.Projects);
                    break;
            }
        }
    }

    /// <summary>The connection's only sender: resync requests first, then the latest demand report.</summary>
    private async Task WriteLoopAsync(ClientWebSocket ws, CancellationToken ct)
    {
        // Whatever was pending before this connection (a report kept while the link was down) goes first.
        _doorbell.Writer.TryWrite(true);
        // A resync asked on an earlier connection is moot: this one starts with the whole table.
        lock (_pendingLock) _pendingResync = null;
        // A usage batch sent on an earlier connection and not acknowledged goes again.
        _usage?.ResendInFlight();
        while (await WaitForWorkAsync(ct))
        {
            _doorbell.Reader.TryRead(out _);
            ResyncRequest? resync;
            DemandReport? report;
            lock (_pendingLock)
            {
                resync = _pendingResync;
                report = _pendingReport;
                _pendingResync = null;
                _pendingReport = null;
            }
            try
            {
                if (resync is not null) await SendAsync(ws, resync, ct);
                if (report is not null)
                {
                    await SendAsync(ws, report, ct);
                    Interlocked.Increment(ref _demandReportsSent);
                }
                if (_usage?.TakeBatch() is { } batch)
                {
                    try
                    {
                        // The spooled lines go as they are (no record read and written again).
                        await ws.SendAsync(batch.Message, WebSocketMessageType.Text, endOfMessage: true, ct);
                    }
                    catch
                    {
                        _usage.ResendInFlight();
                        throw;
                    }
                }
            }
            catch
            {
                // Not sent: kept for the next connection, under anything newer.
                if (report is not null)
                {
                    lock (_pendingLock) _pendingReport = _pendingReport is { } newer ? Merge(report, newer) : report;
                }
                throw;
            }
        }
    }

    /// <summary>Waits for the doorbell, or until a usage batch in flight is due for resending; false when the doorbell closed.</summary>
    private async ValueTask<bool> WaitForWorkAsync(CancellationToken ct)
    {
        if (_usage?.ResendDueIn is not { } due) return await _doorbell.Reader.WaitToReadAsync(ct);
        if (due <= TimeSpan.Zero) return true;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(due);
        try
        {
            return await _doorbell.Reader.WaitToReadAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return true;
        }
    }

    private static async Task SendAsync(ClientWebSocket ws, EdgeRequest request, CancellationToken ct)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(request, ShoalJsonContext.Default.EdgeRequest);
        await ws.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, ct);
    }

    private TimeSpan Next(TimeSpan delay) => TimeSpan.FromTicks(Math.Min(_options.ReconnectMax.Ticks, delay.Ticks * 2));

    private async Task<bool> DelayAsync(TimeSpan delay, CancellationToken ct)
    {
        // Up to half of each delay is random, so edges that lost the same server spread out.
        var jittered = delay * (0.5 + Random.Shared.NextDouble() * 0.5);
        try
        {
            await Task.Delay(jittered, _time, ct);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary><c>http://h:p</c> → <c>ws://h:p/v1/edge/connect</c>; https → wss.</summary>
    public static Uri ConnectUri(string server) =>
        WebSocketAddress.Create(server, EdgeProtocol.ConnectPath)
            ?? throw new EdgeConfigurationException($"invalid server address '{server}': expected an http or https URL such as http://127.0.0.1:7400");

    [LoggerMessage(Level = LogLevel.Information, Message = "Connected to the control plane at {Uri}")]
    private static partial void LogConnected(ILogger logger, Uri uri);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot reach the control plane at {Uri} ({Error}); serving the last route table, retrying in about {Delay}")]
    private static partial void LogConnectFailed(ILogger logger, Uri uri, string error, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Information, Message = "A route delta does not fit the table held (version {Version}: {Reason}); asking for the whole table")]
    private static partial void LogResync(ILogger logger, long version, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lost the control plane ({Reason}); serving the last route table while reconnecting")]
    private static partial void LogConnectionLost(ILogger logger, string reason);
}
