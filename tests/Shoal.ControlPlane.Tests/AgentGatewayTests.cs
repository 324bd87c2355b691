using System.Net.Http.Json;
using System.Net.WebSockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Core.Routing;
using Shoal.Edge.Routing;

namespace Shoal.ControlPlane.Tests;

public sealed class AgentGatewayTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-11-23T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(_time);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private async Task<(WireAgent Agent, WelcomeMessage Welcome, AssignmentsMessage Assignments)> JoinAsync(string name, params (string, int)[] gpus)
    {
        var token = await _server.CreateTokenAsync();
        var (agent, status) = await WireAgent.RegisterAsync(_server.AgentUri, token, name);
        Assert.Equal(101, status);
        await agent!.SendAsync(WireAgent.Hello(name, gpus));
        var welcome = await agent.ReceiveAsync<WelcomeMessage>();
        var assignments = await agent.ReceiveAsync<AssignmentsMessage>();
        return (agent, welcome, assignments);
    }

    [Fact]
    public async Task Registration_gives_an_id_and_secret_once_and_the_node_is_listed_with_its_gpus()
    {
        var (agent, welcome, assignments) = await JoinAsync("node-a", ("rtx-4090", 2));
        await using var _ = agent;
        Assert.StartsWith("n-", welcome.NodeId, StringComparison.Ordinal);
        Assert.StartsWith("shoal_ns_", welcome.NodeSecret, StringComparison.Ordinal);
        Assert.Equal(2000, welcome.HeartbeatIntervalMs);
        Assert.Empty(assignments.Replicas);

        var nodes = await _server.Http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray);
        var node = Assert.Single(nodes!);
        Assert.Equal("node-a", node.Name);
        Assert.Equal(NodeState.Ready, node.State);
        Assert.Equal(2, node.Hardware.Gpus.Length);
        Assert.Equal(2, node.FreeGpus);

        // The returning node authenticates with id + secret and gets no secret again.
        await agent.DisposeAsync();
        var (again, status) = await WireAgent.ConnectAsync(_server.AgentUri, o =>
        {
            o.SetRequestHeader(AgentProtocol.NodeIdHeader, welcome.NodeId);
            o.SetRequestHeader(AgentProtocol.NodeSecretHeader, welcome.NodeSecret!);
        });
        Assert.Equal(101, status);
        await using var __ = again;
        await again!.SendAsync(WireAgent.Hello("node-a", ("rtx-4090", 2)));
        var second = await again.ReceiveAsync<WelcomeMessage>();
        Assert.Equal(welcome.NodeId, second.NodeId);
        Assert.Null(second.NodeSecret);
    }

    [Fact]
    public async Task Bad_reused_and_expired_tokens_and_wrong_secrets_are_refused_with_401()
    {
        var (_, bogus) = await WireAgent.RegisterAsync(_server.AgentUri, "shoal_pt_not-a-real-token");
        Assert.Equal(401, bogus);

        var (_, none) = await WireAgent.ConnectAsync(_server.AgentUri, _ => { });
        Assert.Equal(401, none);

        var once = await _server.CreateTokenAsync(uses: 1);
        var (first, ok) = await WireAgent.RegisterAsync(_server.AgentUri, once);
        Assert.Equal(101, ok);
        await first!.DisposeAsync();
        var (_, reused) = await WireAgent.RegisterAsync(_server.AgentUri, once);
        Assert.Equal(401, reused);

        var shortLived = await _server.CreateTokenAsync(ttlSeconds: 60);
        _time.Advance(TimeSpan.FromSeconds(61));
        var (_, expired) = await WireAgent.RegisterAsync(_server.AgentUri, shortLived);
        Assert.Equal(401, expired);

        var (_, wrongSecret) = await WireAgent.ConnectAsync(_server.AgentUri, o =>
        {
            o.SetRequestHeader(AgentProtocol.NodeIdHeader, "n-doesnotexist");
            o.SetRequestHeader(AgentProtocol.NodeSecretHeader, "shoal_ns_guess");
        });
        Assert.Equal(401, wrongSecret);

        // Only the one good registration made a node.
        var nodes = await _server.Http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray);
        Assert.Single(nodes!);
    }

    public static TheoryData<string, byte[]> BadMessages => new()
    {
        { "malformed json", "{\"type\":\"heartbeat\", \"replicas\": ["u8.ToArray() },
        { "unknown type", "{\"type\":\"format-disk\"}"u8.ToArray() },
        { "server-only type", "{\"type\":\"assignments\",\"revision\":1,\"replicas\":[]}"u8.ToArray() },
        { "oversized", new byte[AgentProtocol.MaxMessageBytes + 10] },
    };

    [Theory]
    [MemberData(nameof(BadMessages))]
    public async Task A_bad_message_closes_only_that_connection_with_policy_violation(string kind, byte[] payload)
    {
        var (bad, _, _) = await JoinAsync("bad-" + kind.Replace(' ', '-'), ("rtx-4090", 1));
        var (good, _, _) = await JoinAsync("good", ("rtx-4090", 1));
        await using var _1 = bad;
        await using var _2 = good;

        if (kind == "oversized")
        {
            Array.Fill(payload, (byte)' ');
        }
        await bad.SendRawAsync(payload);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, await bad.WaitForCloseAsync());

        // The server and the other agent carry on.
        await good.SendAsync(new HeartbeatMessage());
        var nodes = await Eventually.GetAsync(
            () => _server.Http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray),
            n => n!.Any(x => x.Name.StartsWith("bad", StringComparison.Ordinal) && x.State == NodeState.Disconnected), what: "bad node disconnected");
        Assert.Equal(NodeState.Ready, nodes!.Single(n => n.Name == "good").State);
    }

    [Fact]
    public async Task First_message_must_be_hello()
    {
        var token = await _server.CreateTokenAsync();
        var (agent, _) = await WireAgent.RegisterAsync(_server.AgentUri, token);
        await using var _1 = agent;
        await agent!.SendAsync(new HeartbeatMessage());
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, await agent.WaitForCloseAsync());
    }

    [Fact]
    public async Task A_deploy_sends_assignments_and_a_ready_report_makes_the_replica_routable()
    {
        var (agent, _, first) = await JoinAsync("node-a", ("rtx-4090", 1));
        await using var _1 = agent;
        var created = await _server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1, Env = new() { ["A"] = "1" } },
            ShoalJsonContext.Default.CreateClusterRequest);
        created.EnsureSuccessStatusCode();

        var assignments = await agent.ReceiveAsync<AssignmentsMessage>();
        Assert.True(assignments.Revision > first.Revision);
        var a = Assert.Single(assignments.Replicas);
        Assert.Equal("demo", a.Cluster);
        Assert.Equal("shoal/sim", a.Image);
        Assert.Equal([0], a.GpuIndexes);
        Assert.Equal("1", a.Env["A"]);

        await agent.SendAsync(new AckMessage { Revision = assignments.Revision });
        await agent.SendAsync(new HeartbeatMessage
        {
            AppliedRevision = assignments.Revision,
            Replicas = [new ReplicaReport { ReplicaId = a.ReplicaId, State = ReplicaState.Ready, Healthy = true, HostPort = 45678, StartedAt = _time.GetUtcNow(), ReadyAt = _time.GetUtcNow() }],
        });

        var routes = _server.Server.Services.GetRequiredService<RouteTableHolder>();
        await Eventually.GetAsync(() => Task.FromResult(routes.Current), t => t.Clusters.TryGetValue("demo", out var c) && c.Destinations.Length == 1, what: "route");
        var destination = routes.Current.Clusters["demo"].Destinations.Single();
        Assert.Equal("http://127.0.0.1:45678", destination.Address);
        Assert.Equal(a.ReplicaId, destination.ReplicaId);

        var status = await _server.Http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto);
        var replica = Assert.Single(status!.Replicas);
        Assert.Equal(ReplicaState.Ready, replica.State);
        Assert.Equal("node-a", replica.NodeName);
        Assert.NotNull(replica.AssignedAt);
        Assert.NotNull(replica.ReadyAt);
        Assert.Equal(1, status.Cluster.ReadyReplicas);

        Assert.Empty(routes.Current.LostNodes);

        // Socket gone: out of routing at once, and the node is listed as lost so edges cut what they still have in flight to it.
        await agent.DisposeAsync();
        var table = await Eventually.GetAsync(() => Task.FromResult(routes.Current), t => t.Clusters["demo"].Destinations.Length == 0, what: "route removed");
        Assert.Equal([destination.NodeId], table.LostNodes);

        // Issue 14, item 2: within the node's grace period the API says so of the replica itself, not only in the count.
        status = await _server.Http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto);
        replica = Assert.Single(status!.Replicas);
        Assert.Equal(ReplicaState.Unreachable, replica.State);
        Assert.False(replica.Healthy);
        Assert.Contains("node node-a lost", replica.Reason, StringComparison.Ordinal);
        Assert.Equal(0, status.Cluster.ReadyReplicas);
        Assert.Equal(0, status.Replicas.Count(r => r.State == ReplicaState.Ready));
    }

    [Fact]
    public async Task A_disconnected_node_keeps_its_replicas_within_the_grace_period_and_loses_them_after()
    {
        var (agent, _, _) = await JoinAsync("node-a", ("rtx-4090", 1));
        await _server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 },
            ShoalJsonContext.Default.CreateClusterRequest);
        var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
        var replicaId = Assert.Single(assigned.Replicas).ReplicaId;
        await agent.DisposeAsync();

        var state = _server.Server.Services.GetRequiredService<ControlPlaneState>();
        await Eventually.GetAsync(() => state.ListNodesAsync(default), n => n.Single().Node.State == NodeState.Disconnected, what: "disconnected");

        _time.Advance(TimeSpan.FromSeconds(9));
        await state.ReconcileAsync(default);
        var within = await state.GetClusterAsync("demo", default);
        Assert.Equal(replicaId, Assert.Single(within!.Replicas).Replica.Id);

        _time.Advance(TimeSpan.FromSeconds(2));
        await state.ReconcileAsync(default);
        var after = await state.GetClusterAsync("demo", default);
        var replacement = Assert.Single(after!.Replicas).Replica;
        Assert.NotEqual(replicaId, replacement.Id);
        Assert.Equal(ReplicaState.Pending, replacement.State);
        Assert.Equal(NodeState.Offline, (await state.ListNodesAsync(default)).Single().Node.State);
    }
    private async Task<ClusterEventDto[]> EventsAsync(string query = "") =>
        (await _server.Http.GetFromJsonAsync("/v1/clusters/demo/events" + query, ShoalJsonContext.Default.ClusterEventDtoArray))!;

    [Fact]
    public async Task Events_tell_a_replica_s_life_a_crash_a_lost_node_and_the_replacement_in_order()
    {
        var (agent, _, _) = await JoinAsync("node-a", ("rtx-4090", 1));
        (await _server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 },
            ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
        var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
        var id = Assert.Single(assigned.Replicas).ReplicaId;
        var started = _time.GetUtcNow();

        async Task ReportAsync(ReplicaState state, int restarts = 0, string? reason = null) =>
            await agent.SendAsync(new HeartbeatMessage
            {
                AppliedRevision = assigned.Revision,
                Replicas = [new ReplicaReport { ReplicaId = id, State = state, Healthy = state == ReplicaState.Ready, HostPort = 4000, Restarts = restarts, Reason = reason, StartedAt = started }],
            });
        await ReportAsync(ReplicaState.Starting);
        _time.Advance(TimeSpan.FromSeconds(1.5));
        await ReportAsync(ReplicaState.Ready);
        await ReportAsync(ReplicaState.Unhealthy, reason: "health check /health failed 3 times in a row");
        await ReportAsync(ReplicaState.Failed, reason: "exited with code 137; restarting in 1 s");
        await ReportAsync(ReplicaState.Starting, restarts: 1);
        await ReportAsync(ReplicaState.Ready, restarts: 1);
        await Eventually.GetAsync(() => EventsAsync(), e => e.Count(x => x.Type == ClusterEventTypes.Ready) == 2, what: "second ready");

        // The node goes; after the grace the replica is replaced, pending until a second node joins.
        await agent.DisposeAsync();
        var state = _server.Server.Services.GetRequiredService<ControlPlaneState>();
        await Eventually.GetAsync(() => EventsAsync(), e => e.Any(x => x.Type == ClusterEventTypes.NodeLost), what: "node-lost event");
        _time.Advance(TimeSpan.FromSeconds(11));
        await state.ReconcileAsync(default);
        var (other, _, _) = await JoinAsync("node-b", ("rtx-4090", 1));
        await using var _1 = other;
        var replacement = (await Eventually.GetAsync(() => state.GetClusterAsync("demo", default),
            c => c!.Replicas.Single().Replica.NodeId is not null, what: "replacement placed"))!.Replicas.Single().Replica;
        Assert.NotEqual(id, replacement.Id);

        var events = await EventsAsync();
        Assert.Equal(
        [
            ClusterEventTypes.Created, ClusterEventTypes.Scheduled, ClusterEventTypes.Started, ClusterEventTypes.Ready,
            ClusterEventTypes.Unhealthy, ClusterEventTypes.Failed, ClusterEventTypes.Restarted, ClusterEventTypes.Ready,
            ClusterEventTypes.NodeLost, ClusterEventTypes.Replaced, ClusterEventTypes.Pending, ClusterEventTypes.Scheduled,
        ], events.Select(e => e.Type).ToArray());
        Assert.True(events.Zip(events.Skip(1)).All(p => p.First.Seq < p.Second.Seq && p.First.At <= p.Second.At));
        Assert.All(events.Skip(1).Take(9), e => Assert.Equal(id, e.Replica));
        Assert.All(events.Skip(1).Take(9), e => Assert.Equal("node-a", e.NodeName));
        Assert.Equal("ready 1.5 s after start: in routing", events[3].Message);
        Assert.Contains("health check /health failed 3 times", events[4].Message, StringComparison.Ordinal);
        Assert.Equal("restart 1 (after: exited with code 137; restarting in 1 s)", events[6].Message);
        Assert.Contains("gone for 11.0 s", events[9].Message, StringComparison.Ordinal);
        Assert.StartsWith("cannot be placed: no ready node with rtx-4090", events[10].Message, StringComparison.Ordinal);
        Assert.Equal(replacement.Id, events[11].Replica);
        Assert.Equal("node-b", events[11].NodeName);
        Assert.Equal("scheduled on node-b (GPU 0)", events[11].Message);

        // A limit keeps the newest; a bad one is refused; an unknown cluster is not found.
        Assert.Equal(events[^2..].Select(e => e.Seq), (await EventsAsync("?limit=2")).Select(e => e.Seq));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, (await _server.Http.GetAsync("/v1/clusters/demo/events?limit=0")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await _server.Http.GetAsync("/v1/clusters/ghost/events")).StatusCode);

        // Scaling down is an event too; and the events survive in the store once flushed.
        (await _server.Http.PatchAsJsonAsync("/v1/clusters/demo", new UpdateClusterRequest { Replicas = 0 }, ShoalJsonContext.Default.UpdateClusterRequest)).EnsureSuccessStatusCode();
        await state.ReconcileAsync(default);
        await state.FlushAsync(default);
        var clusterId = (await state.GetClusterAsync("demo", default))!.Cluster.Id;
        var stored = await _server.Server.Services.GetRequiredService<Shoal.Store.IShoalStore>().ListEventsAsync(clusterId, 100);
        Assert.Equal([ClusterEventTypes.Scaled, ClusterEventTypes.Removed], stored.TakeLast(2).Select(e => e.Type).ToArray());
        Assert.Equal(events.Length + 2, stored.Count);
    }

    [Fact]
    public async Task A_node_that_keeps_dropping_is_listed_as_flapping_and_new_replicas_go_to_a_steady_node()
    {
        var (flappy, welcome, _) = await JoinAsync("a-flappy", ("rtx-4090", 1));
        var (steady, _, _) = await JoinAsync("b-steady", ("rtx-4090", 1));
        await using var _1 = steady;
        var state = _server.Server.Services.GetRequiredService<ControlPlaneState>();

        // Three drops within a few seconds, reconnecting with its credentials each time.
        for (var i = 0; i < 3; i++)
        {
            await flappy.DisposeAsync();
            await Eventually.GetAsync(() => state.ListNodesAsync(default), n => n.Single(x => x.Node.Name == "a-flappy").Node.State == NodeState.Disconnected, what: "disconnected");
            // Less than 3 heartbeat intervals in all: b-steady (no heartbeats in fake time) must stay connected.
            _time.Advance(TimeSpan.FromSeconds(1.5));
            var (back, status) = await WireAgent.ConnectAsync(_server.AgentUri, o =>
            {
                o.SetRequestHeader(AgentProtocol.NodeIdHeader, welcome.NodeId);
                o.SetRequestHeader(AgentProtocol.NodeSecretHeader, welcome.NodeSecret!);
            });
            Assert.Equal(101, status);
            flappy = back!;
            await flappy.SendAsync(WireAgent.Hello("a-flappy", ("rtx-4090", 1)));
            await flappy.ReceiveAsync<WelcomeMessage>();
            await flappy.ReceiveAsync<AssignmentsMessage>();
        }
        await using var _2 = flappy;

        var nodes = await _server.Http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray);
        var a = nodes!.Single(n => n.Name == "a-flappy");
        var b = nodes!.Single(n => n.Name == "b-steady");
        Assert.Equal((3, true), (a.RecentDisconnects, a.Flapping));
        Assert.True(a.Reliability < 0.26, $"reliability {a.Reliability}");
        Assert.Equal((0, false), (b.RecentDisconnects, b.Flapping));
        Assert.True(b.Reliability >= 0.9, $"reliability {b.Reliability}");

        // The name order would pick a-flappy; reliability picks b-steady.
        (await _server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 },
            ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
        var placed = await Eventually.GetAsync(() => state.GetClusterAsync("demo", default), c => c!.Replicas.Single().Replica.NodeId is not null, what: "placed");
        Assert.Equal("b-steady", placed!.Replicas.Single().Node!.Name);

        // Ten minutes after its last drop (it stays away: no heartbeats in a jump of the clock) the drops are forgotten.
        await flappy.DisposeAsync();
        await Eventually.GetAsync(() => state.ListNodesAsync(default), n => n.Single(x => x.Node.Name == "a-flappy").Node.State == NodeState.Disconnected, what: "gone");
        _time.Advance(NodeReliabilityWindow + TimeSpan.FromSeconds(1));
        var later = (await _server.Http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray))!.Single(n => n.Name == "a-flappy");
        Assert.Equal((0, false, 0.9), (later.RecentDisconnects, later.Flapping, later.Reliability));
    }

    private static readonly TimeSpan NodeReliabilityWindow = Shoal.Core.Scheduling.NodeReliability.Window;
}
