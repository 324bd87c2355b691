using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Agent.Replicas;
using Shoal.Contracts;
using static Shoal.Agent.Tests.Replicas.ConvergerTests;

namespace Shoal.Agent.Tests.Replicas;

public class PullingReplicaTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly PullingFakeRuntime _runtime = new();
    private readonly ReplicaManager _manager;

    public PullingReplicaTests()
    {
        _manager = new ReplicaManager([_runtime], new FakeProbe(), new ReplicaManagerOptions(), _time, NullLoggerFactory.Instance);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _manager.DisposeAsync();

    private ReplicaReport? Report(string id) => _manager.Snapshot().FirstOrDefault(r => r.ReplicaId == id);

    [Fact]
    public async Task Pulling_shows_its_progress_then_the_pinned_digest_and_cold_start_times()
    {
        _runtime.PullError = null;
        _runtime.PullGate = new TaskCompletionSource();
        _manager.Apply(1, [A("r1", "fake/app")]);

        await Poll.UntilAsync(() => Report("r1") is { State: ReplicaState.Pulling, PullProgress: 42 }, "pulling at 42%");
        _time.Advance(TimeSpan.FromSeconds(3));
        _runtime.PullGate.SetResult();

        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Ready, "ready");
        var report = Report("r1")!;
        Assert.Null(report.PullProgress);
        Assert.Equal("sha256:" + new string('f', 64), report.ImageDigest);
        Assert.Equal(_time.GetUtcNow(), report.PulledAt);
        Assert.Equal(report.PulledAt, report.StartedAt);
        Assert.Equal(report.StartedAt, report.ReadyAt);
    }

    [Fact]
    public async Task A_failed_pull_shows_its_reason_and_is_retried_with_doubling_backoff()
    {
        _manager.Apply(1, [A("r1", "fake/app")]);

        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Failed, "failed");
        var failed = Report("r1")!;
        Assert.Equal("image pull failed: no such tag: fake/app:nosuchtag; retrying in 1 s", failed.Reason);
        Assert.False(failed.Healthy);
        Assert.Null(failed.PullProgress);
        Assert.Equal(1, _runtime.Pulls);

        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal(1, _runtime.Pulls);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        await Poll.UntilAsync(() => _runtime.Pulls == 2 && Report("r1")?.Reason?.EndsWith("retrying in 2 s", StringComparison.Ordinal) == true, "second pull, then 2 s");
        Assert.Equal(1, Report("r1")!.Restarts);

        _runtime.PullError = null;
        _time.Advance(TimeSpan.FromSeconds(2));
        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Ready, "ready once the image is there");
        Assert.Null(Report("r1")!.Reason);
        Assert.Equal(0, _runtime.Inner.Started.Count(i => i.StopRequested));
    }

    [Fact]
    public async Task A_replica_stopped_while_pulling_leaves_no_container_behind()
    {
        _runtime.PullGate = new TaskCompletionSource();
        _manager.Apply(1, [A("r1", "fake/app"), A("r2", "fake/app")]);
        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Pulling, "pulling");
        Assert.Contains(_runtime.Sweeps, keep => keep.SetEquals(["r1", "r2"]));

        _manager.Apply(2, [A("r2", "fake/app")]);

        // Once r1's worker is gone, a sweep keeps r2 only, so whatever r1 had is removed.
        await Poll.UntilAsync(() => _runtime.Sweeps.Any(keep => keep.SetEquals(["r2"])), "a sweep without r1");
        Assert.Null(Report("r1"));
    }

    [Fact]
    public async Task The_heartbeat_sweep_runs_only_once_an_assignment_set_arrived_and_holds_back_workers_created_meanwhile()
    {
        // A restart without the server removes nothing.
        await _manager.SweepOrphansAsync();
        Assert.Empty(_runtime.Sweeps);

        _runtime.PullError = null;
        _manager.Apply(1, [A("r1", "fake/app")]);
        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Ready, "ready");
        var afterApply = _runtime.Sweeps.Count;

        // A sweep that began before r2 existed would take what r2 starts for an orphan: r2 waits for it.
        _runtime.SweepGate = new TaskCompletionSource();
        var sweep = _manager.SweepOrphansAsync();
        await Poll.UntilAsync(() => _runtime.Sweeps.Count == afterApply + 1, "the heartbeat's sweep");
        Assert.True(_runtime.Sweeps.Last().SetEquals(["r1"]));
        // One at a time: a second heartbeat while it runs skips its sweep.
        await _manager.SweepOrphansAsync();
        _manager.Apply(2, [A("r1", "fake/app"), A("r2", "fake/app")]);
        await Task.Delay(100);
        Assert.Equal(ReplicaState.Assigned, Report("r2")!.State);
        Assert.Equal(1, _runtime.Pulls);

        _runtime.SweepGate.SetResult();
        await sweep;
        await Poll.UntilAsync(() => Report("r2")?.State == ReplicaState.Ready, "r2 ready once the sweep is done");
        Assert.All(_runtime.Sweeps.Skip(afterApply + 1), keep => Assert.Contains("r2", keep));
    }

    [Fact]
    public async Task A_tunnel_asking_for_a_replica_port_right_after_a_restart_waits_for_the_re_adoption_instead_of_being_refused()
    {
        // The agent has just started: the edge asks for the port its route table has, before the assignment set came.
        _runtime.PullError = null;
        _runtime.PullGate = new TaskCompletionSource();
        var early = _manager.WaitForReplicaPortAsync(20001, CancellationToken.None).AsTask();
        await Task.Yield();
        Assert.False(early.IsCompleted);

        // The set arrives; the replica is still being adopted (its image checked, then its instance found).
        _manager.Apply(1, [A("r1", "fake/app")]);
        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Pulling, "pulling");
        Assert.False(early.IsCompleted);
        _runtime.PullGate.SetResult();

        Assert.True(await early.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(20001, Report("r1")!.HostPort);

        // Settled: a port that is no replica's is refused at once.
        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Ready, "ready");
        Assert.False(await _manager.WaitForReplicaPortAsync(20002, CancellationToken.None));
    }

    [Fact]
    public async Task While_settling_an_unknown_port_is_refused_after_the_settle_wait()
    {
        _runtime.PullGate = new TaskCompletionSource();
        _manager.Apply(1, [A("r1", "fake/app")]);
        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Pulling, "pulling");

        var wait = _manager.WaitForReplicaPortAsync(30000, CancellationToken.None).AsTask();
        await Task.Yield();
        Assert.False(wait.IsCompleted);
        _time.Advance(ReplicaManager.SettleWait);

        Assert.False(await wait.WaitAsync(TimeSpan.FromSeconds(10)));
        _runtime.PullGate.SetResult();
    }

    [Fact]
    public async Task On_agent_shutdown_replicas_of_a_runtime_that_outlives_it_are_left_running()
    {
        _runtime.PullError = null;
        _manager.Apply(1, [A("r1", "fake/app")]);
        await Poll.UntilAsync(() => Report("r1")?.State == ReplicaState.Ready, "ready");

        await _manager.ShutdownAsync();

        Assert.False(_runtime.Inner.Last("r1").StopRequested);
        Assert.False(_runtime.Inner.Last("r1").Exited.IsCompleted);
        Assert.Empty(_manager.Snapshot());
    }
}
