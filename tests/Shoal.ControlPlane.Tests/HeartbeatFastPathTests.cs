using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Core.Clusters;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Issue 12: a heartbeat that changes nothing (loads aside) takes no lock and writes nothing to the
/// store; one that changes something still goes through the state as before.
/// </summary>
public sealed class HeartbeatFastPathTests
{
    [Fact]
    public async Task Acknowledged_revisions_are_kept_in_memory_and_written_with_the_nodes_next_change()
    {
        await using var h = await StateHarness.StartAsync();
        var id = await h.AddNodeAsync("a");
        await h.State.CreateClusterAsync(new ClusterSpec { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 }, default);
        await h.ReconcileAsync();
        await h.State.FlushAsync(default);
        var revision = (await h.State.GetNodeAsync("a", default))!.Node.Revision;
        var commits = h.Store.Commits;

        // The agent acknowledges the assignment set on its own and in a heartbeat: the view shows it, the store is not written.
        var session = h.Session("a");
        await h.State.AckAsync(id, session, revision, default);
        await h.State.HeartbeatAsync(id, session, new HeartbeatMessage { AppliedRevision = revision, Replicas = [] }, default);
        await h.State.FlushAsync(default);

        Assert.Equal(revision, (await h.State.GetNodeAsync("a", default))!.Node.AckedRevision);
        Assert.Equal(commits, h.Store.Commits);
        Assert.True((await h.Store.LoadAsync()).Nodes.Single().AckedRevision < revision);
    }

    [Fact]
    public async Task Heartbeats_that_change_only_loads_write_nothing_yet_loads_reach_views_and_routes()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a");
        await h.State.CreateClusterAsync(new ClusterSpec { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 }, default);
        await h.ReconcileAsync();
        var replica = (await h.ReplicasAsync()).Single().Replica.Id;
        await h.ReadyAsync(replica);
        await h.LoadAsync(replica, 1, 0);
        await h.State.FlushAsync(default);
        var commits = h.Store.Commits;

        for (var i = 1; i <= 20; i++)
        {
            h.Time.Advance(TimeSpan.FromSeconds(2));
            await h.LoadAsync(replica, running: i, waiting: i % 3);
            await h.State.FlushAsync(default);
        }

        Assert.Equal(commits, h.Store.Commits);
        var view = (await h.ReplicasAsync()).Single();
        Assert.Equal(20, view.Load!.Running);
        Assert.Equal(2, view.Load.Waiting);
        var route = (await h.State.BuildRouteTableAsync(1, default)).Clusters["demo"].Destinations.Single();
        Assert.Equal(2, route.Waiting);
        Assert.Equal(h.Time.GetUtcNow(), (await h.State.GetNodeAsync("a", default))!.Node.LastSeenAt);

        // A change of observed state goes through the state and is stored.
        await h.ReportAsync(replica, r => r with { Healthy = false, State = ReplicaState.Unhealthy });
        await h.State.FlushAsync(default);
        Assert.Equal(commits + 1, h.Store.Commits);
        Assert.Equal(ReplicaState.Unhealthy, (await h.ReplicasAsync()).Single().Replica.State);
    }

    [Fact]
    public async Task A_heartbeat_that_changes_nothing_is_taken_while_a_store_commit_holds_the_state()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a");
        await h.State.CreateClusterAsync(new ClusterSpec { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 }, default);
        await h.ReconcileAsync();
        var replica = (await h.ReplicasAsync()).Single().Replica.Id;
        await h.ReadyAsync(replica);
        await h.LoadAsync(replica, 1, 0);
        var report = (await h.ReplicasAsync()).Single().Replica;

        // A slow commit (say, a store far away) holds the state's lock…
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Store.Hold = hold;
        var before = h.Store.Commits;
        var create = h.State.CreateClusterAsync(new ClusterSpec { Name = "other", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 }, default);
        await Eventually.UntilAsync(() => h.Store.Commits > before && !create.IsCompleted, what: "the commit under way");

        // …and the node's heartbeat is taken all the same: the node is seen, its load counts.
        h.Time.Advance(TimeSpan.FromSeconds(2));
        var beat = h.State.HeartbeatAsync(h.NodeId("a"), h.Session("a"), new HeartbeatMessage
        {
            Replicas =
            [
                new ReplicaReport
                {
                    ReplicaId = report.Id,
                    State = report.State,
                    Healthy = report.Healthy,
                    HostPort = report.HostPort,
                    Restarts = report.Restarts,
                    StartedAt = report.StartedAt,
                    ReadyAt = report.ReadyAt,
                    PulledAt = report.PulledAt,
                    Load = new ReplicaLoad { Running = 7 },
                },
            ],
        }, default);
        await beat.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(create.IsCompleted);
        Assert.Empty(await h.State.FindStaleSessionsAsync(default));

        hold.SetResult();
        await create;
        Assert.Equal(7, (await h.ReplicasAsync()).Single().Load!.Running);
        Assert.Equal(h.Time.GetUtcNow(), (await h.State.GetNodeAsync("a", default))!.Node.LastSeenAt);
    }

    [Fact]
    public async Task A_silent_agent_is_stale_after_three_intervals_less_the_scan_and_the_mark_and_shows_since_when_it_is_gone()
    {
        await using var h = await StateHarness.StartAsync();
        var id = await h.AddNodeAsync("a");
        var session = h.Session("a");
        await h.State.HeartbeatAsync(id, session, new HeartbeatMessage { Replicas = [] }, default);

        // 2 s heartbeats, 3 missed: 6 s less the 100 ms scan and an eighth of an interval for the mark.
        Assert.Equal(TimeSpan.FromMilliseconds(5650), ControlPlaneState.StaleAfter(h.Options));
        h.Time.Advance(TimeSpan.FromMilliseconds(5600));
        Assert.Empty(await h.State.FindStaleSessionsAsync(default));
        Assert.Null((await h.State.GetNodeAsync("a", default))!.DisconnectedSince);

        h.Time.Advance(TimeSpan.FromMilliseconds(100));
        var stale = Assert.Single(await h.State.FindStaleSessionsAsync(default));
        Assert.Equal(id, stale.NodeId);
        var markedAt = h.Time.GetUtcNow();
        await h.State.NodesDisconnectedAsync([stale], "missed heartbeats");
        h.Time.Advance(TimeSpan.FromSeconds(1));
        var view = (await h.State.GetNodeAsync("a", default))!;
        Assert.Equal(NodeState.Disconnected, view.Node.State);
        Assert.Equal(markedAt, view.DisconnectedSince);
    }
}
