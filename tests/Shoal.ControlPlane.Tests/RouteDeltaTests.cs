using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.ControlPlane.Edges;
using Shoal.Core.Routing;
using Shoal.Edge;
using Shoal.Edge.Routing;
using Shoal.Server;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Route deltas between a real server and a real standalone edge: the first table comes whole,
/// replica changes come as deltas, a gap makes the edge ask for the whole table again, and an edge
/// that does not ask for deltas keeps getting whole tables.
/// </summary>
public sealed class RouteDeltaTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("shoal-deltas");
    private LoopbackReplica _replica = null!;

    public async Task InitializeAsync() => _replica = await LoopbackReplica.StartAsync(ctx => ctx.Response.WriteAsync("ok"));

    public async Task DisposeAsync()
    {
        await _replica.DisposeAsync();
        _dir.Dispose();
    }

    private Task<ShoalServer> StartServerAsync() => ShoalServer.StartAsync(
        new ServerOptions { Listen = "127.0.0.1:0", NoEdge = true, DataDir = _dir.Path, LogLevel = LogLevel.Warning, AllowLoopbackNodes = true, AllowSimulatedGpus = true },
        logging: l => l.SetMinimumLevel(LogLevel.Warning));

    private static Task<EdgeServer> StartEdgeAsync(ShoalServer server, bool deltas = true) => EdgeServer.StartAsync(
        new EdgeServerOptions
        {
            Server = server.ApiAddress.ToString(),
            Key = File.ReadAllText(server.EdgeKeyFile!),
            Edge = new EdgeOptions { Listen = "127.0.0.1:0" },
            LogLevel = LogLevel.Warning,
            RouteDeltas = deltas,
        },
        logging: l => l.SetMinimumLevel(LogLevel.Warning));

    [Fact]
    public async Task A_replica_change_reaches_the_edge_as_a_delta_and_a_gap_brings_the_whole_table_again()
    {
        await using var server = await StartServerAsync();
        await using var edge = await StartEdgeAsync(server);
        await edge.Control.FirstTable.WaitAsync(TimeSpan.FromSeconds(10));
        var gateway = server.Services.GetRequiredService<EdgeGateway>();
        var edgeRoutes = (RouteTableHolder)edge.Services.GetRequiredService<IRouteTableSource>();
        var serverRoutes = server.Services.GetRequiredService<RouteTableHolder>();
        Assert.Equal(1, edge.Control.TablesReceived);

        await using var node = await ReadyNode.StartAsync(server, _replica.Port);
        await Eventually.UntilAsync(() => Destinations(edgeRoutes).Length == 1, what: "the ready replica in the edge's table");
        Assert.Equal(1, edge.Control.TablesReceived);
        Assert.True(edge.Control.DeltasReceived > 0);
        Assert.True(gateway.RouteDeltasSent > 0);
        Assert.Equal(Canonical(serverRoutes.Current), Canonical(edgeRoutes.Current));

        // A load figure alone goes as a delta too (batched, well within the wait).
        var deltas = edge.Control.DeltasReceived;
        await node.HeartbeatAsync(healthy: true, waiting: 7);
        await Eventually.UntilAsync(() => Destinations(edgeRoutes) is [{ Waiting: 7 }], what: "the load figure in the edge's table");
        Assert.True(edge.Control.DeltasReceived > deltas);
        Assert.Equal(1, edge.Control.TablesReceived);

        // A gap: the edge holds a version the server never based a delta on. The next change does not
        // fit; the edge asks for the whole table and ends up with the server's table.
        edgeRoutes.Update(edgeRoutes.Current with { Version = -1 });
        await node.HeartbeatAsync(healthy: false, waiting: 0);
        await Eventually.UntilAsync(() => edge.Control.TablesReceived == 2 && Destinations(edgeRoutes).Length == 0, what: "the whole table after the resync");
        Assert.Equal(1, edge.Control.ResyncsRequested);
        Assert.Equal(1, gateway.ResyncsRequested);
        Assert.Equal(Canonical(serverRoutes.Current), Canonical(edgeRoutes.Current));

        // Deltas resume on the fresh table.
        deltas = edge.Control.DeltasReceived;
        await node.HeartbeatAsync(healthy: true, waiting: 0);
        await Eventually.UntilAsync(() => Destinations(edgeRoutes).Length == 1, what: "the replica back as a delta");
        Assert.True(edge.Control.DeltasReceived > deltas);
        Assert.Equal(2, edge.Control.TablesReceived);
        Assert.Equal(1, edge.Control.ResyncsRequested);
        using var client = new HttpClient { BaseAddress = edge.Address };
        Assert.Equal("ok", await (await Eventually.GetAsync(() => client.GetAsync("/c/demo/"), r => r.IsSuccessStatusCode, what: "routed")).Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task An_edge_that_does_not_ask_for_deltas_gets_whole_tables()
    {
        await using var server = await StartServerAsync();
        await using var edge = await StartEdgeAsync(server, deltas: false);
        await edge.Control.FirstTable.WaitAsync(TimeSpan.FromSeconds(10));
        var edgeRoutes = edge.Services.GetRequiredService<IRouteTableSource>();

        await using var node = await ReadyNode.StartAsync(server, _replica.Port);
        await Eventually.UntilAsync(() => Destinations(edgeRoutes).Length == 1, what: "the ready replica in the edge's table");
        Assert.True(edge.Control.TablesReceived > 1);
        Assert.Equal(0, edge.Control.DeltasReceived);
        Assert.Equal(0, server.Services.GetRequiredService<EdgeGateway>().RouteDeltasSent);
    }

    [Fact]
    public async Task The_server_ignores_an_unreadable_request_and_answers_a_resync_with_the_whole_table()
    {
        await using var server = await StartServerAsync();
        using var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", "Bearer " + (await File.ReadAllTextAsync(server.EdgeKeyFile!)).Trim());
        ws.Options.SetRequestHeader(EdgeProtocol.FeaturesHeader, "something-else, " + EdgeProtocol.RouteDeltasFeature);
        await ws.ConnectAsync(Edge.Control.EdgeControlClient.ConnectUri(server.ApiAddress.ToString()), CancellationToken.None);
        var first = await ReceiveRoutesAsync(ws);

        await ws.SendAsync(Encoding.UTF8.GetBytes("{\"type\":\"no-such-request\"}"), WebSocketMessageType.Text, true, CancellationToken.None);
        await ws.SendAsync(Encoding.UTF8.GetBytes("not json"), WebSocketMessageType.Text, true, CancellationToken.None);
        await ws.SendAsync(JsonSerializer.SerializeToUtf8Bytes<EdgeRequest>(new ResyncRequest { Version = first.Version, Reason = "test" }, ShoalJsonContext.Default.EdgeRequest),
            WebSocketMessageType.Text, true, CancellationToken.None);
        var again = await ReceiveRoutesAsync(ws);
        Assert.True(again.Version >= first.Version);
        Assert.Equal(WebSocketState.Open, ws.State);
        Assert.Equal(1, server.Services.GetRequiredService<EdgeGateway>().ResyncsRequested);
    }

    private static async Task<RouteTable> ReceiveRoutesAsync(ClientWebSocket ws)
    {
        var buffer = new byte[1 << 20];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var count = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                result = await ws.ReceiveAsync(buffer.AsMemory(count), cts.Token);
                count += result.Count;
            }
            while (!result.EndOfMessage);
            if (JsonSerializer.Deserialize(buffer.AsSpan(0, count), ShoalJsonContext.Default.EdgeMessage) is RoutesMessage routes) return routes.Table;
        }
    }

    private static RouteDestination[] Destinations(IRouteTableSource routes) =>
        routes.Current.Clusters.TryGetValue("demo", out var c) ? c.Destinations : [];

    /// <summary>The table's content as JSON, clusters in name order, without the version.</summary>
    private static string Canonical(RouteTable table) => JsonSerializer.Serialize(
        table with { Version = 0, Clusters = table.Clusters.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(StringComparer.Ordinal) },
        ShoalJsonContext.Default.RouteTable);

    /// <summary>
    /// A direct-mode node (a protocol peer) running one replica of a public cluster <c>demo</c> at a
    /// loopback port; it repeats its last heartbeat every second, so a slow machine never loses it.
    /// </summary>
    private sealed class ReadyNode : IAsyncDisposable
    {
        private readonly WireAgent _agent;
        private readonly string _replicaId;
        private readonly long _revision;
        private readonly int _port;
        private readonly SemaphoreSlim _send = new(1, 1);
        private readonly CancellationTokenSource _stop = new();
        private HeartbeatMessage? _last;
        private Task _repeat = Task.CompletedTask;

        private ReadyNode(WireAgent agent, string replicaId, long revision, int port) => (_agent, _replicaId, _revision, _port) = (agent, replicaId, revision, port);

        public static async Task<ReadyNode> StartAsync(ShoalServer server, int port)
        {
            using var api = server.ApiClient();
            var response = await api.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 1, TtlSeconds = 600 }, ShoalJsonContext.Default.CreateTokenRequest);
            response.EnsureSuccessStatusCode();
            var token = (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
            var agentUri = new Uri(server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + AgentProtocol.ConnectPath);
            var (agent, status) = await WireAgent.RegisterAsync(agentUri, token, "node-d");
            Assert.True(agent is not null, $"registration refused ({status})");
            await agent.SendAsync(WireAgent.Hello("node-d", ("rtx-4090", 1)));
            await agent.ReceiveAsync<WelcomeMessage>();
            await agent.ReceiveAsync<AssignmentsMessage>();
            (await api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "demo", Public = true, Image = "shoal/sim", Gpu = "rtx-4090" },
                ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
            var node = new ReadyNode(agent, Assert.Single(assigned.Replicas).ReplicaId, assigned.Revision, port);
            await node.HeartbeatAsync(healthy: true, waiting: 0);
            node._repeat = node.RepeatAsync();
            return node;
        }

        public async Task HeartbeatAsync(bool healthy, double waiting)
        {
            _last = new HeartbeatMessage
            {
                AppliedRevision = _revision,
                Replicas = [new ReplicaReport { ReplicaId = _replicaId, State = ReplicaState.Ready, Healthy = healthy, HostPort = _port, Load = new ReplicaLoad { Waiting = waiting } }],
            };
            await SendLastAsync();
        }

        private async Task SendLastAsync()
        {
            await _send.WaitAsync();
            try
            {
                await _agent.SendAsync(_last!);
            }
            finally
            {
                _send.Release();
            }
        }

        private async Task RepeatAsync()
        {
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
            try
            {
                while (await timer.WaitForNextTickAsync(_stop.Token)) await SendLastAsync();
            }
            catch (Exception e) when (e is OperationCanceledException or WebSocketException or ObjectDisposedException)
            {
                // Stopped, or the server went away first.
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _repeat;
            await _agent.DisposeAsync();
            _send.Dispose();
            _stop.Dispose();
        }
    }
}
