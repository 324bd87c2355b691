using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Shoal.Core.Autoscaling;
using Shoal.Core.Routing;
using Shoal.Core.Tunnels;
using Shoal.Edge.Control;
using Shoal.Hosting;
using Shoal.Edge.Tunnels;

namespace Shoal.Edge;

/// <summary>Settings of a standalone edge (<c>shoal edge</c>).</summary>
public sealed class EdgeServerOptions
{
    /// <summary>The control plane's API address.</summary>
    public string Server { get; set; } = "http://127.0.0.1:7400";
    /// <summary>The edge key the control plane expects.</summary>
    public string? Key { get; set; }
    /// <summary>The URL agents open tunnels to; default: the address the edge listens on.</summary>
    public string? AdvertiseUrl { get; set; }
    /// <summary>Proxy settings (listen address, domain, limits).</summary>
    public EdgeOptions Edge { get; set; } = new();
    public LogLevel LogLevel { get; set; } = LogLevel.Information;
    /// <summary>Ask the control plane for route deltas (default); false: whole tables on every change, as older edges.</summary>
    public bool RouteDeltas { get; set; } = true;

    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Key)) errors.Add("an edge key is required (--key, --key-file or SHOAL_EDGE_KEY; the server writes one to edge.key in its data dir)");
        errors.AddRange(Edge.Validate());
        if (!Uri.TryCreate(Server, UriKind.Absolute, out var server) || (server.Scheme != Uri.UriSchemeHttp && server.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add($"--server '{Server}' is not an http(s) URL");
        }
        if (AdvertiseUrl is { Length: > 0 } a && (!Uri.TryCreate(a, UriKind.Absolute, out var adv) || (adv.Scheme != Uri.UriSchemeHttp && adv.Scheme != Uri.UriSchemeHttps)))
        {
            errors.Add($"--advertise '{a}' is not an http(s) URL");
        }
        return errors;
    }
}

/// <summary>
/// A standalone edge: the proxy and the tunnel endpoint on one listener, fed by a route-table
/// stream from the control plane. Stateless: restarting it loses nothing.
/// </summary>
public sealed class EdgeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly CancellationTokenSource _stop;
    private readonly Task _control;

    private EdgeServer(WebApplication app, Uri address, EdgeControlClient control, Task controlTask, CancellationTokenSource stop)
    {
        _app = app;
        _stop = stop;
        Address = address;
        Control = control;
        _control = controlTask;
    }

    public Uri Address { get; }

    public EdgeControlClient Control { get; }

    public IServiceProvider Services => _app.Services;

    /// <summary>The link to the control plane; it ends only when stopped or when the server refuses the key.</summary>
    public Task ControlLink => _control;

    public static async Task<EdgeServer> StartAsync(EdgeServerOptions options, TimeProvider? time = null, Action<ILoggingBuilder>? logging = null, CancellationToken ct = default)
    {
        var errors = options.Validate();
        if (errors.Count > 0) throw new EdgeConfigurationException(string.Join("; ", errors));
        time ??= TimeProvider.System;

        var routes = new RouteTableHolder();
        var credentials = new NodeCredentialHolder();
        var endpointKeys = new Core.Access.EndpointKeyHolder();
        var projectGrants = new Core.Gateway.ProjectGrantHolder();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.AddShoalLogging(options.LogLevel, logging);
        builder.Logging.AddEdgeLogFilters();
        builder.WebHost.UseShoalEdgeKestrel(options.Edge);
        builder.Services.AddSingleton(time);
        builder.Services.AddShoalTunnels(credentials);
        builder.Services.AddSingleton<Core.Access.IEndpointKeySource>(endpointKeys);
        builder.Services.AddSingleton<Core.Gateway.IProjectGrantSource>(projectGrants);
        // Demand reports go up the control stream, which is set up once the edge knows its address.
        var demand = new DemandRelay();
        builder.Services.AddSingleton<IEdgeDemandSink>(demand);
        builder.Services.AddShoalEdge(options.Edge, routes);
        var app = builder.Build();
        app.MapShoalEdge();
        await app.StartAsync(ct);
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

        var control = new EdgeControlClient(
            new EdgeControlOptions
            {
                Server = options.Server,
                Key = options.Key!.Trim(),
                AdvertiseUrl = string.IsNullOrWhiteSpace(options.AdvertiseUrl) ? address.ToString().TrimEnd('/') : options.AdvertiseUrl.TrimEnd('/'),
                RouteDeltas = options.RouteDeltas,
            },
            routes,
            credentials,
            endpointKeys,
            time,
            app.Services.GetRequiredService<ILogger<EdgeControlClient>>(),
            app.Services.GetService<Gateway.UsageSpool>(),
            projectGrants);
        demand.Target = control;
        var stop = new CancellationTokenSource();
        return new EdgeServer(app, address, control, Task.Run(() => control.RunAsync(stop.Token), CancellationToken.None), stop);
    }

    /// <summary>Hands demand reports to the control client once it exists (reports before that are dropped: the next one replaces them).</summary>
    private sealed class DemandRelay : IEdgeDemandSink
    {
        private volatile IEdgeDemandSink? _target;

        public IEdgeDemandSink? Target
        {
            get => _target;
            set => _target = value;
        }

        public void Report(Contracts.DemandReport report) => _target?.Report(report);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _control;
        }
        catch (Exception e) when (e is OperationCanceledException or EdgeConfigurationException)
        {
            // Stopping, or it already failed and the caller saw it through Completion.
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
        _stop.Dispose();
    }
}
