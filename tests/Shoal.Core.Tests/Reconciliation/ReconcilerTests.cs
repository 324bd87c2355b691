using Shoal.Contracts;
using Shoal.Core.Reconciliation;
using Shoal.Core.Scheduling;

namespace Shoal.Core.Tests.Reconciliation;

/// <summary>
/// The reconciler as pure code: placement, replacement of lost nodes' replicas, what a returning
/// node gets, scale down, rollout steps, drains, crash loops, flapping nodes and rollback — each
/// stepped pass by pass on a FakeTimeProvider clock, with no store.
/// </summary>
public sealed class ReconcilerTests
{
    private static readonly TimeSpan s_afterSettle = TimeSpan.FromSeconds(4);

    [Fact]
    public void Places_replicas_spread_over_nodes_and_says_why_the_rest_waits_once()
    {
        var w = new World();
        w.AddNode("a", gpus: 2);
        w.AddNode("b");
        w.AddCluster("web", 4);

        var plan = w.Step();

        Assert.Equal(4, plan.Created);
        Assert.Equal(3, plan.Placed);
        Assert.Equal(1, plan.Pending);
        Assert.Equal(2, w.Of("web").Count(r => r.NodeId == "n-a"));
        Assert.Single(w.Of("web"), r => r.NodeId == "n-b");
        var pending = Assert.Single(w.Of("web"), r => r.NodeId is null);
        Assert.Equal("no node with a free rtx-4090", pending.Reason);
        Assert.Equal(["n-a", "n-b"], plan.ChangedNodes.Order(StringComparer.Ordinal));
        Assert.All(plan.ChangedNodes, id => Assert.Equal(1, w.Nodes[id].Revision));
        Assert.Single(w.Events, e => e.Type == ClusterEventTypes.Pending);

        // Nothing new to say: the next pass writes nothing (no event repeated).
        Assert.True(w.Step().IsEmpty);
    }

    [Fact]
    public void A_lost_node_keeps_its_replicas_within_the_grace_then_they_are_replaced_and_its_return_adds_none()
    {
        var w = new World();
        w.AddNode("a");
        w.AddNode("b");
        w.AddNode("c");
        w.AddCluster("web", 2);
        w.Settle();
        w.AllReady();
        var onA = w.Of("web").SingleOrDefault(r => r.NodeId == "n-a") ?? w.Of("web").First();
        var lostNode = onA.NodeId!["n-".Length..];

        w.Disconnect(lostNode);
        w.Advance(TimeSpan.FromSeconds(9));
        Assert.True(w.Step().IsEmpty);
        Assert.Contains(w.Replicas.Values, r => r.Id == onA.Id);

        w.Advance(TimeSpan.FromSeconds(2));
        var plan = w.Step();

        Assert.Equal([onA.NodeId!], plan.OfflineNodes);
        Assert.Equal(NodeState.Offline, w.Nodes[onA.NodeId!].State);
        Assert.DoesNotContain(w.Replicas.Values, r => r.Id == onA.Id);
        var replacement = Assert.Single(w.Of("web"), r => r.CreatedAt == w.Now);
        Assert.NotNull(replacement.NodeId);
        Assert.NotEqual(onA.NodeId, replacement.NodeId);
        Assert.Contains(onA.NodeId!, plan.ChangedNodes);
        Assert.Contains(w.Events, e => e.Type == ClusterEventTypes.Replaced && e.ReplicaId == onA.Id && e.Message.Contains("grace 10.0 s", StringComparison.Ordinal));

        // The node comes back: nothing of the cluster returns to it, the count stays as asked.
        w.Reconnect(lostNode);
        w.AllReady();
        w.Settle();
        Assert.Equal(2, w.Of("web").Count());
        Assert.DoesNotContain(w.Of("web"), r => r.NodeId == onA.NodeId);
    }

    [Fact]
    public void Scale_down_removes_what_does_not_serve_at_once_and_drains_what_serves()
    {
        var w = new World();
        w.AddNode("a", gpus: 3);
        w.AddCluster("web", 3);
        w.Settle();
        var first = w.Of("web").OrderBy(r => r.Id, StringComparer.Ordinal).First();
        w.Ready(first);

        w.Scale("web", 1);
        var plan = w.Step();

        // The two still starting go at once; the ready one stays.
        Assert.Equal(2, plan.Removed);
        Assert.Equal(first.Id, Assert.Single(w.Of("web")).Id);

        w.Scale("web", 0);
        plan = w.Step();
        Assert.True(plan.Routes);
        Assert.NotNull(Assert.Single(w.Of("web")).DrainingSince);
        Assert.Contains(w.Events, e => e.Type == ClusterEventTypes.Draining && e.Message.Contains("scaled down", StringComparison.Ordinal));
    }

    [Fact]
    public void A_scale_up_goes_back_to_the_node_a_drained_replica_left_while_it_is_warm()
    {
        var w = new World();
        w.AddNode("a");
        w.AddNode("z");
        w.AddCluster("web", 2);
        w.Settle();
        w.AllReady();

        w.Scale("web", 1);
        w.Step();
        var drained = w.Of("web").Single(r => r.DrainingSince is not null);
        w.Advance(s_afterSettle);
        w.Report(drained, 0, 0);
        w.Step();
        Assert.Equal(drained.NodeId, Assert.Single(w.Clusters["c-web"].Rollout.WarmNodes).Key);

        // A new node that sorts first and ties on everything else: the warm node still wins.
        w.AddNode("0");
        w.Scale("web", 2);
        w.Step();
        Assert.Equal(["n-a", "n-z"], w.Of("web").Select(r => r.NodeId!).Order(StringComparer.Ordinal));

        // Once it has cooled down, the order is the usual one again.
        w.AllReady();
        w.Scale("web", 1);
        w.Step();
        var again = w.Of("web").Single(r => r.DrainingSince is not null);
        w.Advance(s_afterSettle);
        w.Report(again, 0, 0);
        w.Step();
        w.Advance(w.Options.WarmFor);
        w.Scale("web", 2);
        w.Step();
        Assert.Contains(w.Of("web"), r => r.NodeId == "n-0");
    }

    [Fact]
    public void A_drain_ends_on_an_idle_load_report_taken_after_edges_dropped_the_replica_or_at_its_timeout()
    {
        var w = new World();
        w.AddNode("a", gpus: 2);
        w.AddCluster("web", 2);
        w.Settle();
        w.AllReady();
        var (keep, drain) = (w.Of("web").First(), w.Of("web").Last());

        w.Scale("web", 1);
        w.Step();
        var draining = w.Of("web").Single(r => r.DrainingSince is not null);

        // A report from before the settle time says nothing about requests the edges still sent.
        w.Advance(TimeSpan.FromMilliseconds(500));
        w.Report(draining, 0, 0);
        Assert.True(w.Step().IsEmpty);

        w.Advance(s_afterSettle);
        w.Report(draining, 0, 0);
        var plan = w.Step();
        Assert.Equal([draining.Id], plan.Deleted);
        Assert.Contains(w.Events, e => e.Type == ClusterEventTypes.Drained && e.Message.Contains("no request in flight", StringComparison.Ordinal));
        Assert.Single(w.Of("web"));
        _ = (keep, drain);

        // A replica still busy drains until its timeout.
        w.Scale("web", 0);
        w.Step();
        var busy = w.Of("web").Single();
        w.Advance(s_afterSettle);
        w.Report(busy, 2, 1);
        Assert.True(w.Step().IsEmpty);
        w.Advance(TimeSpan.FromSeconds(w.Clusters["c-web"].Spec.DrainTimeoutSeconds));
        w.Step();
        Assert.Empty(w.Of("web"));
        Assert.Contains(w.Events, e => e.Type == ClusterEventTypes.Drained && e.Message.Contains("3 requests still in flight", StringComparison.Ordinal));
    }

    [Fact]
    public void An_update_surges_one_replica_at_a_time_drains_the_old_ones_and_completes()
    {
        var w = new World();
        w.AddNode("a");
        w.AddNode("b");
        w.AddNode("c");
        w.AddCluster("web", 2);
        w.Settle();
        w.AllReady();
        var old = w.Of("web").Select(r => r.Id).ToHashSet(StringComparer.Ordinal);

        w.Update("web", "shoal/sim:2");
        var plan = w.Step();
        Assert.Equal(1, plan.Created);
        Assert.Equal(1, plan.Placed);
        Assert.All(w.Of("web").Where(r => old.Contains(r.Id)), r => Assert.Null(r.DrainingSince));

        // Not ready yet: nothing more happens.
        Assert.True(w.Step().IsEmpty);

        for (var round = 0; round < 2; round++)
        {
            w.AllReady();
            plan = w.Step();
            var draining = Assert.Single(w.Of("web"), r => r.DrainingSince is not null);
            Assert.Contains(draining.Id, old);
            Assert.Equal(2, w.Of("web").Count(r => r.DrainingSince is null));
            w.Advance(s_afterSettle);
            w.Report(draining, 0, 0);
            w.Step();
            Assert.DoesNotContain(w.Replicas.Values, r => r.Id == draining.Id);
        }

        w.AllReady();
        w.Settle();
        var cluster = w.Clusters["c-web"];
        Assert.Equal(RolloutStates.Complete, cluster.Rollout.State);
        Assert.Equal(2, cluster.Rollout.StableGeneration);
        Assert.Empty(cluster.Rollout.Generations);
        Assert.All(w.Of("web"), r => Assert.Equal(2, r.Generation));
        Assert.Equal(2, w.Of("web").Count());
        Assert.Single(w.Events, e => e.Type == ClusterEventTypes.UpdateCompleted);
    }

    [Fact]
    public void A_rollback_keeps_the_autoscaling_settings_and_hold_bound_set_since()
    {
        var w = new World();
        w.AddNode("a");
        w.AddNode("b");
        w.AddCluster("web", 1);
        w.Settle();
        w.AllReady();
        w.Update("web", "shoal/broken:1");
        var autoscale = new AutoscaleSpec { Min = 1, Max = 3 };
        w.Clusters["c-web"] = w.Clusters["c-web"] with { Spec = w.Clusters["c-web"].Spec with { Autoscale = autoscale, MaxHeld = 5 } };
        w.Step();
        w.Restart(w.Of("web").Single(r => r.Generation == 2), 3, "exited with code 1; restarting in 4 s");
        w.Step();

        var cluster = w.Clusters["c-web"];
        Assert.Equal(RolloutStates.RolledBack, cluster.Rollout.State);
        Assert.Equal("shoal/sim:1", cluster.Spec.Image);
        Assert.Equal(autoscale, cluster.Spec.Autoscale);
        Assert.Equal(5, cluster.Spec.MaxHeld);
    }

    [Fact]
    public void A_failing_update_rolls_back_to_the_last_complete_generation()
    {
        var w = new World();
        w.AddNode("a");
        w.AddNode("b");
        w.AddCluster("web", 1);
        w.Settle();
        w.AllReady();
        var stable = w.Of("web").Single();

        w.Update("web", "shoal/broken:1");
        w.Step();
        var fresh = w.Of("web").Single(r => r.Generation == 2);
        w.Restart(fresh, 3, "exited with code 1; restarting in 4 s");
        var plan = w.Step();

        var cluster = w.Clusters["c-web"];
        Assert.Equal(RolloutStates.RolledBack, cluster.Rollout.State);
        Assert.Equal(3, cluster.Generation);
        Assert.Equal("shoal/sim:1", cluster.Spec.Image);
        Assert.Contains("restarted 3 times", cluster.Rollout.Reason, StringComparison.Ordinal);
        Assert.Equal([("web", 1L, cluster.Rollout.Reason!)], plan.RolledBack);
        // The broken replica goes at once; the old one is current again and stays.
        Assert.Equal(stable.Id, Assert.Single(w.Of("web")).Id);
        w.Settle();
        Assert.Equal(stable.Id, Assert.Single(w.Of("web")).Id);
    }

    [Fact]
    public void A_crash_looping_replica_is_replaced_on_another_node_which_the_cluster_then_avoids()
    {
        var w = new World();
        w.AddNode("a");
        w.AddNode("b");
        w.AddCluster("web", 1);
        w.Settle();
        w.AllReady();
        var looping = w.Of("web").Single();

        w.Restart(looping, 2, "exited with code 137");
        Assert.True(w.Step().IsEmpty);
        w.Advance(TimeSpan.FromSeconds(30));
        w.Restart(looping, 1, "exited with code 137");
        w.Step();

        Assert.DoesNotContain(w.Replicas.Values, r => r.Id == looping.Id);
        var replacement = w.Of("web").Single();
        Assert.NotEqual(looping.NodeId, replacement.NodeId);
        Assert.True(w.Clusters["c-web"].Rollout.AvoidNodes.ContainsKey(looping.NodeId!));
        var replaced = Assert.Single(w.Events, e => e.Type == ClusterEventTypes.Replaced);
        Assert.Contains("crash-looping on", replaced.Message, StringComparison.Ordinal);
        Assert.Contains("3 restarts within 300 s; last: exited with code 137", replaced.Message, StringComparison.Ordinal);

        // Restarts older than the window do not count.
        w.Advance(TimeSpan.FromMinutes(6));
        w.AllReady();
        w.Restart(replacement, 2);
        w.Advance(TimeSpan.FromMinutes(6));
        w.Restart(replacement, 1);
        w.Step();
        Assert.Equal(replacement.Id, w.Of("web").Single().Id);
    }

    [Fact]
    public void A_drained_node_hands_its_replicas_over_surge_first_and_then_stops_draining()
    {
        var w = new World();
        var a = w.AddNode("a");
        w.AddNode("b");
        w.AddCluster("web", 1);
        w.Settle();
        w.AllReady();
        var onA = w.Of("web").Single();
        var node = w.Nodes[onA.NodeId!];
        w.Nodes[node.Id] = node with { Cordoned = true, Draining = true, State = NodeState.Draining };

        w.Step();
        Assert.Equal(2, w.Of("web").Count());
        Assert.Null(w.Replicas[onA.Id].DrainingSince);
        w.AllReady();
        w.Step();
        Assert.NotNull(w.Replicas[onA.Id].DrainingSince);
        w.Advance(s_afterSettle);
        w.Report(w.Replicas[onA.Id], 0, 0);
        w.Step();

        Assert.DoesNotContain(w.Replicas.Values, r => r.NodeId == node.Id);
        Assert.False(w.Nodes[node.Id].Draining);
        Assert.Equal(NodeState.Cordoned, w.Nodes[node.Id].State);
        _ = a;
    }

    [Fact]
    public void A_replica_leaves_a_flapping_node_only_when_a_steady_node_has_room()
    {
        var w = new World();
        w.AddNode("a");
        w.AddNode("b");
        w.AddCluster("web", 1);
        w.AddCluster("filler", 1);
        w.Settle();
        w.AllReady();
        var web = w.Of("web").Single();
        var filler = w.Of("filler").Single();
        w.Links[web.NodeId!] = w.Links[web.NodeId!] with { Reliability = new NodeReliability(0.2, 4, true) };

        // The other node is full: staying beats churning.
        Assert.True(w.Step().IsEmpty);
        Assert.Empty(w.Leaving);

        w.Scale("filler", 0);
        w.Step();
        w.Advance(s_afterSettle);
        w.Report(w.Replicas[filler.Id], 0, 0);
        w.Step();
        Assert.Empty(w.Of("filler"));
        // Room is judged on the model as the pass found it: the move begins with the next pass.
        var plan = w.Step();
        Assert.Contains(web.Id, plan.StartedLeavingFlapping);
        var moved = w.Of("web").Single(r => r.Id != web.Id);
        Assert.NotEqual(web.NodeId, moved.NodeId);

        // Once steady again, a move not yet needed is forgotten.
        w.Links[web.NodeId!] = w.Links[web.NodeId!] with { Reliability = NodeReliability.Steady };
        w.Step();
        Assert.DoesNotContain(web.Id, w.Leaving);
    }

    [Fact]
    public void Only_a_cluster_that_a_pass_would_leave_as_it_is_is_skipped_as_settled()
    {
        // (World.Step checks in every test that a cluster taken for settled is one the full pass leaves alone.)
        var w = new World();
        w.AddNode("a");
        w.AddNode("b");
        w.AddNode("c");
        w.AddCluster("web", 2);
        w.Settle();
        w.AllReady();
        bool Settled() => ClusterReconciler.Settled(w.Input(), w.Clusters["c-web"], [.. w.Of("web")]);
        Assert.True(Settled());

        var one = w.Of("web").First();
        w.Restart(one);
        Assert.False(Settled());
        w.RestartTimes.Clear();
        Assert.True(Settled());

        w.Links[one.NodeId!] = w.Links[one.NodeId!] with { Reliability = new NodeReliability(0.2, 4, true) };
        Assert.False(Settled());
        w.Links[one.NodeId!] = w.Links[one.NodeId!] with { Reliability = NodeReliability.Steady };

        w.Scale("web", 3);
        Assert.False(Settled());
        w.Settle();
        w.AllReady();
        Assert.True(Settled());

        w.Update("web", "shoal/sim:2");
        Assert.False(Settled());
    }

    [Fact]
    public void Planning_changes_nothing_it_was_given()
    {
        var w = new World();
        w.AddNode("a");
        w.AddNode("b");
        w.AddCluster("web", 2);
        w.Settle();
        w.AllReady();
        w.Update("web", "shoal/sim:2");
        w.Disconnect("a");
        w.Advance(TimeSpan.FromMinutes(1));
        var replicas = w.Replicas.ToDictionary();
        var nodes = w.Nodes.ToDictionary();
        var clusters = w.Clusters.ToDictionary();

        var plan = Reconciler.Plan(w.Input());

        Assert.False(plan.IsEmpty);
        Assert.Equal(replicas, w.Replicas);
        Assert.Equal(nodes, w.Nodes);
        Assert.Equal(clusters, w.Clusters);
    }

    [Fact]
    public void A_spec_that_fails_everywhere_backs_off_between_attempts_then_fails_and_an_update_recovers_it()
    {
        var w = new World { Options = new ReconcilerOptions { MaxFailedAttempts = 3, AttemptBackoff = TimeSpan.FromSeconds(10) } };
        w.AddNode("a");
        w.AddNode("b");
        w.AddNode("c");
        w.AddCluster("web", 1, image: "shoal/broken:1");
        w.Step();
        var nodesTried = new HashSet<string>(StringComparer.Ordinal);

        for (var attempt = 1; attempt <= 3; attempt++)
        {
            var r = Assert.Single(w.Of("web"));
            nodesTried.Add(r.NodeId!);
            w.Restart(r, 3, "exited with code 1; restarting in 4 s");
            w.Step();
            Assert.DoesNotContain(w.Replicas.Values, x => x.Id == r.Id);
            var rollout = w.Clusters["c-web"].Rollout;
            Assert.Equal(attempt, rollout.FailedAttempts);
            if (attempt == 3) break;

            // The next attempt waits its back-off: 10 s, then 20 s.
            var wait = TimeSpan.FromSeconds(10 * (1 << (attempt - 1)));
            Assert.Equal(w.Now + wait, rollout.RetryAt);
            Assert.Empty(w.Of("web"));
            w.Advance(wait - TimeSpan.FromSeconds(1));
            Assert.Empty(w.Of("web"));
            Assert.True(w.Step().IsEmpty);
            w.Advance(TimeSpan.FromSeconds(1));
            w.Step();
        }

        // Given up: failed with the reason, nothing runs, nothing is created however long one waits.
        var failed = w.Clusters["c-web"].Rollout;
        Assert.StartsWith("3 attempts failed before any replica was ready; last: crash-looping on", failed.Failure, StringComparison.Ordinal);
        Assert.Contains("exited with code 1", failed.Failure, StringComparison.Ordinal);
        Assert.Equal(3, nodesTried.Count);
        Assert.Empty(w.Of("web"));
        w.Advance(TimeSpan.FromHours(1));
        w.Step(); // the nodes it avoided expire
        Assert.True(w.Step().IsEmpty);
        Assert.Empty(w.Of("web"));
        Assert.Single(w.Events, e => e.Type == ClusterEventTypes.ClusterFailed);
        // One replacement event per attempt, no more.
        Assert.Equal(3, w.Events.Count(e => e.Type == ClusterEventTypes.Replaced));

        // An update with a fixed image tries again at once.
        w.Update("web", "shoal/sim:2");
        w.Step();
        var fixedReplica = Assert.Single(w.Of("web"));
        Assert.NotNull(fixedReplica.NodeId);
        w.AllReady();
        w.Settle();
        Assert.Equal(RolloutStates.Complete, w.Clusters["c-web"].Rollout.State);
        Assert.Null(w.Clusters["c-web"].Rollout.Failure);
    }

    [Fact]
    public void Attempts_count_only_while_the_spec_never_worked()
    {
        var w = new World { Options = new ReconcilerOptions { MaxFailedAttempts = 2, AttemptBackoff = TimeSpan.FromSeconds(10) } };
        w.AddNode("a");
        w.AddNode("b");
        w.AddCluster("web", 1);
        w.Step();
        var first = Assert.Single(w.Of("web"));
        w.Restart(first, 3, "exited with code 1");
        w.Step();
        Assert.Equal(1, w.Clusters["c-web"].Rollout.FailedAttempts);

        // The next one works: the count is cleared, and a later crash loop of a replica that was ready counts nothing.
        w.Advance(TimeSpan.FromSeconds(10));
        w.Step();
        var second = Assert.Single(w.Of("web"));
        w.Ready(second);
        w.Step();
        Assert.Equal(0, w.Clusters["c-web"].Rollout.FailedAttempts);
        Assert.Null(w.Clusters["c-web"].Rollout.RetryAt);
        w.Restart(second, 3, "exited with code 137");
        w.Step();
        Assert.Equal(0, w.Clusters["c-web"].Rollout.FailedAttempts);
        Assert.Null(w.Clusters["c-web"].Rollout.Failure);
        Assert.Single(w.Of("web"));
    }
}
