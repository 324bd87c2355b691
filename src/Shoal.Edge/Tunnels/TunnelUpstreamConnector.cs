using Shoal.Contracts;
using Shoal.Edge.Routing;
using Shoal.Edge.Upstreams;

namespace Shoal.Edge.Tunnels;

/// <summary>
/// Reaches direct destinations with the direct client and tunnel destinations over their node's
/// tunnels: the tunnel client's connections are tunnels, each carrying one HTTP/2 connection to
/// one replica (multiplexed, pooled and kept alive by the client).
/// </summary>
public sealed class TunnelUpstreamConnector : IUpstreamConnector, IDisposable
{
    private const string HostSuffix = ".tunnel";
    private readonly DirectUpstreamConnector _direct = new();
    private readonly TunnelRegistry _registry;
    private readonly HttpMessageInvoker _tunnelClient;
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<RouteDestination, string> _addresses = new();

    public TunnelUpstreamConnector(TunnelRegistry registry, RoutingSignal signal)
    {
        _registry = registry;
        // Requests held for a ready replica wake up when a node's first tunnel arrives.
        _registry.NodeReachable += _ => signal.Fire();
        var handler = DirectUpstreamConnector.CreateHandler();
        handler.ConnectCallback = async (context, ct) =>
        {
            var host = context.DnsEndPoint.Host;
            var nodeId = host.EndsWith(HostSuffix, StringComparison.Ordinal) ? host[..^HostSuffix.Length] : host;
            return await _registry.OpenAsync(nodeId, context.DnsEndPoint.Port, ct);
        };
        // Pings on every tunnel, idle or busy: a tunnel whose agent stopped answering (process frozen,
        // link dark) fails its requests after 10 s and is replaced, even while nothing else notices.
        handler.KeepAlivePingDelay = TimeSpan.FromSeconds(5);
        handler.KeepAlivePingTimeout = TimeSpan.FromSeconds(10);
        handler.KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always;
        _tunnelClient = new HttpMessageInvoker(new PriorKnowledgeHttp2(handler));
    }

    /// <summary>
    /// Tunnels carry HTTP/2 with prior knowledge: every request to a replica is multiplexed over one
    /// tunnel (more tunnels only past the agent's stream limit), and the agent forwards each to the
    /// replica over HTTP/1.1.
    /// </summary>
    private sealed class PriorKnowledgeHttp2(HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            request.Version = System.Net.HttpVersion.Version20;
            request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
            return base.SendAsync(request, cancellationToken);
        }
    }

    public bool IsReachable(RouteDestination destination) =>
        destination.Via != RouteVia.Tunnel || _registry.HasTunnels(destination.NodeId);

    public (HttpMessageInvoker Client, string Address) Resolve(RouteDestination destination)
    {
        if (destination.Via != RouteVia.Tunnel) return _direct.Resolve(destination);
        var address = _addresses.GetValue(destination, static d => $"http://{d.NodeId}{HostSuffix}:{new Uri(d.Address).Port}");
        return (_tunnelClient, address);
    }

    public void Dispose()
    {
        _tunnelClient.Dispose();
        _direct.Dispose();
    }
}
