using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Shoal.Contracts;
using Shoal.ControlPlane.Agents;
using Shoal.ControlPlane.Apis;
using Shoal.ControlPlane.Edges;
using Shoal.ControlPlane.Identity;
using Shoal.ControlPlane.Reconciliation;
using Shoal.ControlPlane.Sealing;
using Shoal.ControlPlane.State;
using Shoal.Core.Routing;
using Shoal.Core.Security;
using Shoal.ControlPlane.Autoscaling;
using Shoal.Edge;
using Shoal.Edge.Tunnels;
using Shoal.Hosting;
using Shoal.Store;

namespace Shoal.ControlPlane;

/// <summary>
/// <c>shoal server</c>: the control plane's web application (REST API and agent gateway) and,
/// unless disabled, an edge in the same process reading the route table in memory.
/// </summary>
public sealed partial class ShoalServer : IAsyncDisposable
{
    private readonly WebApplication _api;
    private readonly WebApplication? _edge;
    private int _disposed;

    private ShoalServer(WebApplication api, WebApplication? edge, Uri apiAddress, Uri? edgeAddress)
    {
        _api = api;
        _edge = edge;
        ApiAddress = apiAddress;
        EdgeAddress = edgeAddress;
    }

    public Uri ApiAddress { get; }

    public Uri? EdgeAddress { get; }

    public IServiceProvider Services => _api.Services;

    /// <summary>The in-process edge's services; null with <see cref="ServerOptions.NoEdge"/>.</summary>
    public IServiceProvider? EdgeServices => _edge?.Services;

    /// <summary>Where the server keeps the key scrapers send to read its edge's <c>/metrics</c>.</summary>
    public const string MetricsKeyFileName = "metrics.key";

    /// <summary>The file the bootstrap operator key was written to at this start; null when keys existed already.</summary>
    public string? OperatorKeyFile => _api.Services.GetRequiredService<ApiKeyDirectory>().OperatorKeyFile;

    /// <summary>The file holding the generated edge key; null when the key was configured.</summary>
    public string? EdgeKeyFile => _api.Services.GetRequiredService<EdgeKey>().FilePath;

    /// <summary>Opens the store, migrates it, loads state and starts listening.</summary>
    public static async Task<ShoalServer> StartAsync(ServerOptions options, TimeProvider? time = null, Action<ILoggingBuilder>? logging = null, CancellationToken ct = default)
    {
        var errors = options.Validate();
        if (errors.Count > 0) throw new ArgumentException(string.Join("; ", errors));
        time ??= TimeProvider.System;
        ListenAddress.TryParse(options.Listen, out var apiUrl);

        PrivateFiles.CreateDirectory(options.DataDir);
        var secrets = SecretsKey.Load(options);
        // Metered: store writes per second is one of the fleet-scale figures (docs/benchmarks.md).
        IShoalStore store = new MeteredShoalStore(StoreFactory.Open(options.Database, options.DataDir, secrets.Box));
        try
        {
            await store.MigrateAsync(ct);
        }
        catch (SecretsKeyException e)
        {
            await store.DisposeAsync();
            secrets.ForgetCreated();
            var where = secrets.Created ? $"no secrets key was found (looked for {secrets.FilePath} and {SecretsKey.EnvironmentVariable})" : $"the key in use comes from {secrets.Source}";
            throw new SecretsKeyException(
                $"cannot start: {e.Message}; {where}. Restore the key the store was sealed with (the secrets.key file " +
                $"from the data dir's backup, or set {SecretsKey.EnvironmentVariable}); nothing in the store was changed.", e.SealedWith);
        }
        catch
        {
            await store.DisposeAsync();
            throw;
        }

        var routes = new RouteTableHolder();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.AddShoalLogging(options.LogLevel, logging);
        builder.WebHost.UseUrls(apiUrl);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = AgentProtocol.MaxMessageBytes);
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ShoalJsonContext.Default));
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.AddOpenApi();
        if (options.StoppedByHost) builder.Services.AddSingleton<IHostLifetime, HostStoppedLifetime>();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(time);
        builder.Services.AddSingleton(store);
        builder.Services.AddSingleton(routes);
        builder.Services.AddSingleton<ControlPlaneState>();
        builder.Services.AddSingleton<ApiKeyDirectory>();
        builder.Services.AddSingleton<ManagementRateLimit>();
        builder.Services.AddShoalAuthorization();
        var allowedHosts = AllowedHosts(options, apiUrl);
        builder.Services.AddHostFiltering(o =>
        {
            o.AllowedHosts = allowedHosts ?? ["*"];
            o.IncludeFailureMessage = false;
        });
        builder.Services.AddSingleton<AgentGateway>();
        builder.Services.AddSingleton<ProcessImageDirectory>();
        builder.Services.AddSingleton<EdgeDirectory>();
        builder.Services.AddSingleton(EdgeKey.Load(options));
        builder.Services.AddSingleton(secrets);
        builder.Services.AddSingleton<EdgeGateway>();
        builder.Services.AddSingleton<UsageIntake>();
        builder.Services.AddSingleton<DemandBook>();
        builder.Services.AddHostedService<ControlLoops>();
        builder.Services.AddHostedService<BudgetSpendRefresher>();
        ListenAddress.TryParse(options.EdgeListen, out var edgeUrl);
        var edgeOptions = options.ToEdgeOptions();
        // The in-process edge's usage ledger: spooled in the data dir, shipped straight to the store.
        edgeOptions.SpoolDirectory ??= Path.Combine(Path.GetFullPath(options.DataDir), "edge-spool");
        // Scrapers read the in-process edge's /metrics with this key (kept 0600 in the data dir).
        edgeOptions.MetricsKey = EdgeKey.LoadOrCreate(Path.Combine(Path.GetFullPath(options.DataDir), MetricsKeyFileName), "shoal_mk_");
        if (edgeOptions.UsesTls) edgeUrl = "https://" + edgeUrl["http://".Length..];
        builder.Services.AddSingleton(_ => new ServerOptionsAccessor(options.PublicEdgeUrl ?? edgeUrl));

        var api = builder.Build();
        // A Host that is not this server's (DNS rebinding) is refused before anything else runs.
        api.UseHostFiltering();
        api.UseShoalErrors();
        api.UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.FromSeconds(15) });
        api.UseRouting();
        api.UseAuthentication();
        api.UseAuthorization();
        var rateLimit = api.Services.GetRequiredService<ManagementRateLimit>();
        api.Use((context, next) => rateLimit.InvokeAsync(context, next));
        api.MapOpenApi("/openapi/{documentName}.json").RequireShoal(Permission.Authenticated);
        // Anonymous by design: liveness for load balancers; agents and edges authenticate with their own credentials.
        api.MapGet("/healthz", () => Results.Text("ok")).ExcludeFromDescription().AllowAnonymous();
        api.MapClustersApi();
        api.MapNodesApi();
        api.MapTokensApi();
        api.MapGpuTypesApi();
        api.MapKeysApi();
        api.MapUsageApi();
        var gateway = api.Services.GetRequiredService<AgentGateway>();
        api.Map(AgentProtocol.ConnectPath, gateway.HandleAsync).ExcludeFromDescription().AllowAnonymous();
        api.Map(EdgeProtocol.ConnectPath, api.Services.GetRequiredService<EdgeGateway>().HandleAsync).ExcludeFromDescription().AllowAnonymous();

        var startLogger = api.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Shoal.Server");
        if (allowedHosts is null) LogAnyHost(startLogger, options.Listen);
        else if (!IsLoopbackListen(apiUrl)) LogExposed(startLogger, options.Listen);
        await api.Services.GetRequiredService<ApiKeyDirectory>().LoadAsync(options.DataDir, ct);
        await api.Services.GetRequiredService<ControlPlaneState>().LoadAsync(ct);
        await api.StartAsync(ct);
        var apiAddress = new Uri(BoundAddress(api));
        var addressPolicy = api.Services.GetRequiredService<ControlPlaneState>().AddressPolicy;
        addressPolicy.AddServerPort(apiAddress.Port);

        WebApplication? edge = null;
        Uri? edgeAddress = null;
        if (!options.NoEdge)
        {
            var eb = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
            eb.Logging.AddShoalLogging(options.LogLevel, logging);
            eb.Logging.AddEdgeLogFilters();
            eb.WebHost.UseShoalEdgeKestrel(edgeOptions);
            eb.Services.AddSingleton(time);
            if (options.StoppedByHost) eb.Services.AddSingleton<IHostLifetime, HostStoppedLifetime>();
            eb.Services.AddShoalTunnels(new EdgeTunnelVerifiers(api.Services.GetRequiredService<ControlPlaneState>(), api.Services.GetRequiredService<EdgeDirectory>()));
            eb.Services.AddShoalEdge(edgeOptions, routes);
            eb.Services.AddSingleton<Shoal.Core.Access.IEndpointKeySource>(api.Services.GetRequiredService<ApiKeyDirectory>());
            eb.Services.AddSingleton<Shoal.Core.Gateway.IProjectGrantSource>(api.Services.GetRequiredService<ApiKeyDirectory>());
            // The in-process edge's demand reports go straight to the autoscaler's book.
            eb.Services.AddSingleton<Shoal.Core.Autoscaling.IEdgeDemandSink>(new InProcessDemandSink(api.Services.GetRequiredService<DemandBook>()));
            // The server's /metrics carries the control plane's autoscaling and cold-start figures too.
            eb.Services.AddSingleton<Shoal.Core.Metrics.IMetricsSource>(new ControlPlaneMetrics(api.Services.GetRequiredService<ControlPlaneState>()));
            eb.Services.AddHostedService(sp => new StoreUsageShipper(sp.GetRequiredService<Shoal.Edge.Gateway.UsageSpool>(),
                api.Services.GetRequiredService<UsageIntake>(), sp.GetRequiredService<ILogger<StoreUsageShipper>>()));
            edge = eb.Build();
            edge.MapShoalEdge();
            try
            {
                await edge.StartAsync(ct);
            }
            catch
            {
                await api.StopAsync(CancellationToken.None);
                await api.DisposeAsync();
                throw;
            }
            edgeAddress = new Uri(BoundAddress(edge));
            addressPolicy.AddServerPort(edgeAddress.Port);
            api.Services.GetRequiredService<EdgeDirectory>().SetLocal((options.PublicEdgeUrl ?? edgeAddress.ToString()).TrimEnd('/'));
        }

        return new ShoalServer(api, edge, apiAddress, edgeAddress);
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

    private static string BoundAddress(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    /// <summary>Completes when the host is asked to stop (for example by a failing loop).</summary>
    public Task WaitForShutdownAsync(CancellationToken ct) => _api.WaitForShutdownAsync(ct);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        if (_edge is not null)
        {
            await _edge.StopAsync(timeout.Token);
            await _edge.DisposeAsync();
        }
        await _api.StopAsync(timeout.Token);
        var store = _api.Services.GetRequiredService<IShoalStore>();
        await _api.DisposeAsync();
        await store.DisposeAsync();
    }
}
