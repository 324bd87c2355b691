using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Core.Clusters;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Rolling updates, rollbacks, drains, cordons and crash-loop replacement, step by step: each
/// reconcile pass is run by the test on a fake clock, with agents played by calls.
/// </summary>
public sealed class RolloutTests
{
    private static async Task CreateAsync(StateHarness h, int replicas = 2, int? drainTimeoutSeconds = null)
    {
        var spec = ClusterSpecValidator.Validate(new CreateClusterRequest
        {
            Name = "demo",
            Image = "shoal/sim",
            Gpu = "rtx-4090",
            Replicas = replicas,
            Env = new() { ["SIM_DECODE_MS"] = "2" },
            DrainTimeoutSeconds = drainTimeoutSeconds,
        });
        Assert.True(spec.IsValid, spec.Message);
        await h.State.CreateClusterAsync(spec.Value!, default);
    }

    /// <summary>Three one-GPU nodes and a 2-replica cluster with both replicas ready.</summary>
    private static async Task<(StateHarness H, string[] Old)> ReadyClusterAsync(int nodes = 3, Action<ServerOptions>? configure = null, bool metrics = true)
    {
        var h = await StateHarness.StartAsync(configure);
        for (var i = 1; i <= nodes; i++) await h.AddNodeAsync($"node-{i}");
        await CreateAsync(h);
        await h.ReconcileAsync();
        var ids = (await h.ReplicasAsync()).Select(r => r.Replica.Id).Order(StringComparer.Ordinal).ToArray();
        foreach (var id in ids) await h.ReadyAsync(id, metrics: metrics);
        Assert.Equal(ids, await h.RoutedAsync());
        return (h, ids);
    }

    private static Task<ClusterUpdateOutcome> UpdateAsync(StateHarness h, UpdateClusterRequest request) =>
        h.State.UpdateClusterAsync("demo", request, default);

    private static async Task<string[]> EventTypesAsync(StateHarness h, params string[] types) =>
        (await h.EventsAsync()).Select(e => e.Type).Where(types.Contains).ToArray();

    [Fact]
    public async Task An_update_replaces_replicas_one_at_a_time_and_never_has_fewer_ready_than_desired()
    {
        var (h, old) = await ReadyClusterAsync();
        await using var _ = h;
        var update = await UpdateAsync(h, new UpdateClusterRequest { Env = new() { ["MODEL"] = "v2" } });
        Assert.Equal(2, update.Cluster!.Generation);
        Assert.Equal(RolloutStates.Progressing, update.Cluster.Rollout.State);
        Assert.Equal("env +MODEL", update.Cluster.Rollout.Reason);

        // One extra replica of the new generation, on the free node; the old ones stay in routing.
        await h.ReconcileAsync();
        var step = await h.ReplicasAsync();
        Assert.Equal(3, step.Count);
        var first = Assert.Single(step, r => r.Replica.Generation == 2).Replica;
        Assert.NotNull(first.NodeId);
        Assert.All(step.Where(r => r.Replica.Generation == 1), r => Assert.Null(r.Replica.DrainingSince));
        // Each replica keeps its own generation's spec, so the agents do not restart the old ones.
        foreach (var r in step.Where(r => r.Replica.Generation == 1))
        {
            Assert.False((await h.AssignmentAsync(r.Replica)).Env.ContainsKey("MODEL"));
            Assert.Equal(1, (await h.AssignmentAsync(r.Replica)).Generation);
        }
        Assert.Equal("v2", (await h.AssignmentAsync(first)).Env["MODEL"]);
        var view = await h.ClusterAsync();
        Assert.Equal((1, 2, 0), (view.UpdatedReplicas, view.OutdatedReplicas, view.DrainingReplicas));

        // Not ready yet: nothing more happens.
        await h.ReconcileAsync();
        Assert.Equal(3, (await h.ReplicasAsync()).Count);
        Assert.Equal(old, await h.RoutedAsync());

        // Ready: one old replica leaves routing and drains; no further replica while it drains.
        await h.ReadyAsync(first.Id);
        await h.ReconcileAsync();
        var draining = Assert.Single(await h.ReplicasAsync(), r => r.Replica.DrainingSince is not null).Replica;
        Assert.Contains(draining.Id, old);
        Assert.Equal(2, (await h.RoutedAsync()).Length);
        Assert.DoesNotContain(draining.Id, await h.RoutedAsync());
        // Listed as draining, so edges let its requests in flight finish rather than cut them.
        Assert.Equal([draining.Id], (await h.State.BuildRouteTableAsync(1, default)).DrainingReplicas);
        Assert.Equal(3, (await h.ReplicasAsync()).Count);
        Assert.StartsWith("generation 1 is replaced by generation 2", draining.DrainReason, StringComparison.Ordinal);

        // A load report taken too early says nothing; a request still running keeps it.
        await h.LoadAsync(draining.Id, running: 0);
        await h.ReconcileAsync();
        Assert.Contains(await h.ReplicasAsync(), r => r.Replica.Id == draining.Id);
        h.Time.Advance(TimeSpan.FromSeconds(3));
        await h.LoadAsync(draining.Id, running: 1);
        await h.ReconcileAsync();
        Assert.Contains(await h.ReplicasAsync(), r => r.Replica.Id == draining.Id);

        // Nothing in flight: stopped, and the next new replica takes its GPU.
        await h.LoadAsync(draining.Id, running: 0);
        await h.ReconcileAsync();
        var next = await h.ReplicasAsync();
        Assert.DoesNotContain(next, r => r.Replica.Id == draining.Id);
        var second = Assert.Single(next, r => r.Replica.Generation == 2 && r.Replica.Id != first.Id).Replica;
        Assert.Equal(draining.NodeId, second.NodeId);
        Assert.Equal(2, (await h.RoutedAsync()).Length);

        await h.ReadyAsync(second.Id);
        await h.ReconcileAsync();
        var lastOld = Assert.Single(await h.ReplicasAsync(), r => r.Replica.DrainingSince is not null).Replica;
        Assert.Equal(new[] { first.Id, second.Id }.Order(StringComparer.Ordinal), await h.RoutedAsync());
        h.Time.Advance(TimeSpan.FromSeconds(3));
        await h.LoadAsync(lastOld.Id, running: 0);
        await h.ReconcileAsync();

        var done = await h.ClusterAsync();
        Assert.Equal(new[] { first.Id, second.Id }.Order(StringComparer.Ordinal), done.Replicas.Select(r => r.Replica.Id).Order(StringComparer.Ordinal));
        Assert.Equal(RolloutStates.Complete, done.Cluster.Rollout.State);
        Assert.Equal(2, done.Cluster.Rollout.StableGeneration);
        Assert.Empty(done.Cluster.Rollout.Generations);
        Assert.Equal(
            [ClusterEventTypes.UpdateStarted, ClusterEventTypes.Draining, ClusterEventTypes.Drained, ClusterEventTypes.Draining, ClusterEventTypes.Drained, ClusterEventTypes.UpdateCompleted],
            await EventTypesAsync(h, ClusterEventTypes.UpdateStarted, ClusterEventTypes.Draining, ClusterEventTypes.Drained, ClusterEventTypes.UpdateCompleted, ClusterEventTypes.RolledBack));
        var drained = (await h.EventsAsync()).First(e => e.Type == ClusterEventTypes.Drained);
        Assert.Equal($"drained after 3.0 s: no request in flight: stopped", drained.Message);
    }

    [Fact]
    public async Task Changing_only_settings_makes_no_new_generation_and_replaces_nothing()
    {
        var (h, old) = await ReadyClusterAsync();
        await using var _ = h;
        var outcome = await UpdateAsync(h, new UpdateClusterRequest { DrainTimeoutSeconds = 5, QueueTimeoutSeconds = 10, Routing = BalancingPolicy.RoundRobin, FirstByteTimeoutSeconds = 4 });
        Assert.Equal(1, outcome.Cluster!.Generation);
        Assert.Equal(5, outcome.Cluster.Spec.DrainTimeoutSeconds);
        // The edge gets the first-byte cap in the route, in milliseconds.
        Assert.Equal(4000, (await h.State.BuildRouteTableAsync(1, default)).Clusters["demo"].FirstByteTimeoutMs);
        await h.ReconcileAsync();
        Assert.Equal(old, (await h.ReplicasAsync()).Select(r => r.Replica.Id).Order(StringComparer.Ordinal).ToArray());
        Assert.Equal(RolloutStates.Complete, (await h.ClusterAsync()).Cluster.Rollout.State);

        // Invalid updates change nothing and say why.
        var bad = await UpdateAsync(h, new UpdateClusterRequest { Image = "Not An Image" });
        Assert.Contains("is not a valid image reference", bad.Error, StringComparison.Ordinal);
        var both = await UpdateAsync(h, new UpdateClusterRequest { Env = new() { ["A"] = "1" }, UnsetEnv = ["A"] });
        Assert.Equal("env 'A' is both set and unset", both.Error);
        var delay = await UpdateAsync(h, new UpdateClusterRequest { Health = new HealthCheckSpec { InitialDelayMs = 200_000 } });
        Assert.Contains("progressDeadlineSeconds (120) must be longer than health.initialDelayMs", delay.Error, StringComparison.Ordinal);
        Assert.StartsWith("nothing to change", (await UpdateAsync(h, new UpdateClusterRequest())).Error, StringComparison.Ordinal);
        Assert.True((await h.State.UpdateClusterAsync("ghost", new UpdateClusterRequest { Replicas = 1 }, default)).NotFound);
        Assert.Equal(1, (await h.ClusterAsync()).Cluster.Generation);
    }

    [Fact]
    public async Task Scale_down_drains_the_surplus_and_without_metrics_waits_for_the_drain_timeout()
    {
        var (h, old) = await ReadyClusterAsync(metrics: false);
        await using var _ = h;
        await UpdateAsync(h, new UpdateClusterRequest { Replicas = 1, DrainTimeoutSeconds = 10 });
        await h.ReconcileAsync();
        var replicas = await h.ReplicasAsync();
        Assert.Equal(2, replicas.Count);
        var draining = Assert.Single(replicas, r => r.Replica.DrainingSince is not null).Replica;
        Assert.Equal("the cluster scaled down", draining.DrainReason);
        Assert.Single(await h.RoutedAsync());
        Assert.DoesNotContain(draining.Id, await h.RoutedAsync());

        h.Time.Advance(TimeSpan.FromSeconds(9.9));
        await h.ReconcileAsync();
        Assert.Equal(2, (await h.ReplicasAsync()).Count);
        h.Time.Advance(TimeSpan.FromSeconds(0.1));
        await h.ReconcileAsync();
        Assert.Equal(old.Where(id => id != draining.Id), (await h.ReplicasAsync()).Select(r => r.Replica.Id));
        var drained = (await h.EventsAsync()).Single(e => e.Type == ClusterEventTypes.Drained);
        Assert.Equal("drained after the drain timeout (10.0 s): the replica reports no load metrics: stopped", drained.Message);
    }

    [Fact]
    public async Task A_replica_not_serving_is_removed_at_once_on_scale_down()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("node-1");
        await CreateAsync(h, replicas: 2);
        await h.ReconcileAsync();
        var placed = Assert.Single(await h.ReplicasAsync(), r => r.Replica.NodeId is not null).Replica;
        await h.ReadyAsync(placed.Id);
        await UpdateAsync(h, new UpdateClusterRequest { Replicas = 1 });
        await h.ReconcileAsync();
        // The pending one goes (nothing to drain), the ready one stays.
        Assert.Equal(placed.Id, Assert.Single(await h.ReplicasAsync()).Replica.Id);
        Assert.Contains(await h.EventsAsync(), e => e.Type == ClusterEventTypes.Removed);
    }

    public static TheoryData<string, ReplicaState, int, bool, string, string> BrokenUpdates => new()
    {
        { "crash loop", ReplicaState.Failed, 3, true, "exited with code 2; restarting in 4 s", "restarted 3 times (last: exited with code 2; restarting in 4 s)" },
        { "pull failure", ReplicaState.Failed, 0, false, "image pull failed: no such tag; retrying in 1 s", "could not get its image: image pull failed: no such tag" },
        { "image not allowed", ReplicaState.Failed, 0, false, "image shoal/broken is not allowed by the process runtime on this node", "could not get its image: image shoal/broken is not allowed" },
        { "permanent start failure", ReplicaState.Failed, 0, true, "the engine refused the container", "failed: the engine refused the container" },
    };

    [Theory]
    [MemberData(nameof(BrokenUpdates))]
    public async Task A_broken_update_rolls_back_and_the_old_replicas_are_never_touched(string what, ReplicaState state, int restarts, bool pulled, string reason, string expected)
    {
        var (h, old) = await ReadyClusterAsync();
        await using var _ = h;
        var oldAssignments = new List<Assignment>();
        foreach (var r in await h.ReplicasAsync()) oldAssignments.Add(await h.AssignmentAsync(r.Replica));
        await UpdateAsync(h, new UpdateClusterRequest { Image = "shoal/broken", Env = new() { ["SIM_SPEED"] = "x" } });
        await h.ReconcileAsync();
        var fresh = Assert.Single(await h.ReplicasAsync(), r => r.Replica.Generation == 2).Replica;
        await h.ReportAsync(fresh.Id, r => r with
        {
            State = state,
            Restarts = restarts,
            Reason = reason,
            PulledAt = pulled ? h.Time.GetUtcNow() : null,
            StartedAt = pulled ? h.Time.GetUtcNow() : null,
        });
        await h.ReconcileAsync();

        var view = await h.ClusterAsync();
        Assert.Equal(3, view.Cluster.Generation);
        Assert.Equal(RolloutStates.RolledBack, view.Cluster.Rollout.State);
        Assert.Contains(expected, view.Cluster.Rollout.Reason, StringComparison.Ordinal);
        Assert.StartsWith($"new replica {fresh.Id} on node-", view.Cluster.Rollout.Reason, StringComparison.Ordinal);
        Assert.Equal("shoal/sim", view.Cluster.Spec.Image);
        Assert.False(view.Cluster.Spec.Env.ContainsKey("SIM_SPEED"));
        // The broken replica is gone; the old ones are current again, never drained, still routed, same assignment.
        Assert.Equal(old, view.Replicas.Select(r => r.Replica.Id).Order(StringComparer.Ordinal).ToArray());
        Assert.All(view.Replicas, r => Assert.Null(r.Replica.DrainingSince));
        Assert.Equal(old, await h.RoutedAsync());
        Assert.Equal((2, 0), (view.UpdatedReplicas, view.OutdatedReplicas));
        foreach (var a in oldAssignments)
        {
            var now = await h.AssignmentAsync(view.Replicas.Single(r => r.Replica.Id == a.ReplicaId).Replica);
            Assert.Equal(a.Image, now.Image);
            Assert.Equal(a.Env, now.Env);
        }
        var rolledBack = (await h.EventsAsync()).Single(e => e.Type == ClusterEventTypes.RolledBack);
        Assert.StartsWith("rolled back to generation 1 (as generation 3): new replica", rolledBack.Message, StringComparison.Ordinal);

        // Settled: further passes change nothing.
        await h.ReconcileAsync();
        Assert.Equal(2, (await h.ReplicasAsync()).Count);
        Assert.Equal(RolloutStates.RolledBack, (await h.ClusterAsync()).Cluster.Rollout.State);
        Assert.False(string.IsNullOrEmpty(what));
    }

    [Fact]
    public async Task A_new_replica_not_ready_by_the_progress_deadline_rolls_back_and_new_ready_ones_are_drained_back()
    {
        var (h, old) = await ReadyClusterAsync();
        await using var _ = h;
        await UpdateAsync(h, new UpdateClusterRequest { Env = new() { ["MODEL"] = "v2" }, ProgressDeadlineSeconds = 60 });
        await h.ReconcileAsync();
        var first = Assert.Single(await h.ReplicasAsync(), r => r.Replica.Generation == 2).Replica;
        await h.ReadyAsync(first.Id);
        await h.ReconcileAsync();
        var drained = Assert.Single(await h.ReplicasAsync(), r => r.Replica.DrainingSince is not null).Replica;
        h.Time.Advance(TimeSpan.FromSeconds(3));
        await h.LoadAsync(drained.Id, 0);
        await h.ReconcileAsync();
        var second = Assert.Single(await h.ReplicasAsync(), r => r.Replica.Generation == 2 && r.Replica.Id != first.Id).Replica;
        await h.ReportAsync(second.Id, r => r with { State = ReplicaState.Starting, StartedAt = h.Time.GetUtcNow(), PulledAt = h.Time.GetUtcNow() });

        h.Time.Advance(TimeSpan.FromSeconds(59));
        await h.ReconcileAsync();
        Assert.Equal(RolloutStates.Progressing, (await h.ClusterAsync()).Cluster.Rollout.State);
        h.Time.Advance(TimeSpan.FromSeconds(1));
        await h.ReconcileAsync();

        var view = await h.ClusterAsync();
        Assert.Equal(RolloutStates.RolledBack, view.Cluster.Rollout.State);
        Assert.Equal($"new replica {second.Id} on {NodeName(h, second.NodeId)} not ready 60.0 s after it was created (starting)", view.Cluster.Rollout.Reason);
        // The late one is gone at once; the new one that was ready serves until a replacement of the old spec is ready.
        Assert.DoesNotContain(view.Replicas, r => r.Replica.Id == second.Id);
        var keptOld = old.Single(id => id != drained.Id);
        Assert.Equal(new[] { keptOld, first.Id }.Order(StringComparer.Ordinal), await h.RoutedAsync());
        var back = Assert.Single(view.Replicas, r => r.Replica.Generation == 3).Replica;
        Assert.False((await h.AssignmentAsync(back)).Env.ContainsKey("MODEL"));

        await h.ReadyAsync(back.Id);
        await h.ReconcileAsync();
        Assert.Equal(first.Id, Assert.Single(await h.ReplicasAsync(), r => r.Replica.DrainingSince is not null).Replica.Id);
        h.Time.Advance(TimeSpan.FromSeconds(3));
        await h.LoadAsync(first.Id, 0);
        await h.ReconcileAsync();
        var final = await h.ClusterAsync();
        Assert.Equal(new[] { keptOld, back.Id }.Order(StringComparer.Ordinal), final.Replicas.Select(r => r.Replica.Id).Order(StringComparer.Ordinal));
        Assert.Equal(new[] { keptOld, back.Id }.Order(StringComparer.Ordinal), await h.RoutedAsync());
        // Only the old generation's spec is left to keep (replica keptOld runs it).
        Assert.Equal([1L], final.Cluster.Rollout.Generations.Keys.ToArray());
    }

    private static string NodeName(StateHarness h, string? nodeId) =>
        Enumerable.Range(1, 3).Select(i => $"node-{i}").Single(n => h.NodeId(n) == nodeId);

    [Fact]
    public async Task Draining_a_node_moves_its_replica_surge_first_and_leaves_it_cordoned()
    {
        var (h, old) = await ReadyClusterAsync();
        await using var _ = h;
        var victim = (await h.ReplicasAsync())[0].Replica;
        var victimNode = NodeName(h, victim.NodeId);

        var node = await h.State.SetNodeSchedulingAsync(victimNode, NodeSchedulingAction.Drain, default);
        Assert.Equal(NodeState.Draining, node!.Node.State);
        Assert.True(node.Node.Cordoned);
        await h.ReconcileAsync();
        var replacement = Assert.Single(await h.ReplicasAsync(), r => !old.Contains(r.Replica.Id)).Replica;
        Assert.NotEqual(victim.NodeId, replacement.NodeId);
        Assert.Equal(old, await h.RoutedAsync());

        await h.ReadyAsync(replacement.Id);
        await h.ReconcileAsync();
        var draining = Assert.Single(await h.ReplicasAsync(), r => r.Replica.DrainingSince is not null).Replica;
        Assert.Equal(victim.Id, draining.Id);
        Assert.Equal($"node {victimNode} is being drained", draining.DrainReason);
        h.Time.Advance(TimeSpan.FromSeconds(3));
        await h.LoadAsync(victim.Id, 0);
        await h.ReconcileAsync();

        Assert.DoesNotContain(await h.ReplicasAsync(), r => r.Replica.NodeId == victim.NodeId);
        var after = (await h.State.GetNodeAsync(victimNode, default))!.Node;
        Assert.Equal((NodeState.Cordoned, true, false), (after.State, after.Cordoned, after.Draining));
        Assert.Contains(await h.EventsAsync(), e => e.Type == ClusterEventTypes.Cordoned && e.ReplicaId == victim.Id);

        var uncordoned = await h.State.SetNodeSchedulingAsync(h.NodeId(victimNode), NodeSchedulingAction.Uncordon, default);
        Assert.Equal((NodeState.Ready, false), (uncordoned!.Node.State, uncordoned.Node.Cordoned));
        Assert.Null(await h.State.SetNodeSchedulingAsync("ghost", NodeSchedulingAction.Cordon, default));
    }

    [Fact]
    public async Task A_cordoned_node_gets_no_new_replicas_and_keeps_the_ones_it_has()
    {
        var (h, old) = await ReadyClusterAsync();
        await using var _ = h;
        var nodes = await h.State.ListNodesAsync(default);
        var free = nodes.Single(n => n.Replicas == 0).Node.Name;
        var busy = NodeName(h, (await h.ReplicasAsync())[0].Replica.NodeId);
        await h.State.SetNodeSchedulingAsync(free, NodeSchedulingAction.Cordon, default);
        await h.State.SetNodeSchedulingAsync(busy, NodeSchedulingAction.Cordon, default);
        await UpdateAsync(h, new UpdateClusterRequest { Replicas = 3 });
        await h.ReconcileAsync();
        var pending = Assert.Single(await h.ReplicasAsync(), r => !old.Contains(r.Replica.Id)).Replica;
        Assert.Null(pending.NodeId);
        Assert.Equal(old, await h.RoutedAsync());

        await h.State.SetNodeSchedulingAsync(free, NodeSchedulingAction.Uncordon, default);
        await h.ReconcileAsync();
        Assert.Equal(h.NodeId(free), (await h.ReplicasAsync()).Single(r => r.Replica.Id == pending.Id).Replica.NodeId);
    }

    [Fact]
    public async Task A_crash_looping_replica_is_replaced_on_another_node_which_new_replicas_avoid()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("node-1", gpus: 2);
        await h.AddNodeAsync("node-2", gpus: 2);
        await CreateAsync(h, replicas: 1);
        await h.ReconcileAsync();
        var looping = Assert.Single(await h.ReplicasAsync()).Replica;
        await h.ReadyAsync(looping.Id);

        for (var restarts = 1; restarts <= 3; restarts++)
        {
            var n = restarts;
            h.Time.Advance(TimeSpan.FromSeconds(5));
            await h.ReportAsync(looping.Id, r => r with { State = ReplicaState.Failed, Healthy = false, Restarts = n, ExitCode = 1, Reason = "exited with code 1; restarting in 2 s" });
            await h.ReconcileAsync();
            Assert.Equal(n < 3, (await h.ReplicasAsync()).Any(r => r.Replica.Id == looping.Id));
        }

        var replacement = Assert.Single(await h.ReplicasAsync()).Replica;
        Assert.NotEqual(looping.NodeId, replacement.NodeId);
        var replaced = (await h.EventsAsync()).Single(e => e.Type == ClusterEventTypes.Replaced);
        Assert.Equal(looping.Id, replaced.ReplicaId);
        var loopingNode = NodeName2(h, looping.NodeId);
        Assert.Equal($"replaced: crash-looping on {loopingNode} (3 restarts within 300 s; last: exited with code 1; restarting in 2 s); removed at once (not serving)", replaced.Message);
        Assert.Equal(looping.NodeId, Assert.Single((await h.ClusterAsync()).Cluster.Rollout.AvoidNodes).Key);

        // A second replica also goes elsewhere while the avoided node is not needed…
        await h.ReadyAsync(replacement.Id);
        await UpdateAsync(h, new UpdateClusterRequest { Replicas = 2 });
        await h.ReconcileAsync();
        Assert.All(await h.ReplicasAsync(), r => Assert.NotEqual(looping.NodeId, r.Replica.NodeId));
        // …but a third still fits there: avoided, not forbidden.
        await UpdateAsync(h, new UpdateClusterRequest { Replicas = 3 });
        await h.ReconcileAsync();
        Assert.Single(await h.ReplicasAsync(), r => r.Replica.NodeId == looping.NodeId);

        // The avoidance expires.
        h.Time.Advance(TimeSpan.FromMinutes(11));
        await h.ReconcileAsync();
        Assert.Empty((await h.ClusterAsync()).Cluster.Rollout.AvoidNodes);
    }

    private static string NodeName2(StateHarness h, string? nodeId) =>
        new[] { "node-1", "node-2" }.Single(n => h.NodeId(n) == nodeId);

    [Fact]
    public async Task A_flapping_node_s_replica_moves_surge_first_to_a_steady_node_but_stays_when_no_steady_node_has_room()
    {
        var (h, old) = await ReadyClusterAsync();
        await using var _ = h;
        var victim = (await h.ReplicasAsync())[0].Replica;
        var victimNode = NodeName(h, victim.NodeId);

        // Two drops: not flapping yet, nothing moves.
        await h.BounceAsync(victimNode);
        await h.BounceAsync(victimNode);
        await h.ReconcileAsync();
        Assert.Equal(old, (await h.ReplicasAsync()).Select(r => r.Replica.Id).Order(StringComparer.Ordinal).ToArray());

        // The third within ten minutes: a replacement on the steady free node first, the old one still routed.
        h.Time.Advance(TimeSpan.FromSeconds(5));
        await h.BounceAsync(victimNode);
        await h.ReconcileAsync();
        var replacement = Assert.Single(await h.ReplicasAsync(), r => !old.Contains(r.Replica.Id)).Replica;
        Assert.NotEqual(victim.NodeId, replacement.NodeId);
        Assert.Contains(victim.Id, await h.RoutedAsync());

        await h.ReadyAsync(replacement.Id);
        await h.ReconcileAsync();
        var draining = Assert.Single(await h.ReplicasAsync(), r => r.Replica.DrainingSince is not null).Replica;
        Assert.Equal(victim.Id, draining.Id);
        Assert.Equal($"node {victimNode} is flapping (3 disconnects within 10 min)", draining.DrainReason);
        h.Time.Advance(TimeSpan.FromSeconds(3));
        await h.LoadAsync(victim.Id, 0);
        await h.ReconcileAsync();
        Assert.DoesNotContain(await h.ReplicasAsync(), r => r.Replica.NodeId == victim.NodeId);
        Assert.Equal(2, (await h.RoutedAsync()).Length);

        // The other nodes are full now: a second flapping node keeps its replica (nowhere steady to go).
        var other = (await h.ReplicasAsync()).Single(r => r.Replica.Id != replacement.Id).Replica;
        var otherNode = NodeName(h, other.NodeId);
        for (var i = 0; i < 3; i++) await h.BounceAsync(otherNode);
        await h.ReconcileAsync();
        Assert.Equal([other.Id, replacement.Id], (await h.ReplicasAsync()).Select(r => r.Replica.Id).Order(StringComparer.Ordinal).ToArray()
            .OrderBy(id => id == replacement.Id).ToArray());
        Assert.DoesNotContain(await h.ReplicasAsync(), r => r.Replica.DrainingSince is not null);
    }

    [Fact]
    public async Task A_server_restart_mid_rollout_continues_it_from_the_store()
    {
        var (h, old) = await ReadyClusterAsync();
        await using var _ = h;
        await UpdateAsync(h, new UpdateClusterRequest { Env = new() { ["MODEL"] = "v2" } });
        await h.ReconcileAsync();
        var first = Assert.Single(await h.ReplicasAsync(), r => r.Replica.Generation == 2).Replica;
        await h.ReadyAsync(first.Id);
        await h.ReconcileAsync();
        var draining = Assert.Single(await h.ReplicasAsync(), r => r.Replica.DrainingSince is not null).Replica;
        await h.State.FlushAsync(default);

        await h.RestartAsync();
        var reloaded = await h.ClusterAsync();
        Assert.Equal(RolloutStates.Progressing, reloaded.Cluster.Rollout.State);
        Assert.Equal(2, reloaded.Cluster.Generation);
        Assert.Equal(draining.DrainingSince, reloaded.Replicas.Single(r => r.Replica.Id == draining.Id).Replica.DrainingSince);
        // The old replica not yet replaced still gets its own spec from the reloaded state.
        var keptOld = reloaded.Replicas.Single(r => r.Replica.Generation == 1 && r.Replica.DrainingSince is null).Replica;
        Assert.False((await h.AssignmentAsync(keptOld)).Env.ContainsKey("MODEL"));
        Assert.DoesNotContain(draining.Id, await h.RoutedAsync());

        h.Time.Advance(TimeSpan.FromSeconds(3));
        await h.LoadAsync(draining.Id, 0);
        await h.ReconcileAsync();
        var second = Assert.Single(await h.ReplicasAsync(), r => r.Replica.Generation == 2 && r.Replica.Id != first.Id).Replica;
        await h.ReadyAsync(second.Id);
        await h.ReconcileAsync();
        h.Time.Advance(TimeSpan.FromSeconds(3));
        await h.LoadAsync(keptOld.Id, 0);
        await h.ReconcileAsync();
        var done = await h.ClusterAsync();
        Assert.Equal(RolloutStates.Complete, done.Cluster.Rollout.State);
        Assert.All(done.Replicas, r => Assert.Equal(2, r.Replica.Generation));
        Assert.DoesNotContain(done.Replicas, r => old.Contains(r.Replica.Id));
    }
}
