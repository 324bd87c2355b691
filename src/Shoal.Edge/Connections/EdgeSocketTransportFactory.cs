using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace Shoal.Edge.Connections;

/// <summary>
/// The edge's Kestrel transport for TCP endpoints: Kestrel's own socket connections
/// (<see cref="SocketConnectionContextFactory"/>) behind an accept loop that keeps the process's
/// last file descriptors free (<see cref="EdgeSocketListener"/>). Kestrel's socket transport
/// retries a failed accept at once, so when the process is out of descriptors it spins on
/// <c>EMFILE</c>; the thread pool then starts threads the runtime cannot give a descriptor, and the
/// whole process ends ("Out of memory.").
/// </summary>
public sealed class EdgeSocketTransportFactory : IConnectionListenerFactory, IConnectionListenerFactorySelector, IDisposable
{
    private readonly SocketConnectionContextFactory _connections;
    private readonly EdgeConnectionLimiter? _limiter;
    private readonly TimeProvider _time;
    private readonly ILogger<EdgeSocketListener> _logger;

    public EdgeSocketTransportFactory(IServiceProvider services, ILoggerFactory loggers)
    {
        _limiter = services.GetService<EdgeConnectionLimiter>();
        _time = services.GetService<TimeProvider>() ?? TimeProvider.System;
        _logger = loggers.CreateLogger<EdgeSocketListener>();
        _connections = new SocketConnectionContextFactory(new SocketConnectionFactoryOptions(), loggers.CreateLogger<SocketConnectionContextFactory>());
    }

    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (endpoint is not IPEndPoint ip) throw new NotSupportedException($"the edge listens on IP endpoints only, not {endpoint}");
        return ValueTask.FromResult<IConnectionListener>(EdgeSocketListener.Bind(ip, _connections, _limiter, _time, _logger));
    }

    public void Dispose() => _connections.Dispose();
}
