using Shoal.ControlPlane;
using Shoal.Edge;

namespace Shoal.Server;

/// <summary>The in-process edge's settings, drawn from the server's options.</summary>
public static class ServerEdgeOptions
{
    /// <summary>The in-process edge's settings drawn from <paramref name="options"/>.</summary>
    public static EdgeOptions ToEdgeOptions(this ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new()
        {
            Listen = options.EdgeListen,
            Domain = options.EdgeDomain,
            TlsCertificatePath = options.EdgeTlsCertificate,
            TlsKeyPath = options.EdgeTlsKey,
            TlsPfxPath = options.EdgeTlsPfx,
            TlsPassword = options.EdgeTlsPassword,
            MaxConnections = options.EdgeMaxConnections,
            // The API and the agents' connections share this process's file descriptors: the edge plans for half.
            FileLimitShare = 0.5,
            MaxConnectionsPerAddress = options.EdgeMaxConnectionsPerAddress,
            MaxTunnelsPerNode = options.EdgeMaxTunnelsPerNode,
            UndecidedConnectionTimeout = options.EdgeUndecidedTimeout,
            FirstByteTimeout = options.EdgeFirstByteTimeout,
            Redis = options.EdgeRedis,
        };
    }
}
