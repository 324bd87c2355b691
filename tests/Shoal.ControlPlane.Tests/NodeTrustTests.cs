using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using Microsoft.Extensions.DependencyInjection;
using Shoal.Contracts;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Rogue nodes against a real server and its edge, over real sockets: a node says where it is and
/// what it has, the operator decides what it gets. Each test plays the node over the agent protocol,
/// lying the way the attacks did.
/// </summary>
public sealed class NodeTrustTests : IAsyncDisposable
{
    private TestServer? _server;

    public async ValueTask DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
    }

    private async Task<TestServer> StartAsync(bool allowLoopback, bool allowSimulated = true)
    {
        _server = await TestServer.StartAsync(configure: o =>
        {
            o.AllowLoopbackNodes = allowLoopback;
            o.AllowSimulatedGpus = allowSimulated;
        });
        return _server;
    }

    private static async Task<WireAgent> JoinAsync(TestServer server, string token, HelloMessage hello)
    {
        var (agent, status) = await WireAgent.RegisterAsync(server.AgentUri, token, hello.NodeName);
        Assert.Equal(101, status);
        await agent!.SendAsync(hello);
        return agent;
    }

    private static async Task CreateClusterAsync(TestServer server, CreateClusterRequest request) =>
        (await server.Http.PostAsJsonAsync("/v1/clusters", request, ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();

    private static async Task<ClusterEventDto[]> EventsAsync(TestServer server, string cluster) =>
        (await server.Http.GetFromJsonAsync($"/v1/clusters/{cluster}/events", ShoalJsonContext.Default.ClusterEventDtoArray))!;

    private static async Task<NodeDto> NodeAsync(TestServer server, string name) =>
        (await server.Http.GetFromJsonAsync($"/v1/nodes/{name}", ShoalJsonContext.Default.NodeDto))!;

    [Theory]
    [InlineData("127.0.0.1", "loopback")]
    [InlineData("::1", "loopback")]
    [InlineData("0.0.0.0", "loopback")]
    [InlineData("169.254.169.254", "link-local")]
    [InlineData("fe80::1", "link-local")]
    [InlineData("10.9.8.7", "not in the server's node networks")]
    [InlineData("metadata.internal", "not an IP address")]
    public async Task A_node_reporting_a_refused_address_gets_no_replica_and_the_pending_event_says_why(string address, string why)
    {
        var server = await StartAsync(allowLoopback: false);
        // The operator allowed direct mode for this node: the address is still checked.
        var token = await server.CreateTokenAsync(new CreateTokenRequest { Direct = true });
        await using var rogue = await JoinAsync(server, token, WireAgent.Hello("rogue", ("rtx-4090", 8)) with { Address = address, Tunnel = false });
        Assert.Empty((await rogue.ReceiveAsync<AssignmentsMessage>()).Replicas);

        var node = await NodeAsync(server, "rogue");
        Assert.Contains(why, node.AddressRefused, StringComparison.Ordinal);
        Assert.False(node.Tunnel);

        await CreateClusterAsync(server, new CreateClusterRequest { Name = "victim", Public = true, Image = "shoal/sim", Gpu = "rtx-4090", QueueTimeoutSeconds = 0 });
        var events = await Eventually.GetAsync(() => EventsAsync(server, "victim"), e => e.Any(x => x.Type == ClusterEventTypes.Pending), what: "pending event");
        var pending = events.First(x => x.Type == ClusterEventTypes.Pending);
        Assert.Contains("rogue", pending.Message, StringComparison.Ordinal);
        Assert.Contains(why, pending.Message, StringComparison.Ordinal);

        // No assignment came, and the edge has nowhere to send the victim's traffic.
        await rogue.SendAsync(new HeartbeatMessage());
        using var edge = new HttpClient { BaseAddress = server.Server.EdgeAddress };
        var response = await edge.PostAsync("/c/victim/v1/tokens", JsonContent.Create(new CreateTokenRequest(), ShoalJsonContext.Default.CreateTokenRequest));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var cluster = await server.Http.GetFromJsonAsync("/v1/clusters/victim", ShoalJsonContext.Default.ClusterDto);
        Assert.Equal(0, cluster!.ReadyReplicas);
    }

    [Fact]
    public async Task Direct_mode_needs_the_operators_permission_even_inside_the_node_networks()
    {
        _server = await TestServer.StartAsync(configure: o =>
        {
            o.AllowLoopbackNodes = false;
            o.NodeNetworks = ["10.0.0.0/8"];
        });
        var plain = await _server.CreateTokenAsync(new CreateTokenRequest());
        await using var a = await JoinAsync(_server, plain, WireAgent.Hello("plain", ("rtx-4090", 1)) with { Address = "10.1.2.3" });
        await a.ReceiveAsync<AssignmentsMessage>();
        Assert.Contains("direct mode is not allowed", (await NodeAsync(_server, "plain")).AddressRefused, StringComparison.Ordinal);

        var direct = await _server.CreateTokenAsync(new CreateTokenRequest { Direct = true });
        await using var b = await JoinAsync(_server, direct, WireAgent.Hello("direct", ("rtx-4090", 1)) with { Address = "10.1.2.3" });
        await b.ReceiveAsync<AssignmentsMessage>();
        var node = await NodeAsync(_server, "direct");
        Assert.Null(node.AddressRefused);
        Assert.True(node.DirectAllowed);

        // Over tunnels the address does not matter: the node dials out.
        await using var c = await JoinAsync(_server, await _server.CreateTokenAsync(new CreateTokenRequest()),
            WireAgent.Hello("tunnelled", ("rtx-4090", 1)) with { Address = "127.0.0.1", Tunnel = true });
        await c.ReceiveAsync<AssignmentsMessage>();
        Assert.Null((await NodeAsync(_server, "tunnelled")).AddressRefused);
    }

    [Fact]
    public async Task A_replica_reported_ready_on_the_api_port_gets_no_traffic_and_an_event_says_why()
    {
        // Local use (as shoal dev runs): loopback nodes are allowed, the server's own ports still are not.
        var server = await StartAsync(allowLoopback: true);
        var token = await server.CreateTokenAsync();
        await using var rogue = await JoinAsync(server, token, WireAgent.Hello("rogue", ("rtx-4090", 1)) with { Address = "127.0.0.1", Tunnel = false });
        await rogue.ReceiveAsync<AssignmentsMessage>();
        await CreateClusterAsync(server, new CreateClusterRequest { Name = "victim", Public = true, Image = "shoal/sim", Gpu = "rtx-4090", QueueTimeoutSeconds = 0 });
        var assigned = await rogue.ReceiveAsync<AssignmentsMessage>();
        var replica = Assert.Single(assigned.Replicas);
        var store = server.Server.Services.GetRequiredService<IShoalStore>();
        var tokensBefore = (await store.ListTokensAsync()).Count;

        await rogue.SendAsync(new HeartbeatMessage
        {
            AppliedRevision = assigned.Revision,
            Replicas = [new ReplicaReport { ReplicaId = replica.ReplicaId, State = ReplicaState.Ready, Healthy = true, HostPort = server.Server.ApiAddress.Port }],
        });

        var events = await Eventually.GetAsync(() => EventsAsync(server, "victim"), e => e.Any(x => x.Type == ClusterEventTypes.Unroutable), what: "unroutable event");
        var unroutable = events.Single(x => x.Type == ClusterEventTypes.Unroutable);
        Assert.Contains($"port {server.Server.ApiAddress.Port}", unroutable.Message, StringComparison.Ordinal);
        Assert.Contains("server's own", unroutable.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(events, x => x.Type == ClusterEventTypes.Ready);

        using var edge = new HttpClient { BaseAddress = server.Server.EdgeAddress };
        var response = await edge.PostAsync("/c/victim/v1/tokens", JsonContent.Create(new CreateTokenRequest(), ShoalJsonContext.Default.CreateTokenRequest));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(tokensBefore, (await store.ListTokensAsync()).Count);
        Assert.Equal(0, (await server.Http.GetFromJsonAsync("/v1/clusters/victim", ShoalJsonContext.Default.ClusterDto))!.ReadyReplicas);
    }

    [Fact]
    public async Task A_pending_node_gets_no_assignment_until_approved()
    {
        var server = await StartAsync(allowLoopback: true);
        var token = await server.CreateTokenAsync(new CreateTokenRequest { Approve = TokenApproval.Manual });
        await using var node = await JoinAsync(server, token, WireAgent.Hello("waiting", ("rtx-4090", 1)));
        Assert.Empty((await node.ReceiveAsync<AssignmentsMessage>()).Replicas);
        Assert.True((await NodeAsync(server, "waiting")).Pending);

        await CreateClusterAsync(server, new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090" });
        var events = await Eventually.GetAsync(() => EventsAsync(server, "demo"), e => e.Any(x => x.Type == ClusterEventTypes.Pending), what: "pending event");
        Assert.Contains("waiting waits for approval", events.First(x => x.Type == ClusterEventTypes.Pending).Message, StringComparison.Ordinal);
        // Heartbeats go on; nothing is assigned meanwhile.
        await node.SendAsync(new HeartbeatMessage());
        Assert.Equal(0, (await NodeAsync(server, "waiting")).Replicas);

        var approved = await server.Http.PostAsync("/v1/nodes/waiting/approve", null);
        approved.EnsureSuccessStatusCode();
        Assert.False((await approved.Content.ReadFromJsonAsync(ShoalJsonContext.Default.NodeDto))!.Pending);
        var assigned = await node.ReceiveAsync<AssignmentsMessage>();
        Assert.Single(assigned.Replicas);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Http.PostAsync("/v1/nodes/nope/approve", null)).StatusCode);
    }

    [Fact]
    public async Task A_node_without_the_trusted_label_never_receives_a_secret()
    {
        var server = await StartAsync(allowLoopback: true);
        var plainToken = await server.CreateTokenAsync(new CreateTokenRequest());
        await using var plain = await JoinAsync(server, plainToken, WireAgent.Hello("plain", ("rtx-4090", 8)));
        await plain.ReceiveAsync<AssignmentsMessage>();

        await CreateClusterAsync(server, new CreateClusterRequest
        {
            Name = "private",
            Image = "ghcr.io/org/model:1",
            Gpu = "rtx-4090",
            Replicas = 2,
            RegistryAuth = new RegistryCredentials { Username = "bot", Password = "s3cret-pass" },
        });
        var cluster = await server.Http.GetFromJsonAsync("/v1/clusters/private", ShoalJsonContext.Default.ClusterDto);
        Assert.Equal(["trusted"], cluster!.NodeLabels);
        var events = await Eventually.GetAsync(() => EventsAsync(server, "private"), e => e.Any(x => x.Type == ClusterEventTypes.Pending), what: "pending event");
        Assert.Contains("label trusted", events.First(x => x.Type == ClusterEventTypes.Pending).Message, StringComparison.Ordinal);

        var trustedToken = await server.CreateTokenAsync(new CreateTokenRequest { Labels = ["trusted"] });
        await using var trusted = await JoinAsync(server, trustedToken, WireAgent.Hello("trusted-node", ("rtx-4090", 2)));
        await trusted.ReceiveAsync<AssignmentsMessage>();
        var assigned = await Eventually.GetAsync(() => trusted.ReceiveAsync<AssignmentsMessage>(), a => a.Replicas.Length == 2, what: "both replicas on the trusted node");
        Assert.All(assigned.Replicas, r => Assert.Equal("s3cret-pass", r.RegistryAuth?.Password));
        Assert.Equal(["trusted"], (await NodeAsync(server, "trusted-node")).Labels);

        // The plain node, with four times the GPUs, got none of them.
        Assert.Equal(0, (await NodeAsync(server, "plain")).Replicas);
    }

    [Fact]
    public async Task A_node_reporting_more_gpus_than_its_token_allows_is_refused()
    {
        var server = await StartAsync(allowLoopback: true);
        var token = await server.CreateTokenAsync(new CreateTokenRequest { MaxGpus = 2 });
        await using var liar = await JoinAsync(server, token, WireAgent.Hello("liar", ("rtx-4090", 8)));
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, await liar.WaitForCloseAsync());
        Assert.Contains("allows at most 2", liar.Socket.CloseStatusDescription, StringComparison.Ordinal);
        var node = await NodeAsync(server, "liar");
        Assert.Equal(2, node.MaxGpus);
        Assert.Empty(node.Hardware.Gpus);
    }

    [Fact]
    public async Task Simulated_gpus_are_refused_unless_the_server_allows_them()
    {
        var server = await StartAsync(allowLoopback: true, allowSimulated: false);
        var token = await server.CreateTokenAsync();
        await using var sim = await JoinAsync(server, token, WireAgent.Hello("sim", ("rtx-4090", 1)));
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, await sim.WaitForCloseAsync());
        Assert.Contains("--allow-simulated-gpus", sim.Socket.CloseStatusDescription, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"approve\":\"sometimes\"}", "approve must be")]
    [InlineData("{\"maxGpus\":0}", "maxGpus must be between 1 and 64")]
    [InlineData("{\"labels\":[\"Not_A_Label\"]}", "is not a DNS label")]
    public async Task Bad_token_policy_is_400(string body, string expected)
    {
        var server = await StartAsync(allowLoopback: true);
        var response = await server.Http.PostAsync("/v1/tokens", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(expected, (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Message, StringComparison.Ordinal);
        var store = server.Server.Services.GetRequiredService<IShoalStore>();
        Assert.Empty(await store.ListTokensAsync());
    }
}
