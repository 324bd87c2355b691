using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Shoal.Core.Access;
using Shoal.Core.Metrics;
using Shoal.Core.Routing;
using Shoal.Edge.Access;
using Shoal.Edge.Connections;
using Shoal.Edge.Metrics;
using Shoal.Edge.Routing;
using Shoal.Edge.Tunnels;
using Shoal.Edge.Upstreams;

namespace Shoal.Edge;

/// <summary>Registers and maps the edge proxy in a web application, and configures its Kestrel listener.</summary>
public static class EdgeHostExtensions
{
    /// <summary>Adds the edge's services; the route table comes from <paramref name="routes"/>.</summary>
    public static IServiceCollection AddShoalEdge(this IServiceCollection services, EdgeOptions options, IRouteTableSource routes)
    {
        services.AddHttpForwarder();
        services.AddSingleton(options);
        services.AddSingleton(routes);
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<RoutingSignal>();
        services.AddSingleton<EdgeRouter>();
        services.AddSingleton<PassiveHealth>();
        services.AddSingleton<ReplicaSelector>();
        services.AddSingleton<EdgeMetrics>();
        services.TryAddSingleton<EdgeConnectionLimiter>();
        services.TryAddSingleton<IUpstreamConnector, DirectUpstreamConnector>();
        services.TryAddSingleton<IEndpointKeySource, EndpointKeyHolder>();
        services.AddSingleton<EndpointAccess>();
        services.AddSingleton<HoldReleaser>();
        services.AddSingleton<Control.EdgeDemandReporter>();
        services.AddHostedService(static sp => sp.GetRequiredService<Control.EdgeDemandReporter>());
        services.AddSingleton<Gateway.GatewayRedis>();
        services.TryAddSingleton<Core.Gateway.IProjectGrantSource, Core.Gateway.ProjectGrantHolder>();
        if (!string.IsNullOrWhiteSpace(options.SpoolDirectory))
        {
            // The usage ledger: rows spooled to files here, shipped by whoever holds the spool (the control link, or the server's store).
            services.AddSingleton(sp => new Gateway.UsageSpool(new Gateway.UsageSpoolOptions { Directory = options.SpoolDirectory },
                sp.GetRequiredService<ILogger<Gateway.UsageSpool>>(), sp.GetRequiredService<TimeProvider>()));
            services.AddSingleton<Gateway.IUsageLedger>(static sp => sp.GetRequiredService<Gateway.UsageSpool>());
            services.AddSingleton<IMetricsSource>(static sp => sp.GetRequiredService<Gateway.UsageSpool>());
        }
        services.TryAddSingleton<Gateway.IUsageLedger, Gateway.NullUsageLedger>();
        // Rate limits: in this edge, or shared through Redis with --redis. Registered before the budget stage.
        if (string.IsNullOrWhiteSpace(options.Redis)) services.TryAddSingleton<Gateway.IRateCounters>(static sp => new Gateway.LocalRateCounters(sp.GetRequiredService<TimeProvider>()));
        else services.TryAddSingleton<Gateway.IRateCounters, Gateway.RedisRateCounters>();
        services.AddSingleton<Gateway.RateLimitStage>();
        services.AddSingleton<Gateway.IGatewayAdmission>(static sp => sp.GetRequiredService<Gateway.RateLimitStage>());
        services.AddSingleton<IMetricsSource>(static sp => sp.GetRequiredService<Gateway.RateLimitStage>());
        services.TryAddSingleton<Gateway.BudgetOptions>();
        // After the limits stage: a request refused for its rate reserves nothing against budgets.
        services.AddSingleton<Gateway.IGatewayAdmission, Gateway.BudgetStage>();
        services.AddSingleton<Gateway.GatewayMetrics>();
        services.AddSingleton<IMetricsSource>(static sp => sp.GetRequiredService<Gateway.GatewayMetrics>());
        services.AddSingleton<Gateway.GatewayPipeline>();
        services.AddSingleton<EdgeProxy>();
        return services;
    }

    /// <summary>
    /// Every request that reaches this point goes through the edge proxy; requests that name no
    /// cluster get the edge's own <c>/metrics</c> and <c>/healthz</c>, or 404.
    /// </summary>
    public static WebApplication MapShoalEdge(this WebApplication app)
    {
        var proxy = app.Services.GetRequiredService<EdgeProxy>();
        // Made now rather than at the first connection, so its word on the file limit comes at start.
        app.Services.GetRequiredService<EdgeConnectionLimiter>();
        app.Run(proxy.InvokeAsync);
        return app;
    }

    /// <summary>
    /// The edge's web host: Kestrel set up by <see cref="ConfigureEdgeKestrel"/>, on the edge's
    /// socket transport (<see cref="EdgeSocketTransportFactory"/>: registered after Kestrel's own, so
    /// Kestrel prefers it for TCP endpoints). (Kestrel's inline
    /// scheduling was measured twice, alone and with inline socket completions, and lost throughput
    /// with the edge pinned to one CPU, so the default thread-pool scheduling stays.)
    /// </summary>
    public static IWebHostBuilder UseShoalEdgeKestrel(this IWebHostBuilder builder, EdgeOptions options) =>
        builder
            .ConfigureServices(s => s.AddSingleton<IConnectionListenerFactory, EdgeSocketTransportFactory>())
            .ConfigureKestrel(k => k.ConfigureEdgeKestrel(options));

    /// <summary>
    /// Silences ASP.NET Core's per-request hosting log: the edge counts requests in its metrics, and
    /// with that category enabled the host starts an <see cref="System.Diagnostics.Activity"/> for
    /// every request just to give log lines a scope, which costs measurable CPU at proxy rates.
    /// </summary>
    public static ILoggingBuilder AddEdgeLogFilters(this ILoggingBuilder logging) =>
        logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);

    /// <summary>
    /// Makes this process run socket completions on the socket event threads instead of handing
    /// each one to the thread pool: for a proxy whose work between two socket operations is short and
    /// never blocks, that saves a thread hop (and, on a busy CPU, a context switch) per read and
    /// write. Takes effect only before the process's first socket is used, and is process-wide, so
    /// only a process that is an edge and nothing else calls it (<c>shoal edge</c>). An explicit
    /// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c> in the environment wins.
    /// </summary>
    public static void PreferInlineSocketCompletions()
    {
        const string Variable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";
        if (Environment.GetEnvironmentVariable(Variable) is null) Environment.SetEnvironmentVariable(Variable, "1");
    }

    /// <summary>
    /// Listens on <see cref="EdgeOptions.Listen"/> (HTTPS with HTTP/1.1 and HTTP/2 when a certificate
    /// is configured) and sets the limits that keep slow or stalled clients from holding a replica:
    /// request headers timeout, minimum request and response data rates, the largest body. Every
    /// connection first meets the <see cref="EdgeConnectionLimiter"/> (before TLS, so a refused one
    /// costs no handshake).
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public static KestrelServerOptions ConfigureEdgeKestrel(this KestrelServerOptions kestrel, EdgeOptions options)
    {
        var errors = options.Validate();
        if (errors.Count > 0) throw new ArgumentException("invalid edge settings: " + string.Join("; ", errors));
        EdgeListenAddress.TryParse(options.Listen, out var endpoint);

        kestrel.AddServerHeader = false;
        var limits = kestrel.Limits;
        limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
        limits.RequestHeadersTimeout = options.RequestHeadersTimeout;
        limits.MinRequestBodyDataRate = new MinDataRate(options.MinDataRateBytesPerSecond, options.MinDataRateGracePeriod);
        limits.MinResponseDataRate = new MinDataRate(options.MinDataRateBytesPerSecond, options.MinDataRateGracePeriod);

        var certificate = LoadCertificate(options);
        void Configure(ListenOptions listen)
        {
            listen.UseEdgeConnectionLimits();
            if (certificate is not null)
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(certificate, https => https.HandshakeTimeout = options.UndecidedConnectionTimeout);
            }
            listen.UseShoalTunnels();
        }
        if (endpoint.Address is null) kestrel.ListenLocalhost(endpoint.Port, Configure);
        else kestrel.Listen(endpoint.Address, endpoint.Port, Configure);
        return kestrel;
    }

    /// <summary>
    /// Counts and limits this listener's connections with the application's <see cref="EdgeConnectionLimiter"/>;
    /// in an application without <see cref="AddShoalEdge"/> every connection passes straight on.
    /// </summary>
    public static ListenOptions UseEdgeConnectionLimits(this ListenOptions listen)
    {
        EdgeConnectionLimiter? limiter = null;
        var resolved = false;
        listen.Use(next => connection =>
        {
            if (!resolved)
            {
                limiter = listen.ApplicationServices.GetService<EdgeConnectionLimiter>();
                resolved = true;
            }
            return limiter is null ? next(connection) : limiter.OnConnectionAsync(connection, next);
        });
        return listen;
    }

    /// <summary>The configured TLS certificate with its private key (PEM pair or PFX), or null for plain HTTP.</summary>
    public static X509Certificate2? LoadCertificate(EdgeOptions options)
    {
        if (!string.IsNullOrEmpty(options.TlsPfxPath))
        {
            return X509CertificateLoader.LoadPkcs12FromFile(options.TlsPfxPath, options.TlsPassword);
        }
        if (!string.IsNullOrEmpty(options.TlsCertificatePath))
        {
            return string.IsNullOrEmpty(options.TlsPassword)
                ? X509Certificate2.CreateFromPemFile(options.TlsCertificatePath, options.TlsKeyPath)
                : X509Certificate2.CreateFromEncryptedPemFile(options.TlsCertificatePath, options.TlsPassword, options.TlsKeyPath);
        }
        return null;
    }
}
