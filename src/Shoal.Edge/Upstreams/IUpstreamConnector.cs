using Shoal.Contracts;

namespace Shoal.Edge.Upstreams;

/// <summary>
/// How the edge reaches a replica: the HTTP client to send with and the base address to send to.
/// Direct destinations use a plain socket client; tunnel destinations go over one of the node's tunnels.
/// </summary>
public interface IUpstreamConnector
{
    /// <summary>False when the destination cannot be reached now (for example, its node has no open tunnel); routing skips it.</summary>
    bool IsReachable(RouteDestination destination);

    /// <summary>The client and base address (scheme, host, port) to forward a request for <paramref name="destination"/> to.</summary>
    (HttpMessageInvoker Client, string Address) Resolve(RouteDestination destination);
}
