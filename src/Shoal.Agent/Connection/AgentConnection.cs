using System.Buffers;
using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using Shoal.Agent.Identity;
using Shoal.Agent.Replicas;
using Shoal.Contracts;

namespace Shoal.Agent.Connection;

/// <summary>Settings of one agent's control-plane connection.</summary>
public sealed class AgentConnectionOptions
{
    public required Uri ConnectUri { get; init; }
    public required string Server { get; init; }
    public required string NodeName { get; init; }
    public string? ProvisioningToken { get; init; }
    public TimeSpan ReconnectMin { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan ReconnectMax { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Called with the node's identity and the edges to keep tunnels to, on welcome and whenever the set changes.</summary>
    public Action<NodeIdentity, string[]>? EdgesChanged { get; init; }
}

/// <summary>
/// The agent's end of <c>/v1/agent/connect</c>: connects (registering once with a token, then
/// with the saved identity), says hello, takes assignment sets in, acks and heartbeats, and
/// reconnects forever with back-off and jitter.
/// </summary>
public sealed partial class AgentConnection
{
    private const int MinHeartbeatMs = 100;
    private static readonly TimeSpan s_closeTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan s_sendTimeout = TimeSpan.FromSeconds(30);
    private readonly AgentConnectionOptions _options;
    private readonly NodeIdentityStore _identityStore;
    private readonly ReplicaManager _replicas;
    private readonly Func<HelloMessage> _hello;
    private readonly TimeProvider _time;
    private readonly ILogger<AgentConnection> _logger;
    private readonly ExponentialBackoff _backoff;
    private NodeIdentity? _identity;

    public AgentConnection(
        AgentConnectionOptions options,
        NodeIdentityStore identityStore,
        NodeIdentity? identity,
        ReplicaManager replicas,
        Func<HelloMessage> hello,
        TimeProvider timeProvider,
        ILogger<AgentConnection> logger)
    {
        _options = options;
        _identityStore = identityStore;
        _identity = identity;
        _replicas = replicas;
        _hello = hello;
        _time = timeProvider;
        _logger = logger;
        _backoff = new ExponentialBackoff(options.ReconnectMin, options.ReconnectMax, jitter: 0.5);
        if (identity is null && string.IsNullOrEmpty(options.ProvisioningToken))
        {
            throw new AgentConfigurationException("this node has no saved identity and no provisioning token");
        }
    }

    /// <summary>The node id, once known.</summary>
    public string? NodeId => _identity?.NodeId;

    /// <summary>Connections that got as far as welcome.</summary>
    public int SessionCount { get; private set; }

    /// <summary>Runs until cancelled. Throws <see cref="AgentConfigurationException"/> when the provisioning token is refused.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            var registering = _identity is null;
            TimeSpan delay;
            using (var ws = new ClientWebSocket())
            {
                ws.Options.CollectHttpResponseDetails = true;
                ws.Options.KeepAliveInterval = TimeSpan.FromSeconds(15);
                if (_identity is { } id)
                {
                    ws.Options.SetRequestHeader(AgentProtocol.NodeIdHeader, id.NodeId);
                    ws.Options.SetRequestHeader(AgentProtocol.NodeSecretHeader, id.NodeSecret);
                }
                else
                {
                    ws.Options.SetRequestHeader(AgentProtocol.ProvisioningTokenHeader, _options.ProvisioningToken);
                }
                ws.Options.SetRequestHeader(AgentProtocol.NodeNameHeader, _options.NodeName);

                try
                {
                    using var timeout = new CancellationTokenSource(_options.ConnectTimeout, _time);
                    using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
                    await ws.ConnectAsync(_options.ConnectUri, linked.Token);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is WebSocketException or HttpRequestException or OperationCanceledException)
                {
                    if (ws.HttpStatusCode == HttpStatusCode.Unauthorized)
                    {
                        if (registering)
                        {
                            throw new AgentConfigurationException(
                                $"the control plane at {_options.Server} refused the provisioning token (HTTP 401): it is wrong, expired, revoked or used up; create a new one with 'shoal tokens create'");
                        }
                        delay = _backoff.AtMax();
                        LogCredentialsRefused(_identity!.NodeId, _options.Server, _identityStore.FilePath, delay);
                    }
                    else
                    {
                        delay = _backoff.Next();
                        LogConnectFailed(_options.ConnectUri, ex.Message, delay);
                    }
                    if (!await _time.TryDelayAsync(delay, ct))
                    {
                        return;
                    }
                    continue;
                }

                LogConnected(_options.ConnectUri, registering ? "provisioning token" : $"node {_identity!.NodeId}");
                try
                {
                    await RunSessionAsync(ws, ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    await CloseQuietlyAsync(ws, WebSocketCloseStatus.NormalClosure, AgentProtocol.AgentStoppingCloseDescription);
                    return;
                }
                catch (AgentProtocolException ex)
                {
                    LogProtocolViolation(ex.Message);
                    await CloseQuietlyAsync(ws, WebSocketCloseStatus.PolicyViolation, ex.Message);
                }
                catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException)
                {
                    LogConnectionLost(ex.Message);
                }
                delay = _backoff.Next();
                LogReconnecting(delay);
            }
            if (!await _time.TryDelayAsync(delay, ct))
            {
                return;
            }
        }
    }

    private async Task RunSessionAsync(ClientWebSocket ws, CancellationToken ct)
    {
        using var sendLock = new SemaphoreSlim(1, 1);
        var stopRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var onStop = ct.Register(() => stopRequested.TrySetResult());
        await SendAsync(ws, sendLock, _hello(), ct);

        AgentMessage? first;
        if (_identity is null)
        {
            // Registering: the token is spent once the server has it, and the welcome carries the
            // node's only way back (its secret), so it is taken even when a stop comes meanwhile.
            var receive = ReceiveAsync(ws, CancellationToken.None);
            try
            {
                first = await receive.WaitAsync(_options.ConnectTimeout, _time, CancellationToken.None);
            }
            catch (TimeoutException)
            {
                ws.Abort();
                await ((Task)receive).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                throw new WebSocketException($"no welcome within {_options.ConnectTimeout.TotalSeconds:0} s");
            }
        }
        else
        {
            first = await ReceiveUnlessStoppingAsync(ws, sendLock, stopRequested.Task, ct);
        }
        if (first is null) throw new WebSocketException("the server closed the connection before welcome");
        if (first is not WelcomeMessage welcome)
        {
            throw new AgentProtocolException($"expected welcome, got {Describe(first)}");
        }
        if (_identity is null)
        {
            if (string.IsNullOrEmpty(welcome.NodeSecret) || string.IsNullOrEmpty(welcome.NodeId))
            {
                throw new AgentProtocolException("welcome after registration carries no node id and secret");
            }
            // Saved before anything else: the token is spent, this secret is the node's only way back.
            var identity = new NodeIdentity { NodeId = welcome.NodeId, NodeSecret = welcome.NodeSecret, Server = _options.Server };
            _identityStore.Save(identity);
            _identity = identity;
            LogRegistered(welcome.NodeId, _identityStore.FilePath);
        }
        else if (!string.Equals(welcome.NodeId, _identity.NodeId, StringComparison.Ordinal))
        {
            LogNodeIdMismatch(_identity.NodeId, welcome.NodeId);
        }
        if (ct.IsCancellationRequested)
        {
            // Stopped while registering: the identity is saved; now the goodbye.
            await SayGoodbyeAsync(ws, sendLock, ReceiveAsync(ws, CancellationToken.None));
            ct.ThrowIfCancellationRequested();
        }
        SessionCount++;
        _backoff.Reset();
        _options.EdgesChanged?.Invoke(_identity, welcome.Edges);

        using var sessionCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var interval = TimeSpan.FromMilliseconds(Math.Max(MinHeartbeatMs, welcome.HeartbeatIntervalMs));
        var heartbeats = HeartbeatLoopAsync(ws, sendLock, interval, sessionCts.Token);
        using var logs = new LogStreamer(_replicas, (message, token) => SendAsync(ws, sendLock, message, token), sessionCts.Token);
        try
        {
            while (true)
            {
                var message = await ReceiveUnlessStoppingAsync(ws, sendLock, stopRequested.Task, ct, async () =>
                {
                    // No heartbeat goes out after the close.
                    await sessionCts.CancelAsync();
                    await heartbeats.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                });
                switch (message)
                {
                    case null:
                        LogServerClosed(ws.CloseStatus, ws.CloseStatusDescription);
                        await CloseQuietlyAsync(ws, WebSocketCloseStatus.NormalClosure, "");
                        return;
                    case AssignmentsMessage assignments:
                        _replicas.Apply(assignments.Revision, assignments.Replicas);
                        await SendAsync(ws, sendLock, new AckMessage { Revision = assignments.Revision }, ct);
                        break;
                    case EdgesMessage edges:
                        _options.EdgesChanged?.Invoke(_identity, edges.Edges);
                        break;
                    case LogsRequestMessage or LogsCancelMessage:
                        logs.Handle(message);
                        break;
                    default:
                        throw new AgentProtocolException($"unexpected {Describe(message)} from the server");
                }
            }
        }
        finally
        {
            await sessionCts.CancelAsync();
            await heartbeats.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task HeartbeatLoopAsync(ClientWebSocket ws, SemaphoreSlim sendLock, TimeSpan interval, CancellationToken ct)
    {
        Task<bool>? changed = null;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                changed ??= _replicas.Changes.WaitToReadAsync(ct).AsTask();
                var tick = Task.Delay(interval, _time, ct);
                await Task.WhenAny(changed, tick);
                ct.ThrowIfCancellationRequested();
                if (changed.IsCompleted)
                {
                    changed = null;
                    _replicas.Changes.TryRead(out _);
                }
                else
                {
                    // Every interval, not only when an assignment set arrives: an orphan must not hold its GPU until the next change.
                    _ = _replicas.SweepOrphansAsync();
                }
                await SendAsync(ws, sendLock, new HeartbeatMessage
                {
                    AppliedRevision = _replicas.AppliedRevision,
                    Replicas = _replicas.Snapshot(),
                    Images = _replicas.TakeChangedImages(),
                }, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            // The receive loop sees the broken socket too; make sure it does not wait forever.
            LogHeartbeatFailed(ex.Message);
            ws.Abort();
        }
    }

    private async Task SendAsync(ClientWebSocket ws, SemaphoreSlim sendLock, AgentMessage message, CancellationToken ct)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(message, ShoalJsonContext.Default.AgentMessage);
        await sendLock.WaitAsync(ct);
        try
        {
            // Not ct: cancelling a send aborts the socket, and a stopping agent closes it properly
            // instead. A message that cannot go out within the timeout means the link is dead anyway.
            using var timeout = new CancellationTokenSource(s_sendTimeout, _time);
            await ws.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, timeout.Token);
        }
        finally
        {
            sendLock.Release();
        }
    }

    /// <summary>Reads one message; null when the server closed the connection.</summary>
    /// <exception cref="AgentProtocolException">Too large, binary, or not an agent message.</exception>
    internal static async Task<AgentMessage?> ReceiveAsync(WebSocket ws, CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        var length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, AgentProtocol.MaxMessageBytes + 1));
                    buffer.AsSpan(0, length).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = bigger;
                }
                var room = Math.Min(buffer.Length - length, AgentProtocol.MaxMessageBytes + 1 - length);
                var result = await ws.ReceiveAsync(buffer.AsMemory(length, room), ct);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return null;
                }
                if (result.MessageType != WebSocketMessageType.Text)
                {
                    throw new AgentProtocolException("binary frames are not part of the agent protocol");
                }
                length += result.Count;
                if (length > AgentProtocol.MaxMessageBytes)
                {
                    throw new AgentProtocolException($"message larger than {AgentProtocol.MaxMessageBytes} bytes");
                }
                if (result.EndOfMessage)
                {
                    break;
                }
            }
            try
            {
                return JsonSerializer.Deserialize(buffer.AsSpan(0, length), ShoalJsonContext.Default.AgentMessage)
                    ?? throw new AgentProtocolException("empty message");
            }
            catch (JsonException ex)
            {
                throw new AgentProtocolException($"malformed message: {ex.Message}");
            }
            catch (NotSupportedException ex)
            {
                throw new AgentProtocolException($"malformed message: {ex.Message}");
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Receives the next message; when <paramref name="stopRequested"/> completes first, says goodbye
    /// (after <paramref name="beforeGoodbye"/>) and throws <see cref="OperationCanceledException"/>.
    /// The receive itself is not cancelled by <paramref name="ct"/>: that would abort the socket, and an
    /// agent that stops on purpose closes it properly instead, so the server does not take it for a drop.
    /// </summary>
    private async Task<AgentMessage?> ReceiveUnlessStoppingAsync(ClientWebSocket ws, SemaphoreSlim sendLock, Task stopRequested, CancellationToken ct, Func<Task>? beforeGoodbye = null)
    {
        var receive = ReceiveAsync(ws, CancellationToken.None);
        if (await Task.WhenAny(receive, stopRequested) != receive)
        {
            if (beforeGoodbye is not null) await beforeGoodbye();
            await SayGoodbyeAsync(ws, sendLock, receive);
            ct.ThrowIfCancellationRequested();
        }
        return await receive;
    }

    /// <summary>
    /// The agent is stopping: completes the close handshake with <see cref="AgentProtocol.AgentStoppingCloseDescription"/>
    /// (the server answers with its own close; what it sent before that is dropped), or aborts after two seconds.
    /// </summary>
    private async Task SayGoodbyeAsync(ClientWebSocket ws, SemaphoreSlim sendLock, Task<AgentMessage?> pending)
    {
        using var timeout = new CancellationTokenSource(s_closeTimeout, _time);
        try
        {
            if (ws.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await sendLock.WaitAsync(timeout.Token);
                try
                {
                    await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, AgentProtocol.AgentStoppingCloseDescription, timeout.Token);
                }
                finally
                {
                    sendLock.Release();
                }
                while (await pending.WaitAsync(timeout.Token) is not null)
                {
                    pending = ReceiveAsync(ws, CancellationToken.None);
                }
                LogSaidGoodbye();
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException or AgentProtocolException or InvalidOperationException)
        {
            LogGoodbyeFailed(ex.Message);
        }
        finally
        {
            ws.Abort();
            await ((Task)pending).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task CloseQuietlyAsync(ClientWebSocket ws, WebSocketCloseStatus status, string reason)
    {
        if (ws.State is not (WebSocketState.Open or WebSocketState.CloseReceived))
        {
            ws.Abort();
            return;
        }
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), _time);
            var text = reason.Length > 120 ? reason[..120] : reason;
            await ws.CloseOutputAsync(status, text, timeout.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
        }
        ws.Abort();
    }

    private static string Describe(AgentMessage message) => message switch
    {
        HelloMessage => "hello",
        HeartbeatMessage => "heartbeat",
        AckMessage => "ack",
        WelcomeMessage => "welcome",
        AssignmentsMessage => "assignments",
        EdgesMessage => "edges",
        _ => message.GetType().Name,
    };
}

/// <summary>The server broke the agent protocol; the connection is closed with 1008.</summary>
public sealed class AgentProtocolException : Exception
{
    public AgentProtocolException(string message) : base(message)
    {
    }

    public AgentProtocolException()
    {
    }

    public AgentProtocolException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
