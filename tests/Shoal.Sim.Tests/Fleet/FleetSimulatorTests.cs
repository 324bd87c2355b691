using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text.Json;
using Shoal.Contracts;
using Shoal.Sim.Fleet;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Sim.Tests.Fleet;

/// <summary>
/// The fleet simulator against a real <c>shoal server</c> process: 50 simulated agents register,
/// a cluster of 20 replicas becomes ready and is served through the server's edge (the replicas
/// report a real simulator as their port), and 5 nodes whose sockets the fleet closes, and only
/// those, are marked disconnected.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
public sealed class FleetSimulatorTests(ITestOutputHelper output)
{
    private const int Nodes = 50;
    private const int Replicas = 20;
    private const string Cluster = "fleet-demo";

    [Fact]
    public async Task Fifty_nodes_run_twenty_ready_routable_replicas_and_exactly_the_killed_five_disconnect()
    {
        using var dir = new TempDirectory("shoal-fleet");
        var apiPort = FreePort.Next();
        var edgePort = FreePort.Next();
        await using var backend = await SimHost.StartAsync();
        await using var server = ShoalProcess.Start("server",
        [
            "server", "--listen", $"127.0.0.1:{apiPort}", "--edge-listen", $"127.0.0.1:{edgePort}", "--data-dir", dir.Combine("server"),
            "--log-level", "Warning", "--allow-simulated-gpus", "--allow-loopback-nodes",
        ]);
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}"), Timeout = TimeSpan.FromSeconds(30) };
            await Eventually.GetAsync(async () =>
            {
                try
                {
                    return (await http.GetAsync("/healthz")).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, ok => ok, TimeSpan.FromSeconds(30), "server up");
            http.WithKey(await ApiKeys.ReadOperatorKeyAsync(dir.Combine("server")));
            var token = await CreateTokenAsync(http);

            await using var fleet = new FleetSimulator(new FleetOptions
            {
                Server = http.BaseAddress!.ToString(),
                Nodes = Nodes,
                Token = token,
                CredentialsFile = dir.Combine("fleet.jsonl"),
                StartDelay = TimeSpan.FromMilliseconds(200),
                ReplicaPort = backend.Client.BaseAddress!.Port,
            });
            fleet.Start();
            await fleet.WaitConnectedAsync(Nodes, TimeSpan.FromSeconds(20));
            var nodes = await NodesAsync(http);
            Assert.Equal(Nodes, nodes.Count(n => n.State == NodeState.Ready && n.Name.StartsWith("fleet-", StringComparison.Ordinal)));
            Assert.Equal(Nodes, File.ReadLines(dir.Combine("fleet.jsonl")).Count());

            var created = await http.PostAsJsonAsync("/v1/clusters",
                new CreateClusterRequest { Name = Cluster, Image = "shoal/sim", Gpu = "rtx-4090", Replicas = Replicas, Public = true },
                ShoalJsonContext.Default.CreateClusterRequest);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var status = await Eventually.GetAsync(
                async () => (await http.GetFromJsonAsync($"/v1/clusters/{Cluster}/status", ShoalJsonContext.Default.ClusterStatusDto))!,
                s => s.Cluster.ReadyReplicas == Replicas, TimeSpan.FromSeconds(20), "20 ready replicas");
            Assert.Equal(Replicas, status.Replicas.Select(r => r.NodeName).Distinct().Count());
            Assert.Equal(Replicas, fleet.Snapshot().ReplicasReady);

            // Routable: the route table edges get holds all 20, and the server's edge serves requests through them.
            var edgeKey = (await File.ReadAllTextAsync(dir.Combine("server", "edge.key"))).Trim();
            await Eventually.GetAsync(() => RoutedReplicasAsync(apiPort, edgeKey), n => n == Replicas, TimeSpan.FromSeconds(10), "20 replicas in the route table");
            using var edge = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{edgePort}"), Timeout = TimeSpan.FromSeconds(30) };
            for (var i = 0; i < 10; i++)
            {
                var models = await edge.GetAsync($"/c/{Cluster}/v1/models");
                Assert.Equal(HttpStatusCode.OK, models.StatusCode);
            }

            var killed = fleet.Kill(5);
            Assert.Equal(5, killed.Count);
            var killedIds = killed.Select(k => k.NodeId).Order(StringComparer.Ordinal).ToArray();
            nodes = await Eventually.GetAsync(() => NodesAsync(http), n => n.Count(x => x.State != NodeState.Ready) >= 5, TimeSpan.FromSeconds(10), "5 nodes disconnected");
            // A moment for a false loss to show, if there were one.
            await Task.Delay(TimeSpan.FromSeconds(1));
            nodes = await NodesAsync(http);
            Assert.Equal(killedIds, nodes.Where(n => n.State != NodeState.Ready).Select(n => n.Id).Order(StringComparer.Ordinal).ToArray());
            Assert.All(nodes.Where(n => killedIds.Contains(n.Id)), n => Assert.Equal(NodeState.Disconnected, n.State));
            Assert.All(nodes.Where(n => !killedIds.Contains(n.Id)), n => Assert.Equal(0, n.RecentDisconnects));
            var stats = fleet.Snapshot();
            Assert.Equal(Nodes - 5, stats.Connected);
            Assert.Equal(0, stats.SessionsLost);
            output.WriteLine(FleetSimulator.ToJson(stats));
        }
        catch
        {
            output.WriteLine(server.Output);
            throw;
        }
    }

    private static async Task<string> CreateTokenAsync(HttpClient http)
    {
        var response = await http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = Nodes, Direct = true }, ShoalJsonContext.Default.CreateTokenRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
    }

    private static async Task<NodeDto[]> NodesAsync(HttpClient http) =>
        (await http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!;

    /// <summary>Destinations of the cluster in the route table the server sends a standalone edge when it connects.</summary>
    private static async Task<int> RoutedReplicasAsync(int apiPort, string edgeKey)
    {
        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", "Bearer " + edgeKey);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{apiPort}{EdgeProtocol.ConnectPath}"), timeout.Token);
        var buffer = new byte[1024 * 1024];
        while (true)
        {
            var length = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                result = await ws.ReceiveAsync(buffer.AsMemory(length), timeout.Token);
                length += result.Count;
            }
            while (!result.EndOfMessage);
            if (result.MessageType == WebSocketMessageType.Close) return -1;
            if (JsonSerializer.Deserialize(buffer.AsSpan(0, length), ShoalJsonContext.Default.EdgeMessage) is RoutesMessage routes)
            {
                ws.Abort();
                return routes.Table.Clusters.TryGetValue(Cluster, out var c) ? c.Destinations.Length : 0;
            }
        }
    }
}
