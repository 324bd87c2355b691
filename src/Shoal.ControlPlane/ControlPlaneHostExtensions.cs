using Microsoft.AspNetCore.Server.Kestrel.Core;
using Shoal.Contracts;
using Shoal.ControlPlane.Agents;
using Shoal.ControlPlane.Apis;
using Shoal.ControlPlane.Autoscaling;
using Shoal.ControlPlane.Edges;
using Shoal.ControlPlane.Identity;
using Shoal.ControlPlane.Reconciliation;
using Shoal.ControlPlane.Sealing;
using Shoal.ControlPlane.State;
using Shoal.Core.Routing;
using Shoal.Hosting;
using Shoal.Store;

namespace Shoal.ControlPlane;

/// <summary>
/// Registers and maps the control plane (REST API, agent and edge gateways, control loops) in a web
/// application. <c>shoal server</c> composes it with an in-process edge (<c>Shoal.Server</c>); the
/// control plane itself knows the edge only through the contracts in <c>Shoal.Core</c>.
/// </summary>
public static partial class ControlPlaneHostExtensions
{
    /// <summary>
    /// Adds the control plane's services over <paramref name="store"/> (opened and migrated, sealed with
    /// <paramref name="secrets"/>). The route table it writes is the <see cref="RouteTableHolder"/> singleton.
    /// </summary>
    public static IServiceCollection AddShoalControlPlane(this IServiceCollection services, ServerOptions options, IShoalStore store, SecretsKey secrets, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ListenAddress.TryParse(options.Listen, out var apiUrl);
        services.Configure<KestrelServerOptions>(k => k.Limits.MaxRequestBodySize = AgentProtocol.MaxMessageBytes);
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ShoalJsonContext.Default));
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddOpenApi();
        services.AddSingleton(options);
        services.AddSingleton(time ?? TimeProvider.System);
        services.AddSingleton(store);
        services.AddSingleton<RouteTableHolder>();
        services.AddSingleton<ControlPlaneState>();
        services.AddSingleton<ApiKeyDirectory>();
        services.AddSingleton<ManagementRateLimit>();
        services.AddShoalAuthorization();
        var allowedHosts = AllowedHosts(options, apiUrl);
        services.AddHostFiltering(o =>
        {
            o.AllowedHosts = allowedHosts ?? ["*"];
            o.IncludeFailureMessage = false;
        });
        services.AddSingleton<AgentGateway>();
        services.AddSingleton<ProcessImageDirectory>();
        services.AddSingleton<EdgeDirectory>();
        services.AddSingleton(EdgeKey.Load(options));
        services.AddSingleton(secrets);
        services.AddSingleton<EdgeGateway>();
        services.AddSingleton<UsageIntake>();
        services.AddSingleton<DemandBook>();
        services.AddHostedService<ControlLoops>();
        services.AddHostedService<BudgetSpendRefresher>();
        services.AddSingleton(_ => new ServerOptionsAccessor(options.PublicEdgeUrl ?? EdgeUrl(options)));
        return services;
    }

    /// <summary>The control plane's middleware and endpoints: host filtering, errors, keys, the management rate limit, the API and both gateways.</summary>
    public static WebApplication MapShoalControlPlane(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        // A Host that is not this server's (DNS rebinding) is refused before anything else runs.
        app.UseHostFiltering();
        app.UseShoalErrors();
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.FromSeconds(15) });
        app.UseRouting();
        app.UseAuthentication();
        app.UseAuthorization();
        var rateLimit = app.Services.GetRequiredService<ManagementRateLimit>();
        app.Use((context, next) => rateLimit.InvokeAsync(context, next));
        app.MapOpenApi("/openapi/{documentName}.json").RequireShoal(Permission.Authenticated);
        // Anonymous by design: liveness for load balancers; agents and edges authenticate with their own credentials.
        app.MapGet("/healthz", () => Results.Text("ok")).ExcludeFromDescription().AllowAnonymous();
        app.MapClustersApi();
        app.MapNodesApi();
        app.MapTokensApi();
        app.MapGpuTypesApi();
        app.MapKeysApi();
        app.MapUsageApi();
        var gateway = app.Services.GetRequiredService<AgentGateway>();
        app.Map(AgentProtocol.ConnectPath, gateway.HandleAsync).ExcludeFromDescription().AllowAnonymous();
        app.Map(EdgeProtocol.ConnectPath, app.Services.GetRequiredService<EdgeGateway>().HandleAsync).ExcludeFromDescription().AllowAnonymous();
        return app;
    }

    /// <summary>Warns when the API is reachable from other machines, then loads the keys and the state from the store; before the app starts.</summary>
    public static async Task LoadShoalControlPlaneAsync(this WebApplication app, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(app);
        var options = app.Services.GetRequiredService<ServerOptions>();
        ListenAddress.TryParse(options.Listen, out var apiUrl);
        var startLogger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Shoal.Server");
        if (AllowedHosts(options, apiUrl) is null) LogAnyHost(startLogger, options.Listen);
        else if (!IsLoopbackListen(apiUrl)) LogExposed(startLogger, options.Listen);
        await app.Services.GetRequiredService<ApiKeyDirectory>().LoadAsync(options.DataDir, ct);
        await app.Services.GetRequiredService<ControlPlaneState>().LoadAsync(ct);
    }

    /// <summary>The in-process edge's URL as clusters' endpoints show it when no public edge URL is set: https when it has a certificate.</summary>
    private static string EdgeUrl(ServerOptions options)
    {
        ListenAddress.TryParse(options.EdgeListen, out var edgeUrl);
        var usesTls = !string.IsNullOrEmpty(options.EdgeTlsCertificate) || !string.IsNullOrEmpty(options.EdgeTlsPfx);
        return usesTls ? "https://" + edgeUrl["http://".Length..] : edgeUrl;
    }

    /// <summary>
    /// The Host header values the API answers: the listen host (and localhost names on loopback) plus
    /// <see cref="ServerOptions.AllowedHosts"/>; null (any host) when listening on every interface with none configured.
    /// </summary>
    internal static string[]? AllowedHosts(ServerOptions options, string apiUrl)
    {
        var host = new Uri(apiUrl).Host;
        var wildcard = host is "0.0.0.0" or "[::]" or "::" or "*" or "+";
        if (wildcard && options.AllowedHosts.Count == 0) return null;
        var hosts = new List<string>(options.AllowedHosts);
        if (!wildcard) hosts.Add(host);
        if (IsLoopbackListen(apiUrl)) hosts.AddRange(["localhost", "127.0.0.1", "[::1]"]);
        return [.. hosts.Distinct(StringComparer.OrdinalIgnoreCase)];
    }

    private static bool IsLoopbackListen(string apiUrl)
    {
        var host = new Uri(apiUrl).Host;
        return host == "localhost" || (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The API listens on every interface ({Listen}) and answers any Host header; set --allowed-host to the names clients use (DNS rebinding). Every call needs an API key; put TLS in front of it when it is reachable from other machines")]
    private static partial void LogAnyHost(ILogger logger, string listen);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The API listens on {Listen}, reachable from other machines: every call needs an API key; put TLS in front of it")]
    private static partial void LogExposed(ILogger logger, string listen);
}
