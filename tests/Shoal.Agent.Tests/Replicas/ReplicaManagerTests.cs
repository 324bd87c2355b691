using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Agent.Replicas;
using Shoal.Contracts;
using static Shoal.Agent.Tests.Replicas.ConvergerTests;

namespace Shoal.Agent.Tests.Replicas;

public class ReplicaManagerTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly FakeRuntime _runtime = new();
    private readonly FakeProbe _probe = new();
    private readonly ReplicaManager _manager;

    public ReplicaManagerTests()
    {
        _manager = new ReplicaManager([_runtime], _probe, new ReplicaManagerOptions(), _time, NullLoggerFactory.Instance);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _manager.DisposeAsync();

    private ReplicaReport? Report(string id) => _manager.Snapshot().FirstOrDefault(r => r.ReplicaId == id);

    private Task WaitForState(string id, ReplicaState state) =>
        Poll.UntilAsync(() => Report(id)?.State == state, $"{id} to be {state}");

    [Fact]
    public async Task Starts_replicas_and_reports_them_ready_with_load()
    {
        _manager.Apply(1, [A("r1", "fake/app")]);

        await WaitForState("r1", ReplicaState.Ready);
        await Poll.UntilAsync(() => Report("r1")?.Load is not null, "load");

        var report = Report("r1")!;
        Assert.True(report.Healthy);
        Assert.Equal(_runtime.Last("r1").HostPort, report.HostPort);
        Assert.Equal(_time.GetUtcNow(), report.StartedAt);
        Assert.Equal(report.StartedAt, report.PulledAt);
        Assert.Equal(report.StartedAt, report.ReadyAt);
        Assert.Equal(5, report.Load!.Waiting);
        Assert.Equal(1, _manager.AppliedRevision);
        // The model list is read once the replica is ready, for the gateway's routing by model.
        await Poll.UntilAsync(() => Report("r1")?.Models is not null, "models");
        Assert.Equal(["fake-model"], Report("r1")!.Models!);
    }

    [Fact]
    public async Task Same_set_again_is_a_no_op_and_keeps_the_instance()
    {
        _manager.Apply(1, [A("r1", "fake/app")]);
        await WaitForState("r1", ReplicaState.Ready);

        var plan = _manager.Apply(2, [A("r1", "fake/app")]);

        Assert.True(plan.IsEmpty);
        Assert.Equal(1, _runtime.Count("r1"));
        Assert.False(_runtime.Last("r1").StopRequested);
        Assert.Equal(2, _manager.AppliedRevision);
    }

    [Fact]
    public async Task Unlisted_replicas_are_stopped_and_dropped()
    {
        _manager.Apply(1, [A("r1", "fake/app"), A("r2", "fake/app")]);
        await WaitForState("r1", ReplicaState.Ready);
        await WaitForState("r2", ReplicaState.Ready);

        _manager.Apply(2, [A("r2", "fake/app")]);

        await Poll.UntilAsync(() => Report("r1") is null, "r1 to be gone");
        Assert.True(_runtime.Last("r1").StopRequested);
        Assert.False(_runtime.Last("r2").StopRequested);
        Assert.Equal(ReplicaState.Ready, Report("r2")!.State);
    }

    [Fact]
    public async Task Unknown_image_fails_with_the_runtime_reason_and_is_not_retried()
    {
        _manager.Apply(1, [A("r1", "evil/miner")]);

        await WaitForState("r1", ReplicaState.Failed);

        Assert.Equal("image evil/miner is not allowed by the fake runtime", Report("r1")!.Reason);
        Assert.Equal(0, _runtime.Count("r1"));
    }

    [Fact]
    public async Task Crashed_replica_restarts_with_doubling_backoff_on_the_clock()
    {
        _manager.Apply(1, [A("r1", "fake/app")]);
        await WaitForState("r1", ReplicaState.Ready);

        _runtime.Last("r1").Exit(3);
        await WaitForState("r1", ReplicaState.Failed);
        var failed = Report("r1")!;
        Assert.Equal(3, failed.ExitCode);
        Assert.False(failed.Healthy);
        Assert.Contains("exited with code 3", failed.Reason, StringComparison.Ordinal);

        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal(1, _runtime.Count("r1"));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        await Poll.UntilAsync(() => _runtime.Count("r1") == 2, "first restart");
        await WaitForState("r1", ReplicaState.Ready);
        Assert.Equal(1, Report("r1")!.Restarts);

        _runtime.Last("r1").Exit(4);
        await WaitForState("r1", ReplicaState.Failed);
        _time.Advance(TimeSpan.FromMilliseconds(1999));
        Assert.Equal(2, _runtime.Count("r1"));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        await Poll.UntilAsync(() => _runtime.Count("r1") == 3, "second restart");
        await WaitForState("r1", ReplicaState.Ready);
        Assert.Equal(2, Report("r1")!.Restarts);
        Assert.Equal(4, Report("r1")!.ExitCode);
    }

    [Fact]
    public async Task Failing_probes_make_a_ready_replica_unhealthy_then_ready_again()
    {
        _manager.Apply(1, [A("r1", "fake/app") with { Health = new HealthCheckSpec { IntervalMs = 1000, FailureThreshold = 3 } }]);
        await WaitForState("r1", ReplicaState.Ready);

        _probe.Healthy = false;
        var before = _probe.Probes;
        // Two failures are tolerated; the third one flips it.
        await AdvanceUntil(() => _probe.Probes >= before + 2);
        Assert.Equal(ReplicaState.Ready, Report("r1")!.State);
        await AdvanceUntil(() => Report("r1")!.State == ReplicaState.Unhealthy);
        Assert.False(Report("r1")!.Healthy);
        Assert.True(_probe.Probes >= before + 3);

        _probe.Healthy = true;
        await AdvanceUntil(() => Report("r1")!.State == ReplicaState.Ready);
        Assert.True(Report("r1")!.Healthy);
    }

    [Fact]
    public async Task A_replica_unhealthy_for_too_long_is_stopped_and_restarted_with_doubling_backoff()
    {
        _manager.Apply(1, [A("r1", "fake/app") with { Health = new HealthCheckSpec { IntervalMs = 1000, FailureThreshold = 3 } }]);
        await WaitForState("r1", ReplicaState.Ready);

        for (var round = 1; round <= 2; round++)
        {
            var instance = _runtime.Last("r1");
            _probe.Healthy = false;
            while (Report("r1")!.State != ReplicaState.Unhealthy)
            {
                await AdvanceOneProbe(instance);
            }
            var unhealthyAt = _time.GetUtcNow();
            Assert.False(Report("r1")!.Healthy);

            // Out of routing at once, but left running for UnhealthyRestartAfter (5 s) in case it recovers.
            while (!instance.StopRequested)
            {
                Assert.True(_time.GetUtcNow() - unhealthyAt < TimeSpan.FromSeconds(6), "not stopped 5 s after turning unhealthy");
                await AdvanceOneProbe(instance);
            }
            Assert.True(_time.GetUtcNow() - unhealthyAt >= TimeSpan.FromSeconds(5), "stopped before 5 s unhealthy");

            // Restarted after the crash back-off: 1 s, then 2 s.
            var backoff = TimeSpan.FromSeconds(round == 1 ? 1 : 2);
            await Poll.UntilAsync(() => Report("r1")!.Reason?.Contains("; restarting in", StringComparison.Ordinal) == true, "restart reason");
            var waiting = Report("r1")!;
            Assert.Equal(ReplicaState.Unhealthy, waiting.State);
            Assert.Equal($"health check /health failing for 5 s; restarting in {backoff.TotalSeconds:0} s", waiting.Reason);
            _time.Advance(backoff - TimeSpan.FromMilliseconds(1));
            await Task.Delay(50);
            Assert.Equal(round, _runtime.Count("r1"));
            _probe.Healthy = true;
            _time.Advance(TimeSpan.FromMilliseconds(1));
            await Poll.UntilAsync(() => _runtime.Count("r1") == round + 1, "restart");
            await WaitForState("r1", ReplicaState.Ready);
            Assert.Equal(round, Report("r1")!.Restarts);
        }
    }

    // One probe interval on the fake clock, then waits (real time) for that probe to have run, so
    // the worker has acted on it before the clock moves again.
    private async Task AdvanceOneProbe(FakeInstance instance)
    {
        var probes = _probe.Probes;
        _time.Advance(TimeSpan.FromMilliseconds(1000));
        await Poll.UntilAsync(() => _probe.Probes > probes || instance.StopRequested, "a probe");
        await Task.Delay(10);
    }

    [Fact]
    public async Task State_changes_signal_a_heartbeat()
    {
        while (_manager.Changes.TryRead(out _))
        {
        }

        _manager.Apply(1, [A("r1", "fake/app")]);

        Assert.True(await _manager.Changes.WaitToReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
    }

    // Moves the fake clock one probe interval at a time until the condition holds.
    private async Task AdvanceUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not reached");
            _time.Advance(TimeSpan.FromMilliseconds(1000));
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task The_first_probe_waits_for_the_initial_delay_and_the_replica_stays_starting()
    {
        _manager.Apply(1, [A("r1", "fake/app") with { Health = new HealthCheckSpec { InitialDelayMs = 60_000 } }]);
        await Poll.UntilAsync(() => Report("r1")?.Reason == "first health probe after the initial delay of 60 s", "waiting for the initial delay");

        _time.Advance(TimeSpan.FromSeconds(59));
        await Task.Delay(50);
        Assert.Equal(0, _probe.Probes);
        Assert.Equal(ReplicaState.Starting, Report("r1")!.State);

        _time.Advance(TimeSpan.FromSeconds(1));
        await WaitForState("r1", ReplicaState.Ready);
        Assert.True(_probe.Probes >= 1);
        Assert.Equal(_time.GetUtcNow(), Report("r1")!.ReadyAt);
    }
}
