using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.ControlPlane.Edges;
using Shoal.Edge;
using Shoal.Edge.Control;
using Shoal.Server;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// <c>shoal edge</c> as its own host: it takes the route table from the server's stream with the
/// edge key, serves from the last table while the server is away, and picks up again after it returns.
/// </summary>
public sealed class StandaloneEdgeTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("shoal-edge");
    private readonly int _apiPort = FreePort.Next();
    private LoopbackReplica _replica = null!;
    private int _replicaPort;

    public async Task InitializeAsync()
    {
        _replica = await LoopbackReplica.StartAsync(ctx => ctx.Response.WriteAsync($"path={ctx.Request.Path}"));
        _replicaPort = _replica.Port;
    }

    public async Task DisposeAsync()
    {
        await _replica.DisposeAsync();
        _dir.Dispose();
    }

    private Task<ShoalServer> StartServerAsync() => ShoalServer.StartAsync(
        new ServerOptions { Listen = $"127.0.0.1:{_apiPort}", NoEdge = true, DataDir = _dir.Path, LogLevel = LogLevel.Warning, AllowLoopbackNodes = true, AllowSimulatedGpus = true },
        logging: l => l.SetMinimumLevel(LogLevel.Warning));

    private static Task<EdgeServer> StartEdgeAsync(ShoalServer server, string? key = null) => EdgeServer.StartAsync(
        new EdgeServerOptions
        {
            Server = server.ApiAddress.ToString(),
            Key = key ?? File.ReadAllText(server.EdgeKeyFile!),
            Edge = new EdgeOptions { Listen = "127.0.0.1:0" },
            LogLevel = LogLevel.Warning,
        },
        logging: l => l.SetMinimumLevel(LogLevel.Warning));

    [Fact]
    public async Task A_wrong_edge_key_is_refused_with_a_clear_error()
    {
        await using var server = await StartServerAsync();
        await using var edge = await StartEdgeAsync(server, key: "shoal_ek_wrong");
        var error = await Assert.ThrowsAsync<EdgeConfigurationException>(() => edge.ControlLink.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("refused the edge key", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, server.Services.GetRequiredService<EdgeGateway>().ConnectedCount);
    }

    [Fact]
    public async Task The_edge_routes_from_the_streamed_table_keeps_serving_while_the_server_is_away_and_resumes_after()
    {
        var server = await StartServerAsync();
        EdgeServer? edge = null;
        try
        {
            edge = await StartEdgeAsync(server);
            await edge.Control.FirstTable.WaitAsync(TimeSpan.FromSeconds(10));
            // The edge advertised itself: agents are told to open tunnels to it.
            var directory = server.Services.GetRequiredService<EdgeDirectory>();
            await Eventually.UntilAsync(() => directory.Urls.Contains(edge.Address.ToString().TrimEnd('/')), what: "edge registered");

            // A direct-mode node with a ready replica; the edge learns it from the stream.
            var token = await CreateTokenAsync(server);
            var agentUri = new Uri(server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + AgentProtocol.ConnectPath);
            var (agent, _) = await WireAgent.RegisterAsync(agentUri, token, "node-d");
            await using (agent)
            {
                await agent!.SendAsync(WireAgent.Hello("node-d", ("rtx-4090", 1)));
                var welcome = await agent.ReceiveAsync<WelcomeMessage>();
                Assert.Contains(edge.Address.ToString().TrimEnd('/'), welcome.Edges);
                await agent.ReceiveAsync<AssignmentsMessage>();
                using var api = server.ApiClient();
                (await api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "demo", Public = true, Image = "shoal/sim", Gpu = "rtx-4090" },
                    ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
                var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
                await agent.SendAsync(new HeartbeatMessage
                {
                    AppliedRevision = assigned.Revision,
                    Replicas = [new ReplicaReport { ReplicaId = Assert.Single(assigned.Replicas).ReplicaId, State = ReplicaState.Ready, Healthy = true, HostPort = _replicaPort }],
                });

                using var client = new HttpClient { BaseAddress = edge.Address };
                var routed = await Eventually.GetAsync(() => client.GetAsync("/c/demo/v1/models"), r => r.IsSuccessStatusCode, what: "routed through the standalone edge");
                Assert.Equal("path=/v1/models", await routed.Content.ReadAsStringAsync());

                // The server goes away: the edge keeps the last table and keeps serving.
                var tables = edge.Control.TablesReceived;
                await server.DisposeAsync();
                await Eventually.UntilAsync(() => !edge.Control.Connected, what: "edge noticed the server is gone");
                for (var i = 0; i < 5; i++)
                {
                    var response = await client.GetAsync($"/c/demo/v1/models/{i}");
                    Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                }

                // It comes back on the same address: the edge reconnects and takes a fresh table.
                server = await StartServerAsync();
                await Eventually.UntilAsync(() => edge.Control.Connected && edge.Control.TablesReceived > tables, TimeSpan.FromSeconds(20), what: "edge reconnected");
            }
        }
        finally
        {
            if (edge is not null) await edge.DisposeAsync();
            await server.DisposeAsync();
        }
    }

    private static async Task<string> CreateTokenAsync(ShoalServer server)
    {
        using var api = server.ApiClient();
        var response = await api.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 1, TtlSeconds = 600 }, ShoalJsonContext.Default.CreateTokenRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
    }
}
