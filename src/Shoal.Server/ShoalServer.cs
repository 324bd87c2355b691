using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Shoal.ControlPlane;
using Shoal.ControlPlane.Autoscaling;
using Shoal.ControlPlane.Edges;
using Shoal.ControlPlane.Identity;
using Shoal.ControlPlane.Sealing;
using Shoal.ControlPlane.State;
using Shoal.Core.Access;
using Shoal.Core.Autoscaling;
using Shoal.Core.Gateway;
using Shoal.Core.Metrics;
using Shoal.Core.Routing;
using Shoal.Core.Security;
using Shoal.Edge;
using Shoal.Edge.Gateway;
using Shoal.Edge.Tunnels;
using Shoal.Hosting;
using Shoal.Store;

namespace Shoal.Server;

/// <summary>
/// <c>shoal server</c>: the control plane's web application (REST API and agent gateway) and,
/// unless disabled, an edge in the same process reading the route table in memory.
/// </summary>
public sealed class ShoalServer : IAsyncDisposable
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

    /// <summary>Checks <paramref name="options"/> (<see cref="ServerOptions.Validate"/>) and, unless <see cref="ServerOptions.NoEdge"/>, the in-process edge's settings drawn from them; returns every problem found.</summary>
    public static IReadOnlyList<string> Validate(ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>(options.Validate());
        if (!options.NoEdge && ListenAddress.TryParse(options.EdgeListen, out _)) errors.AddRange(options.ToEdgeOptions().Validate());
        return errors;
    }

    /// <summary>Opens the store, migrates it, loads state and starts listening.</summary>
    public static async Task<ShoalServer> StartAsync(ServerOptions options, TimeProvider? time = null, Action<ILoggingBuilder>? logging = null, CancellationToken ct = default)
    {
        var errors = Validate(options);
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

        var edgeOptions = options.ToEdgeOptions();
        // The in-process edge's usage ledger: spooled in the data dir, shipped straight to the store.
        edgeOptions.SpoolDirectory ??= Path.Combine(Path.GetFullPath(options.DataDir), "edge-spool");
        // Scrapers read the in-process edge's /metrics with this key (kept 0600 in the data dir).
        edgeOptions.MetricsKey = EdgeKey.LoadOrCreate(Path.Combine(Path.GetFullPath(options.DataDir), MetricsKeyFileName), "shoal_mk_");

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.AddShoalLogging(options.LogLevel, logging);
        builder.WebHost.UseUrls(apiUrl);
        if (options.StoppedByHost) builder.Services.AddSingleton<IHostLifetime, HostStoppedLifetime>();
        builder.Services.AddShoalControlPlane(options, store, secrets, time);

        var api = builder.Build();
        api.MapShoalControlPlane();
        await api.LoadShoalControlPlaneAsync(ct);
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
            eb.Services.AddShoalEdge(edgeOptions, api.Services.GetRequiredService<RouteTableHolder>());
            eb.Services.AddSingleton<IEndpointKeySource>(api.Services.GetRequiredService<ApiKeyDirectory>());
            eb.Services.AddSingleton<IProjectGrantSource>(api.Services.GetRequiredService<ApiKeyDirectory>());
            // The in-process edge's demand reports go straight to the autoscaler's book.
            eb.Services.AddSingleton<IEdgeDemandSink>(new InProcessDemandSink(api.Services.GetRequiredService<DemandBook>()));
            // The server's /metrics carries the control plane's autoscaling and cold-start figures too.
            eb.Services.AddSingleton<IMetricsSource>(new ControlPlaneMetrics(api.Services.GetRequiredService<ControlPlaneState>()));
            eb.Services.AddHostedService(sp => new StoreUsageShipper(sp.GetRequiredService<UsageSpool>(),
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
