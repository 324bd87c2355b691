using Microsoft.Extensions.DependencyInjection.Extensions;
using Shoal.Edge.Routing;
using Shoal.Edge.Upstreams;

namespace Shoal.Edge;

/// <summary>Registers and maps the edge proxy in a web application.</summary>
public static class EdgeHostExtensions
{
    /// <summary>Adds the edge's services; the route table comes from <paramref name="routes"/>.</summary>
    public static IServiceCollection AddShoalEdge(this IServiceCollection services, EdgeOptions options, IRouteTableSource routes)
    {
        services.AddHttpForwarder();
        services.AddSingleton(options);
        services.AddSingleton(routes);
        services.AddSingleton<ReplicaSelector>();
        services.TryAddSingleton<IUpstreamConnector, DirectUpstreamConnector>();
        services.AddSingleton<EdgeProxy>();
        return services;
    }

    /// <summary>Every request that reaches this point goes through the edge proxy.</summary>
    public static WebApplication MapShoalEdge(this WebApplication app)
    {
        var proxy = app.Services.GetRequiredService<EdgeProxy>();
        app.Run(proxy.InvokeAsync);
        return app;
    }
}
