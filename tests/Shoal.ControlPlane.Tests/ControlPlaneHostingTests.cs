using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.ControlPlane.Sealing;
using Shoal.Core.Routing;
using Shoal.Store;

namespace Shoal.ControlPlane.Tests;

/// <summary>The control plane hosted on its own (AddShoalControlPlane, MapShoalControlPlane): no edge, no Shoal.Server.</summary>
public sealed class ControlPlaneHostingTests
{
    [Fact]
    public async Task A_plain_web_application_hosts_the_control_plane_without_an_edge()
    {
        using var dir = new TempDirectory("shoal-cph");
        var options = new ServerOptions { Listen = "127.0.0.1:0", DataDir = dir.Path, NoEdge = true, LogLevel = LogLevel.Warning };
        var secrets = SecretsKey.Load(options);
        await using var store = StoreFactory.Open(options.Database, options.DataDir, secrets.Box);
        await store.MigrateAsync();

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddShoalControlPlane(options, store, secrets);
        await using var app = builder.Build();
        app.MapShoalControlPlane();
        await app.LoadShoalControlPlaneAsync();
        await app.StartAsync();
        try
        {
            var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            using var anonymous = new HttpClient { BaseAddress = address };
            Assert.Equal("ok", await anonymous.GetStringAsync(new Uri("/healthz", UriKind.Relative)));
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync(new Uri("/v1/clusters", UriKind.Relative))).StatusCode);

            using var http = new HttpClient { BaseAddress = address }.WithKey(await ApiKeys.ReadOperatorKeyAsync(dir.Path));
            var created = await http.PostAsync(new Uri("/v1/clusters", UriKind.Relative), System.Net.Http.Json.JsonContent.Create(
                new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090" }, ShoalJsonContext.Default.CreateClusterRequest));
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);

            // The route table the control loops write is the one singleton an edge composed beside it would read.
            var routes = app.Services.GetRequiredService<RouteTableHolder>();
            await Eventually.UntilAsync(() => routes.Current.Clusters.ContainsKey("demo"), what: "demo in the route table");
        }
        finally
        {
            await app.StopAsync();
        }
    }
}
