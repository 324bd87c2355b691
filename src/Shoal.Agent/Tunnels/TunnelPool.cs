using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Shoal.Agent.Identity;
using Shoal.Contracts;

namespace Shoal.Agent.Tunnels;

/// <summary>
/// The tunnels to one edge. Each of <see cref="TunnelOptions.IdlePerEdge"/> slots keeps one idle
/// tunnel open; when the edge claims it (<c>open {port}</c>), the agent connects to that replica
/// port on its loopback, answers <c>ok</c>, pipes bytes both ways, and the slot opens a fresh idle
/// tunnel at once.
/// </summary>
internal sealed partial class TunnelPool : IAsyncDisposable
{
    private readonly string _url;
    private readonly Uri _uri;
    private readonly NodeIdentity _identity;
    private readonly TunnelOptions _options;
    private readonly Func<int, bool> _isReplicaPort;
    private readonly TimeProvider _time;
    private readonly ILogger<TunnelPool> _logger;
    private readonly CancellationTokenSource _cts = new();
    private readonly ConcurrentDictionary<WebSocket, Task> _live = new();
    private readonly List<Task> _slots = [];
    private int _open;

    public TunnelPool(string url, NodeIdentity identity, TunnelOptions options, Func<int, bool> isReplicaPort, TimeProvider time, ILogger<TunnelPool> logger)
    {
        _url = url;
        _uri = TunnelUri(url) ?? throw new ArgumentException($"not an http(s) URL: {url}", nameof(url));
        _identity = identity;
        _options = options;
        _isReplicaPort = isReplicaPort;
        _time = time;
        _logger = logger;
    }

    public int Open => Volatile.Read(ref _open);

    /// <summary><c>http://edge:8080</c> → <c>ws://edge:8080/_shoal/tunnel</c>; null when not an http(s) URL.</summary>
    public static Uri? TunnelUri(string edge) => WebSocketAddress.Create(edge, EdgeProtocol.TunnelPath);

    public void Start()
    {
        for (var i = 0; i < Math.Max(1, _options.IdlePerEdge); i++)
        {
            _slots.Add(Task.Run(() => SlotLoopAsync(_cts.Token)));
        }
    }

    private async Task SlotLoopAsync(CancellationToken ct)
    {
        var delay = _options.RetryMin;
        var failures = 0;
        while (!ct.IsCancellationRequested)
        {
            var ws = new ClientWebSocket();
            ws.Options.CollectHttpResponseDetails = true;
            ws.Options.KeepAliveInterval = TimeSpan.FromSeconds(5);
            ws.Options.KeepAliveTimeout = TimeSpan.FromSeconds(10);
            ws.Options.SetRequestHeader(AgentProtocol.NodeIdHeader, _identity.NodeId);
            ws.Options.SetRequestHeader(AgentProtocol.NodeSecretHeader, _identity.NodeSecret);
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(_options.ConnectTimeout);
                await ws.ConnectAsync(_uri, timeout.Token);
            }
            catch (Exception e) when (e is WebSocketException or HttpRequestException or OperationCanceledException)
            {
                var refused = ws.HttpStatusCode == HttpStatusCode.Unauthorized;
                ws.Dispose();
                if (ct.IsCancellationRequested) return;
                if (failures++ == 0 || refused) LogConnectFailed(_logger, _url, refused ? "credentials refused" : e.Message);
                if (refused) delay = _options.RetryMax;
                if (!await _time.TryDelayAsync(delay * (0.5 + Random.Shared.NextDouble() * 0.5), ct)) return;
                delay = TimeSpan.FromTicks(Math.Min(_options.RetryMax.Ticks, delay.Ticks * 2));
                continue;
            }
            if (failures > 0) LogReconnected(_logger, _url, failures);
            failures = 0;
            delay = _options.RetryMin;
            Interlocked.Increment(ref _open);
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _live[ws] = done.Task;

            int port;
            try
            {
                port = await WaitForOpenAsync(ws, ct);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException)
            {
                port = -1;
            }
            if (port < 0)
            {
                Finish(ws, done);
                continue;
            }
            // Claimed: carry this connection in the background and open the next idle tunnel now.
            _ = CarryAsync(ws, port, ct).ContinueWith(static (_, s) =>
            {
                var (pool, socket, tcs) = ((TunnelPool, ClientWebSocket, TaskCompletionSource))s!;
                pool.Finish(socket, tcs);
            }, (this, ws, done), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private void Finish(ClientWebSocket ws, TaskCompletionSource done)
    {
        Interlocked.Decrement(ref _open);
        _live.TryRemove(ws, out _);
        ws.Dispose();
        done.TrySetResult();
    }

    /// <summary>Waits on an idle tunnel for <c>open {port}</c>; -1 when the edge closed it instead.</summary>
    private async Task<int> WaitForOpenAsync(ClientWebSocket ws, CancellationToken ct)
    {
        var buffer = new byte[64];
        var result = await ws.ReceiveAsync(buffer.AsMemory(), ct);
        if (result.MessageType == WebSocketMessageType.Close) return -1;
        var text = Encoding.ASCII.GetString(buffer, 0, result.Count);
        var prefix = EdgeProtocol.OpenVerb + " ";
        if (result.MessageType != WebSocketMessageType.Text || !result.EndOfMessage || !text.StartsWith(prefix, StringComparison.Ordinal)
            || !int.TryParse(text.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            LogBadOpen(_logger, _url);
            await CloseQuietlyAsync(ws, WebSocketCloseStatus.PolicyViolation, "expected 'open {port}'");
            return -1;
        }
        return port;
    }

    private async Task CarryAsync(ClientWebSocket ws, int port, CancellationToken ct)
    {
        if (!_isReplicaPort(port))
        {
            await RefuseAsync(ws, $"port {port} is not a replica on this node", ct);
            return;
        }
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(_options.ReplicaConnectTimeout);
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), timeout.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            await RefuseAsync(ws, $"cannot connect to the replica on port {port}: {e.Message}", ct);
            return;
        }

        try
        {
            await ws.SendAsync(Encoding.ASCII.GetBytes(EdgeProtocol.OpenOk), WebSocketMessageType.Text, endOfMessage: true, ct);
            await using var tunnel = WebSocketStream.Create(ws, WebSocketMessageType.Binary, ownsWebSocket: false);
            await using var replica = new NetworkStream(socket, ownsSocket: false);
            var up = PumpAsync(tunnel, replica, () =>
            {
                socket.Shutdown(SocketShutdown.Send);
                return Task.CompletedTask;
            }, ct);
            var down = PumpAsync(replica, tunnel, () => ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct), ct);
            var first = await Task.WhenAny(up, down);
            if (first.IsFaulted)
            {
                // One side broke (replica died, edge vanished): end the other at once.
                ws.Abort();
                socket.Close();
            }
            var other = first == up ? down : up;
            if (await Task.WhenAny(other, Task.Delay(TimeSpan.FromSeconds(30), _time, ct)) != other)
            {
                ws.Abort();
                socket.Close();
            }
            await Task.WhenAll(up, down).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or SocketException or ObjectDisposedException)
        {
            ws.Abort();
        }
    }

    /// <summary>Copies until the source ends, then half-closes the destination.</summary>
    private static async Task PumpAsync(Stream from, Stream to, Func<Task> endOfStream, CancellationToken ct)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            while (true)
            {
                var n = await from.ReadAsync(buffer.AsMemory(), ct);
                if (n == 0) break;
                await to.WriteAsync(buffer.AsMemory(0, n), ct);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
        await endOfStream();
    }

    private async Task RefuseAsync(ClientWebSocket ws, string reason, CancellationToken ct)
    {
        LogRefusedOpen(_logger, _url, reason);
        try
        {
            await ws.SendAsync(Encoding.UTF8.GetBytes("error: " + reason), WebSocketMessageType.Text, endOfMessage: true, ct);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
            // The edge went away first.
        }
        await CloseQuietlyAsync(ws, WebSocketCloseStatus.NormalClosure, null);
    }

    private static async Task CloseQuietlyAsync(ClientWebSocket ws, WebSocketCloseStatus status, string? reason)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await ws.CloseOutputAsync(status, reason, timeout.Token);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            ws.Abort();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync();
        foreach (var ws in _live.Keys) ws.Abort();
        await Task.WhenAll([.. _slots, .. _live.Values]).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _cts.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot open a tunnel to edge {Url}: {Error}; retrying with back-off")]
    private static partial void LogConnectFailed(ILogger logger, string url, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Tunnels to edge {Url} are back after {Failures} failed attempt(s)")]
    private static partial void LogReconnected(ILogger logger, string url, int failures);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Edge {Url} sent something other than 'open {{port}}' on a tunnel; closed it")]
    private static partial void LogBadOpen(ILogger logger, string url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Edge {Url} asked for a connection the agent refused: {Reason}")]
    private static partial void LogRefusedOpen(ILogger logger, string url, string reason);
}
