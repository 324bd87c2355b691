using Microsoft.AspNetCore.Server.Kestrel.Core;
using Shoal.Core.Tunnels;
using Shoal.Edge.Upstreams;

namespace Shoal.Edge.Tunnels;

/// <summary>Registers the tunnel endpoint and the tunnel-aware upstream connector in an edge.</summary>
public static class TunnelHostExtensions
{
    /// <summary>Call before <c>AddShoalEdge</c>, so the edge reaches tunnel destinations over tunnels.</summary>
    public static IServiceCollection AddShoalTunnels(this IServiceCollection services, INodeCredentialSource credentials)
    {
        services.AddSingleton(credentials);
        services.AddSingleton<TunnelRegistry>();
        services.AddSingleton<TunnelUpstreamConnector>();
        services.AddSingleton<IUpstreamConnector>(sp => sp.GetRequiredService<TunnelUpstreamConnector>());
        services.AddSingleton<TunnelEndpoint>();
        return services;
    }

    /// <summary>
    /// Takes tunnel connections on this listener (call after <c>UseHttps</c>, so tunnels are
    /// encrypted like everything else on it). In an application without <see cref="AddShoalTunnels"/>
    /// every connection passes straight on to HTTP.
    /// </summary>
    public static ListenOptions UseShoalTunnels(this ListenOptions listen)
    {
        TunnelEndpoint? endpoint = null;
        var resolved = false;
        listen.Use(next => connection =>
        {
            if (!resolved)
            {
                endpoint = listen.ApplicationServices.GetService<TunnelEndpoint>();
                resolved = true;
            }
            return endpoint is null ? next(connection) : endpoint.OnConnectionAsync(connection, next);
        });
        return listen;
    }
}
