using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace Shoal.Edge.Connections;

/// <summary>
/// A listening socket whose accept loop never takes the process's last file descriptors: a
/// connection accepted into one of the last <see cref="EdgeConnectionLimits.Headroom"/> is closed
/// at once (descriptors are handed out lowest first, so its number tells how many are in use,
/// whoever holds them); and when accepting fails for want of descriptors it waits
/// <see cref="OutOfDescriptorsPause"/> instead of trying again at once. Both are logged (at most
/// once per <see cref="EdgeConnectionLimiter.LogInterval"/>) and counted in the edge's metrics. A
/// connection beyond <see cref="EdgeConnectionLimiter.MaxConnections"/> is closed here too, before
/// Kestrel spends anything on it.
/// </summary>
public sealed partial class EdgeSocketListener : IConnectionListener
{
    /// <summary>How long accepting pauses after the process ran out of file descriptors.</summary>
    public static readonly TimeSpan OutOfDescriptorsPause = TimeSpan.FromMilliseconds(100);

    private readonly Socket _socket;
    private readonly SocketConnectionContextFactory _connections;
    private readonly EdgeConnectionLimiter? _limiter;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly long? _fileLimit;

    private EdgeSocketListener(Socket socket, SocketConnectionContextFactory connections, EdgeConnectionLimiter? limiter, TimeProvider time, ILogger logger)
    {
        _socket = socket;
        _connections = connections;
        _limiter = limiter;
        _time = time;
        _logger = logger;
        _fileLimit = limiter?.FileLimit ?? EdgeConnectionLimits.ProcessFileLimit();
        EndPoint = socket.LocalEndPoint!;
    }

    public EndPoint EndPoint { get; }

    internal static EdgeSocketListener Bind(IPEndPoint endpoint, SocketConnectionContextFactory connections, EdgeConnectionLimiter? limiter, TimeProvider time, ILogger logger)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // As Kestrel's own transport: the IPv6 wildcard takes IPv4 too.
            if (endpoint.Address.Equals(IPAddress.IPv6Any)) socket.DualMode = true;
            try
            {
                socket.Bind(endpoint);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                throw new AddressInUseException(e.Message, e);
            }
            socket.Listen(512);
            return new EdgeSocketListener(socket, connections, limiter, time, logger);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await _socket.AcceptAsync(cancellationToken);
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
            {
                return null;
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
            {
                // EMFILE/ENFILE (or no memory for a socket): the connection stays in the backlog,
                // and trying again at once would only spin.
                _limiter?.RefuseForDescriptors(null);
                if (_limiter is null) LogOutOfDescriptors(_logger, e.Message);
                try
                {
                    await Task.Delay(OutOfDescriptorsPause, _time, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    return null;
                }
                continue;
            }
            catch (SocketException)
            {
                // Reset while it waited in the backlog: take the next one.
                continue;
            }

            var descriptor = (long)accepted.SafeHandle.DangerousGetHandle();
            if (_fileLimit is { } limit && descriptor >= limit - EdgeConnectionLimits.Headroom)
            {
                accepted.Dispose();
                _limiter?.RefuseForDescriptors(descriptor);
                continue;
            }
            if (_limiter?.RefuseIfFull() == true)
            {
                accepted.Dispose();
                continue;
            }
            accepted.NoDelay = true;
            return _connections.Create(accepted);
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _socket.Dispose();
        return default;
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return default;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Accepting a connection failed: {Error}; accepting pauses briefly")]
    private static partial void LogOutOfDescriptors(ILogger logger, string error);
}
