using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.ControlPlane;
using Shoal.Core.Routing;
using Shoal.Edge;
using Shoal.Server;

namespace Shoal.Bench;

/// <summary>
/// Route propagation: a node reports its replica ready; how long until a standalone edge's route
/// table has it (server and edge in this process, talking over loopback WebSockets as in production).
/// </summary>
internal static class RoutesBench
{
    public static async Task RunAsync()
    {
        var dir = BenchTempDirs.Create("shoal-routes-bench-");
        try
        {
            await using var server = await ShoalServer.StartAsync(
                new ServerOptions { Listen = "127.0.0.1:0", NoEdge = true, DataDir = dir.FullName, LogLevel = LogLevel.Warning, AllowLoopbackNodes = true, AllowSimulatedGpus = true, StoppedByHost = true },
                logging: l => l.SetMinimumLevel(LogLevel.Warning));
            await using var edge = await EdgeServer.StartAsync(
                new EdgeServerOptions { Server = server.ApiAddress.ToString(), Key = await File.ReadAllTextAsync(server.EdgeKeyFile!), Edge = new EdgeOptions { Listen = "127.0.0.1:0" }, LogLevel = LogLevel.Warning },
                logging: l => l.SetMinimumLevel(LogLevel.Warning));
            using var http = Shoal.Bench.BenchKeys.OperatorClient(server);
            await using var node = await ProxyBench.FakeNode.StartAsync(http, "node", "rtx-4090", tunnel: false, port: 9);
            (await http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090" }, ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            await node.ReportReadyAsync();
            var routes = edge.Services.GetRequiredService<IRouteTableSource>();

            var samples = new List<double>();
            for (var i = 0; i < 52; i++)
            {
                await node.ReportAsync(ReplicaState.Starting);
                await WaitAsync(routes, ready: false);
                var sw = Stopwatch.StartNew();
                await node.ReportAsync(ReplicaState.Ready);
                await WaitAsync(routes, ready: true);
                if (i >= 2) samples.Add(sw.Elapsed.TotalMilliseconds);
            }
            samples.Sort();
            Console.WriteLine("## Route propagation: replica reported ready -> in a standalone edge's route table");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"median {samples[samples.Count / 2]:F1} ms, p99 {samples[(int)Math.Ceiling(0.99 * samples.Count) - 1]:F1} ms, max {samples[^1]:F1} ms ({samples.Count} runs)"));
        }
        finally
        {
            BenchTempDirs.Remove(dir);
        }
    }

    private static async Task WaitAsync(IRouteTableSource routes, bool ready)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var token = routes.GetChangeToken();
            var has = routes.Current.Clusters.TryGetValue("demo", out var c) && c.Destinations.Length > 0;
            if (has == ready) return;
            if (deadline.Elapsed > TimeSpan.FromSeconds(10)) throw new TimeoutException("route never changed");
            var changed = new TaskCompletionSource();
            using (token.RegisterChangeCallback(static s => ((TaskCompletionSource)s!).TrySetResult(), changed))
            {
                await changed.Task.WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }
}
