using System.Net;
using Shoal.Contracts;

namespace Shoal.Edge.Upstreams;

/// <summary>Reaches every destination at its address with one pooled socket client (direct mode).</summary>
public sealed class DirectUpstreamConnector : IUpstreamConnector, IDisposable
{
    private readonly HttpMessageInvoker _client = new(CreateHandler());

    public bool IsReachable(RouteDestination destination) => true;

    public (HttpMessageInvoker Client, string Address) Resolve(RouteDestination destination) => (_client, destination.Address);

    /// <summary>The handler settings the edge uses towards replicas: no proxy, redirects, cookies or decompression.</summary>
    public static SocketsHttpHandler CreateHandler() => new()
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        EnableMultipleHttp2Connections = true,
        ActivityHeadersPropagator = null,
        ConnectTimeout = TimeSpan.FromSeconds(5),
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
    };

    public void Dispose() => _client.Dispose();
}
