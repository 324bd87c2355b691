using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Tests;

/// <summary>The in-process edge: routing by path prefix and host, 404 and 503 + Retry-After.</summary>
public sealed class EdgeRoutingTests : IAsyncLifetime
{
    private TestServer _server = null!;
    private LoopbackReplica _replica = null!;
    private int _replicaPort;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        // A real HTTP server on loopback standing in for a replica's port.
        _replica = await LoopbackReplica.StartAsync(ctx => ctx.Response.WriteAsync($"path={ctx.Request.Path}{ctx.Request.QueryString}"));
        _replicaPort = _replica.Port;
    }

    public async Task DisposeAsync()
    {
        await _replica.DisposeAsync();
        await _server.DisposeAsync();
    }

    private HttpClient Edge() => new() { BaseAddress = _server.Server.EdgeAddress };

    [Fact]
    public async Task Unknown_cluster_is_404_and_a_cluster_without_ready_replicas_is_503_with_retry_after()
    {
        using var edge = Edge();
        var unknown = await edge.GetAsync("/c/nope/v1/models");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal(ErrorCodes.NotFound, (await unknown.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Code);

        // Queue timeout 0: no holding, so the 503 comes at once.
        var created = await _server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Public = true, Image = "shoal/sim", Gpu = "rtx-4090", Routing = BalancingPolicy.RoundRobin, QueueTimeoutSeconds = 0 },
            ShoalJsonContext.Default.CreateClusterRequest);
        created.EnsureSuccessStatusCode();
        var dto = (await created.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto))!;
        Assert.Equal((BalancingPolicy.RoundRobin, 0), (dto.Routing, dto.QueueTimeoutSeconds));
        var waiting = await Eventually.GetAsync(() => edge.GetAsync("/c/demo/v1/models"), r => r.StatusCode != HttpStatusCode.NotFound, what: "route table has demo");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, waiting.StatusCode);
        var route = _server.Server.Services.GetRequiredService<Shoal.Core.Routing.RouteTableHolder>().Current.Clusters["demo"];
        Assert.Equal((BalancingPolicy.RoundRobin, 0), (route.Balancing, route.QueueTimeoutMs));
        Assert.NotNull(waiting.Headers.RetryAfter);
        Assert.Equal(ErrorCodes.Unavailable, (await waiting.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Code);
    }

    [Fact]
    public async Task Requests_reach_a_ready_replica_by_path_prefix_and_by_host_with_the_prefix_stripped()
    {
        var token = await _server.CreateTokenAsync();
        var (agent, _) = await WireAgent.RegisterAsync(_server.AgentUri, token, "node-a");
        await using var _1 = agent;
        await agent!.SendAsync(WireAgent.Hello("node-a", ("rtx-4090", 1)));
        await agent.ReceiveAsync<AssignmentsMessage>();
        (await _server.Http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "demo", Public = true, Image = "shoal/sim", Gpu = "rtx-4090" },
            ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
        var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
        var replicaId = Assert.Single(assigned.Replicas).ReplicaId;
        await agent.SendAsync(new HeartbeatMessage
        {
            AppliedRevision = assigned.Revision,
            Replicas = [new ReplicaReport { ReplicaId = replicaId, State = ReplicaState.Ready, Healthy = true, HostPort = _replicaPort }],
        });

        using var edge = Edge();
        var byPath = await Eventually.GetAsync(() => edge.GetAsync("/c/demo/v1/models?x=1"), r => r.IsSuccessStatusCode, what: "routable");
        Assert.Equal("path=/v1/models?x=1", await byPath.Content.ReadAsStringAsync());
        Assert.Equal(replicaId, byPath.Headers.GetValues("x-shoal-replica").Single());

        using var byHost = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        byHost.Headers.Host = $"demo.localhost:{_server.Server.EdgeAddress!.Port}";
        var hostResponse = await edge.SendAsync(byHost);
        Assert.Equal(HttpStatusCode.OK, hostResponse.StatusCode);
        Assert.Equal("path=/v1/models", await hostResponse.Content.ReadAsStringAsync());
    }
}
