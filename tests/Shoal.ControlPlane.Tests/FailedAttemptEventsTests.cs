using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Model;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Issue 14, must-show 3: a spec that never works makes at most one event of each kind per attempt.
/// A crash loop and a pull retried with back-off report a failure and a restart each time; only the
/// first failure and the first restart of a replica (since it was last ready) are events, and the
/// replacement sums the loop up. Agents are played by calls, time is fake.
/// </summary>
public sealed class FailedAttemptEventsTests
{
    private static async Task<StateHarness> StartAsync()
    {
        var h = await StateHarness.StartAsync(o =>
        {
            o.MaxFailedAttempts = 2;
            o.AttemptBackoff = TimeSpan.FromSeconds(10);
        });
        await h.AddNodeAsync("node-1");
        await h.AddNodeAsync("node-2");
        await h.State.CreateClusterAsync(new ClusterSpec { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 }, default);
        await h.ReconcileAsync();
        return h;
    }

    // The agent's reports of one replica going round its loop three times: fail, back-off, try again
    // (the agent clears the reason when it tries again).
    private static async Task LoopAsync(StateHarness h, string replica, ReplicaState trying, string failure)
    {
        await h.ReportAsync(replica, r => r with { State = trying });
        for (var restarts = 0; restarts < 3; restarts++)
        {
            var n = restarts;
            h.Time.Advance(TimeSpan.FromSeconds(1));
            await h.ReportAsync(replica, r => r with { State = ReplicaState.Failed, Restarts = n, ExitCode = trying == ReplicaState.Starting ? 3 : null, Reason = failure });
            h.Time.Advance(TimeSpan.FromSeconds(1));
            await h.ReportAsync(replica, r => r with { State = trying, Restarts = n + 1, ExitCode = null, Reason = null });
        }
        // The third restart is seen while it tries again (no reason then): the replacement still says why, from its last failure.
        await h.ReconcileAsync();
    }

    private static async Task<string[]> EventsOfAsync(StateHarness h, string replica) =>
        (await h.EventsAsync()).Where(e => e.ReplicaId == replica).Select(e => e.Type).ToArray();

    [Fact]
    public async Task A_crash_loop_and_a_failing_pull_make_one_event_of_each_kind_per_attempt()
    {
        await using var h = await StartAsync();

        // Attempt 1: the process exits at once, three times.
        var first = Assert.Single(await h.ReplicasAsync()).Replica.Id;
        await LoopAsync(h, first, ReplicaState.Starting, "exited with code 3; restarting in 1 s");
        Assert.Equal(
            [ClusterEventTypes.Scheduled, ClusterEventTypes.Started, ClusterEventTypes.Failed, ClusterEventTypes.Restarted, ClusterEventTypes.Replaced],
            await EventsOfAsync(h, first));
        var replaced = (await h.EventsAsync()).Single(e => e.Type == ClusterEventTypes.Replaced);
        Assert.Contains("crash-looping on node-", replaced.Message, StringComparison.Ordinal);
        Assert.Contains(" (3 restarts within 300 s; last: exited with code 3", replaced.Message, StringComparison.Ordinal);
        Assert.EndsWith("; removed at once (not serving); attempt 1 of 2 failed, next in 10.0 s", replaced.Message, StringComparison.Ordinal);

        // Attempt 2 (after the back-off, on the other node): the image cannot be pulled, three times.
        h.Time.Advance(TimeSpan.FromSeconds(10));
        await h.ReconcileAsync();
        var second = Assert.Single(await h.ReplicasAsync()).Replica;
        Assert.NotEqual(replaced.NodeId, second.NodeId);
        await LoopAsync(h, second.Id, ReplicaState.Pulling, "image pull failed: registry answered 500; retrying in 1 s");
        Assert.Equal(
            [ClusterEventTypes.Scheduled, ClusterEventTypes.Pulling, ClusterEventTypes.Failed, ClusterEventTypes.Restarted, ClusterEventTypes.Replaced],
            await EventsOfAsync(h, second.Id));
        Assert.Contains("image pull failed: registry answered 500", (await h.EventsAsync()).Single(e => e.ReplicaId == second.Id && e.Type == ClusterEventTypes.Failed).Message, StringComparison.Ordinal);

        // The cluster gave up: one event for it, and nothing more however long one waits.
        var events = await h.EventsAsync();
        Assert.Single(events, e => e.Type == ClusterEventTypes.ClusterFailed);
        Assert.Equal(2, events.Count(e => e.Type == ClusterEventTypes.Replaced));
        var count = events.Count;
        h.Time.Advance(TimeSpan.FromMinutes(30));
        await h.ReconcileAsync();
        Assert.Equal(count, (await h.EventsAsync()).Count);
        Assert.Empty(await h.ReplicasAsync());
    }

    [Fact]
    public async Task Being_ready_again_ends_the_quiet_so_the_next_failure_is_an_event_again()
    {
        await using var h = await StartAsync();
        var replica = Assert.Single(await h.ReplicasAsync()).Replica.Id;
        await h.ReportAsync(replica, r => r with { State = ReplicaState.Starting });
        for (var round = 0; round < 2; round++)
        {
            var n = round;
            // Fails, restarts, fails again (quiet), restarts (quiet), and comes up.
            h.Time.Advance(TimeSpan.FromMinutes(3));
            await h.ReportAsync(replica, r => r with { State = ReplicaState.Failed, Restarts = 2 * n, ExitCode = 1, Reason = "exited with code 1; restarting in 1 s" });
            await h.ReportAsync(replica, r => r with { State = ReplicaState.Starting, Restarts = 2 * n + 1, ExitCode = null, Reason = null });
            await h.ReportAsync(replica, r => r with { State = ReplicaState.Failed, Restarts = 2 * n + 1, ExitCode = 1, Reason = "exited with code 1; restarting in 2 s" });
            await h.ReportAsync(replica, r => r with { State = ReplicaState.Starting, Restarts = 2 * n + 2, ExitCode = null, Reason = null });
            await h.ReadyAsync(replica);
        }

        Assert.Equal(
        [
            ClusterEventTypes.Scheduled, ClusterEventTypes.Started,
            ClusterEventTypes.Failed, ClusterEventTypes.Restarted, ClusterEventTypes.Ready,
            ClusterEventTypes.Failed, ClusterEventTypes.Restarted, ClusterEventTypes.Ready,
        ], await EventsOfAsync(h, replica));
        // The restart count in the replica's status is exact, quiet or not.
        Assert.Equal(4, Assert.Single(await h.ReplicasAsync()).Replica.Restarts);
    }

    [Fact]
    public async Task A_secret_the_replica_printed_before_it_exited_is_masked_in_its_reason_and_events()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("node-1");
        await h.State.CreateClusterAsync(new ClusterSpec
        {
            Name = "demo",
            Image = "shoal/sim",
            Gpu = "rtx-4090",
            Replicas = 1,
            SecretEnv = new() { ["HF_TOKEN"] = "hf_leaky-9f2" },
            // Any node will do here (secrets otherwise want a trusted one).
            NodeLabels = [],
        }, default);
        await h.ReconcileAsync();
        var replica = Assert.Single(await h.ReplicasAsync()).Replica.Id;

        await h.ReportAsync(replica, r => r with
        {
            State = ReplicaState.Failed,
            ExitCode = 1,
            Reason = "exited with code 1" + ExitOutput.Format("token hf_leaky-9f2 refused") + "; restarting in 1 s",
        });

        var failed = Assert.Single(await h.ReplicasAsync()).Replica;
        Assert.Equal("exited with code 1; last output: [token *** refused]; restarting in 1 s", failed.Reason);
        Assert.Equal(failed.Reason, failed.LastFailure);
        Assert.DoesNotContain(await h.EventsAsync(), e => e.Message.Contains("hf_leaky", StringComparison.Ordinal));
    }
}
