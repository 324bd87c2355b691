using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// A server that starts again on the same store gives the nodes that were serving before it
/// <see cref="ServerOptions.RestartGracePeriod"/> to reconnect (their agents may be deep in their
/// reconnect back-off), not the plain grace: else a longer outage would replace every replica.
/// </summary>
public sealed class RestartGraceTests
{
    [Fact]
    public async Task After_a_restart_serving_nodes_keep_their_replicas_for_the_restart_grace_and_lose_them_after()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-23T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        using var dir = new TempDirectory("shoal-restart");
        string replicaId;
        var first = await TestServer.StartAsync(time, o => o.DataDir = dir.Path);
        WireAgent agent;
        try
        {
            (agent, var assigned) = await JoinAndDeployAsync(first, tunnel: false);
            replicaId = Assert.Single(assigned.Replicas).ReplicaId;
        }
        finally
        {
            // The server goes while its agent is still connected, as in a crash or a restart.
            await first.DisposeAsync();
        }
        await agent.DisposeAsync();

        await using var second = await TestServer.StartAsync(time, o =>
        {
            o.DataDir = dir.Path;
            o.NodeGracePeriod = TimeSpan.FromSeconds(10);
            o.RestartGracePeriod = TimeSpan.FromSeconds(40);
        });
        var state = second.Server.Services.GetRequiredService<ControlPlaneState>();
        Assert.Equal(NodeState.Disconnected, (await state.ListNodesAsync(default)).Single().Node.State);

        // Past the plain grace: kept.
        time.Advance(TimeSpan.FromSeconds(30));
        await state.ReconcileAsync(default);
        Assert.Equal(replicaId, Assert.Single((await state.GetClusterAsync("demo", default))!.Replicas).Replica.Id);

        // Past the restart grace: replaced.
        time.Advance(TimeSpan.FromSeconds(11));
        await state.ReconcileAsync(default);
        Assert.NotEqual(replicaId, Assert.Single((await state.GetClusterAsync("demo", default))!.Replicas).Replica.Id);
        Assert.Equal(NodeState.Offline, (await state.ListNodesAsync(default)).Single().Node.State);
        var events = await second.Http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray);
        Assert.Contains(events!, e => e.Type == ClusterEventTypes.Replaced && e.Replica == replicaId && e.Message.Contains("grace 40", StringComparison.Ordinal));
    }

    [Fact]
    public async Task After_a_restart_a_node_not_heard_from_yet_is_unknown_not_lost_so_edges_keep_routing_to_it()
    {
        // Issue 14, item 1: the first tables after a start listed such nodes as lost, and edges cut their streams.
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-12-05T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        using var dir = new TempDirectory("shoal-restart");
        string replicaId;
        var first = await TestServer.StartAsync(time, o => o.DataDir = dir.Path);
        WireAgent agent;
        try
        {
            // Reached over its tunnels, as agents are by default.
            (agent, var assigned) = await JoinAndDeployAsync(first, tunnel: true);
            replicaId = Assert.Single(assigned.Replicas).ReplicaId;
            await agent.SendAsync(new HeartbeatMessage
            {
                AppliedRevision = assigned.Revision,
                Replicas = [new ReplicaReport { ReplicaId = replicaId, State = ReplicaState.Ready, Healthy = true, HostPort = 45678, StartedAt = time.GetUtcNow(), ReadyAt = time.GetUtcNow() }],
            });
            await Eventually.GetAsync(() => first.Http.GetFromJsonAsync("/v1/clusters/demo", ShoalJsonContext.Default.ClusterDto), c => c!.ReadyReplicas == 1, what: "ready");
        }
        finally
        {
            await first.DisposeAsync();
        }
        await agent.DisposeAsync();

        await using var second = await TestServer.StartAsync(time, o =>
        {
            o.DataDir = dir.Path;
            o.NodeGracePeriod = TimeSpan.FromSeconds(10);
            o.RestartGracePeriod = TimeSpan.FromSeconds(40);
        });
        var state = second.Server.Services.GetRequiredService<ControlPlaneState>();

        // Its agent is still in its reconnect back-off: its replica stays in the table, reached as before, and it is not lost.
        var table = await state.BuildRouteTableAsync(1, default);
        var destination = Assert.Single(table.Clusters["demo"].Destinations);
        Assert.Equal(replicaId, destination.ReplicaId);
        Assert.Equal(RouteVia.Tunnel, destination.Via);
        Assert.Equal("http://127.0.0.1:45678", destination.Address);
        Assert.Empty(table.LostNodes);
        Assert.Equal(1, (await second.Http.GetFromJsonAsync("/v1/clusters/demo", ShoalJsonContext.Default.ClusterDto))!.ReadyReplicas);

        // It never comes back: past the restart grace its replica goes, like any lost node's.
        time.Advance(TimeSpan.FromSeconds(41));
        await state.ReconcileAsync(default);
        table = await state.BuildRouteTableAsync(2, default);
        Assert.DoesNotContain(table.Clusters["demo"].Destinations, d => d.ReplicaId == replicaId);
        Assert.False(state.AwaitingReconnects);
    }

    // Node node-a joins the server (over its tunnels or directly) and gets the one replica of a new cluster demo.
    private static async Task<(WireAgent Agent, AssignmentsMessage Assigned)> JoinAndDeployAsync(TestServer server, bool tunnel)
    {
        var (joined, _) = await WireAgent.RegisterAsync(server.AgentUri, await server.CreateTokenAsync(), "node-a");
        var agent = joined!;
        await agent.SendAsync(WireAgent.Hello("node-a", ("rtx-4090", 1)) with { Tunnel = tunnel });
        await agent.ReceiveAsync<WelcomeMessage>();
        await agent.ReceiveAsync<AssignmentsMessage>();
        (await server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 },
            ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
        return (agent, await agent.ReceiveAsync<AssignmentsMessage>());
    }

    [Fact]
    public async Task A_flapping_node_is_still_flapping_after_a_server_restart()
    {
        // Issue 14, item 4: node reliability is stored, so a restart does not make an unreliable node look steady.
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a");
        for (var i = 0; i < 3; i++)
        {
            h.Time.Advance(TimeSpan.FromSeconds(20));
            await h.BounceAsync("a");
        }
        Assert.True((await h.State.GetNodeAsync("a", default))!.Reliability.Flapping);
        await h.State.FlushAsync(default);

        await h.RestartAsync();

        var reliability = (await h.State.GetNodeAsync("a", default))!.Reliability;
        Assert.True(reliability.Flapping);
        Assert.Equal(3, reliability.RecentDisconnects);
    }

    [Fact]
    public async Task A_crash_looping_replica_keeps_its_restart_count_across_a_server_restart()
    {
        // Issue 14, item 4: the crash-loop count is stored with the replica, so a restart does not forgive a loop.
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a");
        await h.AddNodeAsync("b");
        await h.State.CreateClusterAsync(new Shoal.Core.Clusters.ClusterSpec { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 }, default);
        await h.ReconcileAsync();
        var looping = Assert.Single(await h.ReplicasAsync()).Replica;
        for (var restarts = 1; restarts <= 2; restarts++)
        {
            var n = restarts;
            h.Time.Advance(TimeSpan.FromSeconds(5));
            await h.ReportAsync(looping.Id, r => r with { State = ReplicaState.Failed, Restarts = n, ExitCode = 3, Reason = "exited with code 3; restarting in 2 s" });
        }
        await h.ReconcileAsync();
        Assert.Equal(looping.Id, Assert.Single(await h.ReplicasAsync()).Replica.Id);
        await h.State.FlushAsync(default);

        await h.RestartAsync();

        // Reported again as it was (2 restarts): nothing new is counted, and nothing is written for it.
        await h.ReportAsync(looping.Id, r => r with { ExitCode = 3, Reason = "exited with code 3; restarting in 2 s" });
        await h.State.FlushAsync(default);
        var commits = h.Store.Commits;
        for (var i = 0; i < 5; i++)
        {
            h.Time.Advance(TimeSpan.FromSeconds(2));
            await h.ReportAsync(looping.Id, r => r with { ExitCode = 3, Reason = "exited with code 3; restarting in 2 s" });
            await h.State.FlushAsync(default);
        }
        Assert.Equal(commits, h.Store.Commits);
        await h.ReconcileAsync();
        Assert.Equal(looping.Id, Assert.Single(await h.ReplicasAsync()).Replica.Id);

        // The third restart (the first this server saw) makes it crash-looping: 3 within the window.
        h.Time.Advance(TimeSpan.FromSeconds(5));
        await h.ReportAsync(looping.Id, r => r with { State = ReplicaState.Failed, Restarts = 3, ExitCode = 3, Reason = "exited with code 3; restarting in 4 s" });
        await h.ReconcileAsync();
        Assert.DoesNotContain(await h.ReplicasAsync(), r => r.Replica.Id == looping.Id);
        var replaced = (await h.EventsAsync()).Single(e => e.Type == ClusterEventTypes.Replaced);
        var node = looping.NodeId == h.NodeId("a") ? "a" : "b";
        Assert.StartsWith($"replaced: crash-looping on {node} (3 restarts within 300 s", replaced.Message, StringComparison.Ordinal);
        Assert.Equal(1, (await h.ClusterAsync()).Cluster.Rollout.FailedAttempts);
    }
}
