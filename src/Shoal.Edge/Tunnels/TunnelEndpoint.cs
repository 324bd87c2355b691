using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Shoal.Contracts;
using Shoal.Core.Tunnels;
using Shoal.Edge.Connections;

namespace Shoal.Edge.Tunnels;

/// <summary>
/// Tunnels arrive on the edge's own listener (after TLS, when the edge has a certificate): a
/// connection whose first bytes are <see cref="EdgeProtocol.TunnelGreeting"/> is an agent's tunnel,
/// anything else is passed on untouched to the HTTP server. The greeting carries the node's id and
/// secret; a valid one joins the node's tunnel pool and the connection stays with it for as long as
/// the tunnel lives. Taking tunnels below HTTP keeps them free of any framing: a claimed tunnel is
/// the connection's bytes and nothing else.
/// </summary>
public sealed partial class TunnelEndpoint
{
    // "SHOAL-TUNNEL/": any version of the greeting is a tunnel (and is refused unless it is this one).
    private static readonly byte[] Greeting = Encoding.ASCII.GetBytes(EdgeProtocol.TunnelGreeting[..(EdgeProtocol.TunnelGreeting.IndexOf('/') + 1)]);

    private readonly TunnelRegistry _registry;
    private readonly INodeCredentialSource _credentials;
    private readonly EdgeOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<TunnelEndpoint> _logger;
    private long _undecidedClosed;
    private int _undecided;
    private long _lastTunnelRefusalReport = long.MinValue;

    public TunnelEndpoint(TunnelRegistry registry, INodeCredentialSource credentials, EdgeOptions options, TimeProvider time, ILogger<TunnelEndpoint> logger)
    {
        _registry = registry;
        _credentials = credentials;
        _options = options;
        _time = time;
        _logger = logger;
    }

    /// <summary>Connections closed since start because they said nothing within <see cref="EdgeOptions.UndecidedConnectionTimeout"/>.</summary>
    public long UndecidedClosed => Interlocked.Read(ref _undecidedClosed);

    /// <summary>Connections open now that have not yet begun a tunnel greeting or an HTTP request.</summary>
    public int Undecided => Volatile.Read(ref _undecided);

    /// <summary>
    /// The connection middleware: tunnels are handled here, HTTP goes to <paramref name="next"/>, and
    /// a connection that has begun neither within <see cref="EdgeOptions.UndecidedConnectionTimeout"/>
    /// is closed: silent connections would otherwise hold a file descriptor each for as long as the
    /// HTTP server's own timeouts allow.
    /// </summary>
    public async Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        bool tunnel;
        using (var silence = new CancellationTokenSource(_options.UndecidedConnectionTimeout, _time))
        using (var either = CancellationTokenSource.CreateLinkedTokenSource(silence.Token, connection.ConnectionClosed))
        {
            Interlocked.Increment(ref _undecided);
            try
            {
                tunnel = await StartsWithGreetingAsync(connection.Transport.Input, either.Token);
            }
            catch (OperationCanceledException)
            {
                // Closed before saying anything, or silent too long: nothing to hand on.
                if (!connection.ConnectionClosed.IsCancellationRequested) Interlocked.Increment(ref _undecidedClosed);
                connection.Abort(new ConnectionAbortedException("nothing sent within the undecided connection timeout"));
                return;
            }
            finally
            {
                Interlocked.Decrement(ref _undecided);
            }
        }
        if (!tunnel)
        {
            await next(connection);
            return;
        }
        await HandleTunnelAsync(connection);
    }

    /// <summary>Looks at the first bytes without consuming them: true when they are the tunnel greeting.</summary>
    private static async Task<bool> StartsWithGreetingAsync(PipeReader input, CancellationToken ct)
    {
        while (true)
        {
            var result = await input.ReadAsync(ct);
            var buffer = result.Buffer;
            var (matches, complete) = MatchGreeting(buffer);
            if (!matches || complete || result.IsCompleted || result.IsCanceled)
            {
                // Nothing consumed or examined: whoever reads next sees the same bytes at once.
                input.AdvanceTo(buffer.Start);
                return matches && complete;
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Whether the bytes so far agree with the greeting, and whether all of it is there.</summary>
    private static (bool Matches, bool Complete) MatchGreeting(ReadOnlySequence<byte> buffer)
    {
        var n = (int)Math.Min(buffer.Length, Greeting.Length);
        Span<byte> head = stackalloc byte[Greeting.Length];
        buffer.Slice(0, n).CopyTo(head);
        return (head[..n].SequenceEqual(Greeting.AsSpan(0, n)), n == Greeting.Length);
    }

    private async Task HandleTunnelAsync(ConnectionContext connection)
    {
        string? line;
        using (var silence = new CancellationTokenSource(_options.UndecidedConnectionTimeout, _time))
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(silence.Token, connection.ConnectionClosed))
        {
            try
            {
                line = await ReadLineAsync(connection.Transport.Input, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                line = null;
            }
        }
        var parts = line?.Split(' ');
        var nodeId = parts is { Length: 3 } ? parts[1] : "";
        if (parts is not { Length: 3 } || parts[0] != EdgeProtocol.TunnelGreeting || !IsValid(nodeId, parts[2]))
        {
            LogRefused(_logger, nodeId, connection.RemoteEndPoint?.ToString());
            await TryWriteAsync(connection.Transport.Output, "error: tunnels need valid node credentials\n");
            return;
        }
        var tunnel = new EdgeTunnel(connection, nodeId);
        if (!_registry.TryReserve(nodeId, _options.MaxTunnelsPerNode))
        {
            ReportTunnelRefusal(nodeId);
            await TryWriteAsync(connection.Transport.Output, $"error: node {nodeId} holds {_options.MaxTunnelsPerNode} tunnels to this edge, the most allowed\n");
            return;
        }
        // A tunnel counts towards its node's limit, no longer towards its address's: many nodes may share one.
        connection.Features.Get<EdgeConnectionLimiter.ConnectionLease>()?.LeaveAddressCount();
        if (!await TryWriteAsync(connection.Transport.Output, EdgeProtocol.OpenOk + "\n"))
        {
            _registry.Unreserve(nodeId);
            return;
        }

        if (connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket) TunnelWire.KeepAlive(socket);
        // ConnectionClosed fires when the agent closes its side, also when that is only a half-close
        // behind a response (the replica closed after it) that the HTTP client is still reading: so
        // it only ends the tunnel for routing, and the connection stays until the client lets go.
        // An idle tunnel's pending read notices the close and aborts it at once.
        _registry.AddReserved(tunnel);
        using (connection.ConnectionClosed.Register(static t => ((EdgeTunnel)t!).MarkEnded(), tunnel))
        {
            await tunnel.Done;
        }
    }

    /// <summary>One <c>\n</c>-terminated ASCII line of at most <see cref="EdgeProtocol.MaxTunnelLineBytes"/>; null when the connection ends first or the line is too long.</summary>
    private static async Task<string?> ReadLineAsync(PipeReader input, CancellationToken ct)
    {
        while (true)
        {
            var result = await input.ReadAsync(ct);
            var buffer = result.Buffer;
            if (buffer.PositionOf((byte)'\n') is { } end)
            {
                var content = buffer.Slice(0, end);
                var line = content.Length < EdgeProtocol.MaxTunnelLineBytes ? Encoding.ASCII.GetString(content) : null;
                input.AdvanceTo(buffer.GetPosition(1, end));
                return line;
            }
            if (result.IsCompleted || result.IsCanceled || buffer.Length >= EdgeProtocol.MaxTunnelLineBytes)
            {
                input.AdvanceTo(buffer.End);
                return null;
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static async Task<bool> TryWriteAsync(PipeWriter output, string line)
    {
        try
        {
            var result = await output.WriteAsync(Encoding.ASCII.GetBytes(line));
            return !result.IsCompleted;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or InvalidOperationException)
        {
            return false;
        }
    }

    private bool IsValid(string nodeId, string secret)
    {
        if (nodeId.Length is 0 or > 64 || secret.Length is 0 or > 256) return false;
        if (!_credentials.NodeCredentials.TryGetValue(nodeId, out var hash)) return false;
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(secret), digest);
        Span<byte> expected = stackalloc byte[32];
        return Convert.FromHexString(hash, expected, out _, out var written) == OperationStatus.Done
            && written == 32
            && CryptographicOperations.FixedTimeEquals(digest, expected);
    }

    private void ReportTunnelRefusal(string nodeId)
    {
        // An agent retries refused tunnels, slowly; one line per 10 s is enough to tell the operator.
        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastTunnelRefusalReport);
        if (last != long.MinValue && _time.GetElapsedTime(last, now) < EdgeConnectionLimiter.LogInterval) return;
        if (Interlocked.CompareExchange(ref _lastTunnelRefusalReport, now, last) != last) return;
        LogTooManyTunnels(_logger, nodeId, _options.MaxTunnelsPerNode);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused a tunnel for node '{NodeId}': it holds {Max} tunnels to this edge, the most allowed")]
    private static partial void LogTooManyTunnels(ILogger logger, string nodeId, int max);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused a tunnel for node '{NodeId}' from {Remote}: bad credentials")]
    private static partial void LogRefused(ILogger logger, string nodeId, string? remote);
}
