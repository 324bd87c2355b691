using Shoal.Contracts;
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

    /// <summary>Serves <see cref="EdgeProtocol.TunnelPath"/>; call before <c>MapShoalEdge</c>.</summary>
    public static WebApplication MapShoalTunnels(this WebApplication app)
    {
        var endpoint = app.Services.GetRequiredService<TunnelEndpoint>();
        app.MapWhen(
            static context => context.Request.Path.Equals(EdgeProtocol.TunnelPath, StringComparison.Ordinal),
            branch =>
            {
                branch.UseWebSockets();
                branch.Run(endpoint.HandleAsync);
            });
        return app;
    }
}
