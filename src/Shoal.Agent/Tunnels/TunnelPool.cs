using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Shoal.Agent.Identity;
using Shoal.Contracts;
using Shoal.Core.Security;

namespace Shoal.Agent.Tunnels;

/// <summary>
/// The tunnels to one edge. Each of <see cref="TunnelOptions.IdlePerEdge"/> slots keeps one idle
/// tunnel open: a TCP connection (TLS for an https edge) to the edge's own address that starts with
/// the tunnel greeting and the node's credentials. When the edge claims it (<c>open {port}</c>), the
/// agent checks the port is one of its replicas, answers <c>ok</c> and serves HTTP/2 on the tunnel
/// (<see cref="TunnelHttpServer"/>: every request forwarded to that replica port on its loopback),
/// and the slot opens a fresh idle tunnel at once.
/// </summary>
internal sealed partial class TunnelPool : IAsyncDisposable
{
    private readonly string _url;
    private readonly string _host;
    private readonly int _port;
    private readonly bool _tls;
    private readonly NodeIdentity _identity;
    private readonly TunnelOptions _options;
    private readonly Func<int, CancellationToken, ValueTask<bool>> _isReplicaPort;
    private readonly TunnelHttpServer _server;
    private readonly TimeProvider _time;
    private readonly ILogger<TunnelPool> _logger;
    private readonly CancellationTokenSource _cts = new();
    private readonly ConcurrentDictionary<Socket, Task> _live = new();
    private readonly List<Task> _slots = [];
    private int _open;

    public TunnelPool(string url, NodeIdentity identity, TunnelOptions options, Func<int, CancellationToken, ValueTask<bool>> isReplicaPort, TunnelHttpServer server, TimeProvider time, ILogger<TunnelPool> logger)
    {
        _url = url;
        if (!TunnelWire.TryParseEdge(url, out _host, out _port, out _tls)) throw new ArgumentException($"not an http(s) URL: {url}", nameof(url));
        _identity = identity;
        _options = options;
        _isReplicaPort = isReplicaPort;
        _server = server;
        _time = time;
        _logger = logger;
    }

    public int Open => Volatile.Read(ref _open);

    /// <summary>True when tunnels to the edge at <paramref name="url"/> are plain TCP over a network (not the node's own loopback).</summary>
    internal static bool PlainOverNetwork(string url) => TunnelWire.TryParseEdge(url, out var host, out _, out var tls) && !tls && !IsLoopback(host);

    /// <summary>True when the agent must not open tunnels to <paramref name="url"/>: plain TCP over a network, not allowed by <paramref name="options"/>.</summary>
    internal static bool RefusesPlain(string url, TunnelOptions options) => PlainOverNetwork(url) && !options.AllowPlainOverNetwork;

    public void Start()
    {
        // The credential is this edge's alone, but over plain TCP anyone on the path can read it
        // and the requests: refuse, unless the node's operator allowed it (then say so, once per edge).
        if (RefusesPlain(_url, _options))
        {
            LogPlainTunnelsRefused(_logger, _url);
            return;
        }
        if (PlainOverNetwork(_url)) LogPlainTunnels(_logger, _url);
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
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            Stream? stream = null;
            LineReader? lines = null;
            string? problem;
            var refused = false;
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(_options.ConnectTimeout);
                (stream, lines, problem) = await ConnectAsync(socket, timeout.Token);
                refused = problem is not null;
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
            {
                problem = e.Message;
            }
            if (problem is not null || stream is null || lines is null)
            {
                if (stream is not null) await DisposeQuietlyAsync(stream);
                socket.Dispose();
                if (ct.IsCancellationRequested) return;
                if (failures++ == 0 || refused) LogConnectFailed(_logger, _url, refused ? "refused: " + problem : problem ?? "no answer");
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
            _live[socket] = done.Task;

            int port;
            try
            {
                port = await WaitForOpenAsync(lines, ct);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or SocketException or ObjectDisposedException)
            {
                port = -1;
            }
            if (port < 0)
            {
                await FinishAsync(socket, stream, done);
                continue;
            }
            // Claimed: carry this connection in the background and open the next idle tunnel now.
            _ = CarryAsync(stream, socket, lines, port, ct).ContinueWith(static (_, s) =>
            {
                var (pool, socket, stream, tcs) = ((TunnelPool, Socket, Stream, TaskCompletionSource))s!;
                _ = pool.FinishAsync(socket, stream, tcs);
            }, (this, socket, stream, done), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>Connects, greets and reads the edge's answer: the tunnel's stream, or the edge's refusal.</summary>
    private async Task<(Stream? Stream, LineReader? Lines, string? Refusal)> ConnectAsync(Socket socket, CancellationToken ct)
    {
        await socket.ConnectAsync(new DnsEndPoint(_host, _port), ct);
        TunnelWire.KeepAlive(socket);
        Stream stream = new NetworkStream(socket, ownsSocket: false);
        if (_tls)
        {
            var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
            stream = ssl;
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = _host,
                ApplicationProtocols = [SslApplicationProtocol.Http11],
                RemoteCertificateValidationCallback = _options.EdgeCertificateValidation,
            }, ct);
        }
        // A credential for this edge alone, derived from the secret: the secret itself goes only to the control plane.
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"{EdgeProtocol.TunnelGreeting} {_identity.NodeId} {TunnelCredential.FromSecret(_identity.NodeSecret, _url)}\n"), ct);
        var lines = new LineReader(stream);
        var answer = await lines.ReadLineAsync(ct);
        if (answer == EdgeProtocol.OpenOk) return (stream, lines, null);
        return (stream, null, answer is null ? "the edge closed the connection" : answer.StartsWith("error: ", StringComparison.Ordinal) ? answer["error: ".Length..] : "not a Shoal edge");
    }

    private async Task FinishAsync(Socket socket, Stream stream, TaskCompletionSource done)
    {
        Interlocked.Decrement(ref _open);
        _live.TryRemove(socket, out _);
        await DisposeQuietlyAsync(stream);
        socket.Dispose();
        done.TrySetResult();
    }

    private static async Task DisposeQuietlyAsync(Stream stream)
    {
        try
        {
            await stream.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // Already broken.
        }
    }

    /// <summary>Waits on an idle tunnel for <c>open {port}</c>; -1 when the edge closed it instead.</summary>
    private async Task<int> WaitForOpenAsync(LineReader lines, CancellationToken ct)
    {
        var text = await lines.ReadLineAsync(ct);
        if (text is null) return -1;
        var prefix = EdgeProtocol.OpenVerb + " ";
        if (!text.StartsWith(prefix, StringComparison.Ordinal)
            || !int.TryParse(text.AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            LogBadOpen(_logger, _url);
            return -1;
        }
        return port;
    }

    /// <summary>Answers <c>ok</c> and serves HTTP/2 for replica <paramref name="port"/> on the tunnel until the edge lets go.</summary>
    private async Task CarryAsync(Stream tunnel, Socket socket, LineReader lines, int port, CancellationToken ct)
    {
        if (!await _isReplicaPort(port, ct))
        {
            await RefuseAsync(tunnel, $"port {port} is not a replica on this node", ct);
            return;
        }
        if (lines.HasBuffered)
        {
            // The edge speaks HTTP/2 only after the agent's ok.
            LogBadOpen(_logger, _url);
            return;
        }
        try
        {
            await tunnel.WriteAsync(Encoding.ASCII.GetBytes(EdgeProtocol.OpenOk + "\n"), ct);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException or ObjectDisposedException)
        {
            return;
        }
        // A plain TCP tunnel is served on its socket directly (Kestrel's socket transport; nothing is
        // buffered above it, checked just above); a TLS one through its stream.
        if (_tls) await _server.ServeAsync(tunnel, port);
        else await _server.ServeAsync(socket, port);
    }

    private async Task RefuseAsync(Stream tunnel, string reason, CancellationToken ct)
    {
        LogRefusedOpen(_logger, _url, reason);
        try
        {
            await tunnel.WriteAsync(Encoding.UTF8.GetBytes("error: " + reason.ReplaceLineEndings(" ") + "\n"), ct);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // The edge went away first.
        }
    }

    /// <summary>
    /// Reads the tunnel's <c>\n</c>-terminated control lines, keeping whatever follows a line for
    /// the byte pipe.
    /// </summary>
    private sealed class LineReader(Stream stream)
    {
        private readonly byte[] _buffer = new byte[EdgeProtocol.MaxTunnelLineBytes];
        private int _start, _end;

        /// <summary>The next line without its newline; null when the stream ends first.</summary>
        /// <exception cref="IOException">The line is longer than the protocol allows.</exception>
        public async Task<string?> ReadLineAsync(CancellationToken ct)
        {
            while (true)
            {
                var newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
                if (newline >= 0)
                {
                    var line = Encoding.ASCII.GetString(_buffer, _start, newline - _start);
                    _start = newline + 1;
                    return line;
                }
                if (_start > 0)
                {
                    Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                    _end -= _start;
                    _start = 0;
                }
                if (_end == _buffer.Length) throw new IOException("a tunnel control line is too long");
                var n = await stream.ReadAsync(_buffer.AsMemory(_end), ct);
                if (n == 0) return null;
                _end += n;
            }
        }

        /// <summary>True when bytes followed the last line read.</summary>
        public bool HasBuffered => _end > _start;
    }

    /// <summary>Stops opening tunnels and closes the idle ones; claimed tunnels carry on until their HTTP/2 connection ends.</summary>
    public Task StopIdleAsync() => _cts.CancelAsync();

    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync();
        foreach (var socket in _live.Keys) socket.Close();
        await Task.WhenAll([.. _slots, .. _live.Values]).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _cts.Dispose();
    }

    private static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip));

    [LoggerMessage(Level = LogLevel.Warning, Message = "Tunnels to edge {Url} are plain TCP over the network: their credential and requests can be read on the way; serve the edge over https")]
    private static partial void LogPlainTunnels(ILogger logger, string url);

    [LoggerMessage(Level = LogLevel.Error, Message = "Not opening tunnels to edge {Url}: it is plain http over the network, where the tunnel credential and every request could be read on the way. Serve the edge over https, or start the agent with --allow-plain-tunnels on a network you trust")]
    private static partial void LogPlainTunnelsRefused(ILogger logger, string url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot open a tunnel to edge {Url}: {Error}; retrying with back-off")]
    private static partial void LogConnectFailed(ILogger logger, string url, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Tunnels to edge {Url} are back after {Failures} failed attempt(s)")]
    private static partial void LogReconnected(ILogger logger, string url, int failures);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Edge {Url} sent something other than 'open {{port}}' on a tunnel; closed it")]
    private static partial void LogBadOpen(ILogger logger, string url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Edge {Url} asked for a connection the agent refused: {Reason}")]
    private static partial void LogRefusedOpen(ILogger logger, string url, string reason);
}
