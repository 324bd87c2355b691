using Shoal.Contracts;
using Shoal.Edge.Routing;
using Shoal.Edge.Upstreams;

namespace Shoal.Edge.Tunnels;

/// <summary>
/// Reaches direct destinations with the direct client and tunnel destinations over their node's
/// tunnels: the tunnel client's connections are tunnels (HTTP/1.1, one connection per tunnel,
/// pooled and kept alive by the client per replica).
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
        _tunnelClient = new HttpMessageInvoker(Http2Experiment ? new PriorKnowledgeHttp2(handler) : handler);
    }

    /// <summary>
    /// Benchmark experiment only (<c>SHOAL_EDGE_TUNNEL_HTTP2=1</c>): speak HTTP/2 with prior knowledge
    /// over tunnels, all requests to a replica multiplexed over one tunnel. Replicas speak HTTP/1.1,
    /// so this works only against a replica that speaks h2c itself; it exists to measure HTTP/2 over a
    /// tunnel against HTTP/1.1 per tunnel (docs/benchmarks.md).
    /// </summary>
    private static bool Http2Experiment { get; } = Environment.GetEnvironmentVariable("SHOAL_EDGE_TUNNEL_HTTP2") == "1";

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
