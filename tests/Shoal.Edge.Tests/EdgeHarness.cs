using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.Core.Routing;
using Shoal.Edge.Routing;

namespace Shoal.Edge.Tests;

/// <summary>A real edge on 127.0.0.1 (port 0) over a route table the test sets.</summary>
public sealed class TestEdge : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TestEdge(WebApplication app, RouteTableHolder routes, EdgeOptions options)
    {
        _app = app;
        Routes = routes;
        Options = options;
        Address = new Uri(app.Urls.First());
    }

    public RouteTableHolder Routes { get; }

    public EdgeOptions Options { get; }

    public Uri Address { get; }

    public IServiceProvider Services => _app.Services;

    public EdgeRouter Router => _app.Services.GetRequiredService<EdgeRouter>();

    /// <param name="services">Registers services before the edge's own (a TimeProvider, tunnels, a connection limiter).</param>
    public static async Task<TestEdge> StartAsync(EdgeOptions? options = null, RouteTableHolder? routes = null, Action<IServiceCollection>? services = null)
    {
        options ??= new EdgeOptions();
        options.Listen = "127.0.0.1:0";
        options.MetricsKey ??= MetricsKey;
        routes ??= new RouteTableHolder();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseShoalEdgeKestrel(options);
        services?.Invoke(builder.Services);
        builder.Services.AddShoalEdge(options, routes);
        var app = builder.Build();
        app.MapShoalEdge();
        await app.StartAsync();
        return new TestEdge(app, routes, options);
    }

    public HttpClient Client(TimeSpan? timeout = null) => new(new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
    {
        BaseAddress = Address,
        Timeout = timeout ?? TimeSpan.FromSeconds(30),
    };

    /// <summary>Sets the cluster <paramref name="cluster"/> to the given replicas (id → base address), replacing the table.</summary>
    public void SetCluster(string cluster, IEnumerable<(string Id, Uri Address)> replicas, string balancing = BalancingPolicy.LeastOutstanding, int queueTimeoutMs = 2000)
    {
        var clusters = new Dictionary<string, ClusterRoute>(Routes.Current.Clusters, StringComparer.Ordinal)
        {
            [cluster] = Route(cluster, replicas, balancing, queueTimeoutMs),
        };
        Routes.Update(new RouteTable { Version = Routes.Current.Version + 1, Clusters = clusters });
    }

    public static ClusterRoute Route(string cluster, IEnumerable<(string Id, Uri Address)> replicas, string balancing = BalancingPolicy.LeastOutstanding, int queueTimeoutMs = 2000) => new()
    {
        Cluster = cluster,
        // These tests are about routing; endpoint keys have tests of their own.
        Public = true,
        Balancing = balancing,
        QueueTimeoutMs = queueTimeoutMs,
        Destinations = [.. replicas.Select(r => new RouteDestination { ReplicaId = r.Id, NodeId = "node-" + r.Id, Address = r.Address.ToString().TrimEnd('/') })],
    };

    /// <summary>The key the test edges read their <c>/metrics</c> with.</summary>
    public const string MetricsKey = "shoal_mk_test";

    public async Task<string> MetricsAsync()
    {
        using var client = Client();
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", MetricsKey);
        return await client.GetStringAsync("/metrics");
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await _app.StopAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync();
    }
}

/// <summary>A real HTTP server on 127.0.0.1 standing in for a replica, with a handler the test writes.</summary>
public sealed class TestReplica : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _hits;

    private TestReplica(WebApplication app, string id)
    {
        _app = app;
        Id = id;
        Address = new Uri(app.Urls.First());
    }

    public string Id { get; }

    public Uri Address { get; }

    public int Hits => Volatile.Read(ref _hits);

    public (string Id, Uri Address) Route => (Id, Address);

    public static async Task<TestReplica> StartAsync(string id, RequestDelegate handler, List<string>? log = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        TestReplica? self = null;
        app.Run(async ctx =>
        {
            Interlocked.Increment(ref self!._hits);
            if (log is not null)
            {
                lock (log) log.Add(id);
            }
            await handler(ctx);
        });
        await app.StartAsync();
        self = new TestReplica(app, id);
        return self;
    }

    /// <summary>A replica that answers 200 with its id and the request body it got.</summary>
    public static Task<TestReplica> EchoAsync(string id, List<string>? log = null) => StartAsync(id, async ctx =>
    {
        using var reader = new StreamReader(ctx.Request.Body);
        var body = await reader.ReadToEndAsync(ctx.RequestAborted);
        await ctx.Response.WriteAsync($"{id}:{ctx.Request.Path}:{body}", ctx.RequestAborted);
    }, log);

    /// <summary>A replica that always answers with <paramref name="status"/>.</summary>
    public static Task<TestReplica> StatusAsync(string id, int status, List<string>? log = null) => StartAsync(id, ctx =>
    {
        ctx.Response.StatusCode = status;
        return ctx.Response.WriteAsync($"{id} says {status}", ctx.RequestAborted);
    }, log);

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await _app.StopAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync();
    }
}

/// <summary>A loopback address where nothing listens: connections are refused.</summary>
public static class DeadAddress
{
    public static Uri Next() => new($"http://127.0.0.1:{Shoal.Testing.FreePort.Next()}");
}
