using System.Diagnostics;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// Issue 4's chaos suite: real processes (server with its edge, three agents in tunnel mode,
/// simulator replicas), steady non-streaming load through the edge, then a fault. Each scenario
/// measures how long the system took to react, reports the figures (see <see cref="Figures"/>),
/// and asserts that no request failed. The time bounds asserted are looser than the goals in
/// <c>docs/reliability.md</c> so a loaded 2-core box does not make them flaky; the figures
/// printed are what to compare with the goals.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
public sealed class ChaosTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Kill_9_of_an_agent_and_its_replicas_fails_no_request_and_the_replicas_are_replaced()
    {
        await using var stack = await ChaosStack.StartAsync(output);
        try
        {
            var clock = Stopwatch.StartNew();
            var before = await stack.StatusAsync();
            var victim = before.Replicas[0];
            var victimNode = victim.Node!;
            var agent = stack.Agents[victim.NodeName!];
            var replicaPids = ReplicaProcesses.Find().GetValueOrDefault(victim.Id) ?? [];
            Assert.NotEmpty(replicaPids);

            await using var attempts = new AttemptWatcher(stack.EdgeAddress, stack.MetricsKey, clock);
            await using var load = new SteadyLoad(stack.EdgeAddress, stack.EndpointKey, ChaosStack.Cluster, clock);
            await load.WaitForMoreAsync(200, TimeSpan.FromSeconds(30));
            Assert.Contains(load.Outcomes, o => o.Replica == victim.Id);

            // The machine dies: agent and replicas, all SIGKILL, no goodbye.
            var killedAtUtc = DateTimeOffset.UtcNow;
            var killedAt = clock.Elapsed.TotalMilliseconds;
            KillNow(agent.Pid);
            foreach (var pid in replicaPids) KillNow(pid);
            await agent.KillAsync();

            var disconnected = await Eventually.GetAsync(stack.NodesAsync,
                n => n.Any(x => x.Id == victimNode && x.State is NodeState.Disconnected or NodeState.Offline), TimeSpan.FromSeconds(30), "node disconnected");
            var disconnectedMs = clock.Elapsed.TotalMilliseconds - killedAt;

            var replaced = await Eventually.GetAsync(stack.StatusAsync,
                s => s.Cluster.ReadyReplicas == 2 && s.Replicas.Length == 2 && s.Replicas.All(r => r.Node != victimNode && r.State == ReplicaState.Ready),
                TimeSpan.FromSeconds(60), "replacement ready");
            var replacementMs = clock.Elapsed.TotalMilliseconds - killedAt;
            var replacement = Assert.Single(replaced.Replicas, r => before.Replicas.All(b => b.Id != r.Id));
            Assert.NotEqual(victimNode, replacement.Node);

            // The replacement takes traffic.
            await Eventually.UntilAsync(() => load.Outcomes.Any(o => o.Replica == replacement.Id), TimeSpan.FromSeconds(15), "a request served by the replacement");
            await load.StopAsync();

            // The events tell the story, with the server's timestamps.
            var events = await stack.EventsAsync();
            foreach (var e in events.Where(e => e.At >= killedAtUtc.AddSeconds(-1)))
            {
                output.WriteLine($"{(e.At - killedAtUtc).TotalMilliseconds,8:0} ms  {e.Type,-10} {e.Replica,-14} {e.NodeName,-8} {e.Message}");
            }
            var lost = Assert.Single(events, e => e.Type == ClusterEventTypes.NodeLost && e.Replica == victim.Id);
            Assert.Equal(victim.NodeName, lost.NodeName);
            var replacedEvent = Assert.Single(events, e => e.Type == ClusterEventTypes.Replaced && e.Replica == victim.Id);
            Assert.Contains(events, e => e.Type == ClusterEventTypes.Scheduled && e.Replica == replacement.Id && e.Seq > replacedEvent.Seq);
            Assert.Contains(events, e => e.Type == ClusterEventTypes.Ready && e.Replica == replacement.Id);
            Assert.True(lost.Seq < replacedEvent.Seq);

            var outcomes = load.Outcomes.ToList();
            var lastServed = outcomes.Where(o => o.Replica == victim.Id).Max(o => o.EndMs);
            var lastAttempt = attempts.LastAttemptMs(victim.Id) ?? killedAt;
            var routedAwayMs = Math.Max(0, Math.Max(lastServed, lastAttempt) - killedAt);
            var failed = outcomes.Where(o => o.Failed).ToList();
            var duringOutage = outcomes.Where(o => o.StartMs >= killedAt && o.StartMs < killedAt + replacementMs).ToList();
            PrintSlowest(outcomes, killedAt);
            Figures.Report(output, "agent-kill",
            [
                ("routed_away_ms", routedAwayMs),
                ("disconnected_ms", disconnectedMs),
                ("node_lost_event_ms", (lost.At - killedAtUtc).TotalMilliseconds),
                ("replaced_event_ms", (replacedEvent.At - killedAtUtc).TotalMilliseconds),
                ("replacement_ready_ms", replacementMs),
                ("grace_ms", ChaosStack.GracePeriod.TotalMilliseconds),
                ("requests", outcomes.Count),
                ("failed", failed.Count),
                ("p99_ms_during_outage", Percentile(duringOutage.Select(o => o.EndMs - o.StartMs), 0.99)),
                ("max_ms_during_outage", duringOutage.Count == 0 ? 0 : duringOutage.Max(o => o.EndMs - o.StartMs)),
            ]);

            Assert.True(failed.Count == 0, $"{failed.Count} of {outcomes.Count} requests failed, first: {failed.FirstOrDefault()}");
            // Bounds well above the goals (1 s, 6 s, grace + 2 s): a starved 2-core box must not fail them;
            // the figures reported above are what docs/reliability.md compares with the goals.
            var grace = ChaosStack.GracePeriod.TotalMilliseconds;
            Assert.True(routedAwayMs < 5000, $"routed away after {routedAwayMs:0} ms (goal 1 s)");
            Assert.True(disconnectedMs < 10_000, $"disconnected after {disconnectedMs:0} ms (goal 6 s)");
            // The control plane's part: grace counted from the disconnect, plus at most one reconcile sweep.
            Assert.True((replacedEvent.At - killedAtUtc).TotalMilliseconds < grace + 5000, $"replaced {(replacedEvent.At - killedAtUtc).TotalMilliseconds:0} ms after the kill (grace {grace:0} ms)");
            // Then a new simulator process starts: .NET start-up, which a loaded box can stretch to seconds.
            Assert.True(replacementMs < grace + 15_000, $"replacement ready after {replacementMs:0} ms (goal grace + 2 s)");
            Assert.Equal(disconnected.Single(n => n.Id == victimNode).Name, victim.NodeName);
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }

    [Fact]
    public async Task Kill_9_of_a_replica_fails_no_request_and_its_agent_restarts_it()
    {
        await using var stack = await ChaosStack.StartAsync(output);
        try
        {
            var clock = Stopwatch.StartNew();
            var before = await stack.StatusAsync();
            var victim = before.Replicas[0];
            var replicaPids = ReplicaProcesses.Find().GetValueOrDefault(victim.Id) ?? [];
            Assert.NotEmpty(replicaPids);

            await using var attempts = new AttemptWatcher(stack.EdgeAddress, stack.MetricsKey, clock);
            await using var load = new SteadyLoad(stack.EdgeAddress, stack.EndpointKey, ChaosStack.Cluster, clock);
            await load.WaitForMoreAsync(200, TimeSpan.FromSeconds(30));
            Assert.Contains(load.Outcomes, o => o.Replica == victim.Id);

            var killedAt = clock.Elapsed.TotalMilliseconds;
            foreach (var pid in replicaPids) KillNow(pid);

            var seen = "";
            var restarted = await Eventually.GetAsync(async () =>
                {
                    var s = await stack.StatusAsync();
                    var r = s.Replicas.Single(r => r.Id == victim.Id);
                    var line = $"{r.State} healthy={r.Healthy} restarts={r.Restarts} reason={r.Reason}";
                    if (line != seen) output.WriteLine($"{clock.Elapsed.TotalMilliseconds - killedAt:0} ms: {line}");
                    seen = line;
                    return s;
                },
                s => s.Replicas.Any(r => r.Id == victim.Id && r.Restarts >= 1 && r.State == ReplicaState.Ready) && s.Cluster.ReadyReplicas == 2,
                TimeSpan.FromSeconds(30), "replica restarted and ready");
            var restartedMs = clock.Elapsed.TotalMilliseconds - killedAt;
            var again = restarted.Replicas.Single(r => r.Id == victim.Id);
            Assert.Equal(victim.Node, again.Node);
            Assert.Equal(1, again.Restarts);

            // Back in routing: it serves again.
            var backAt = clock.Elapsed.TotalMilliseconds;
            await Eventually.UntilAsync(() => load.Outcomes.Any(o => o.Replica == victim.Id && o.StartMs > backAt), TimeSpan.FromSeconds(15), "the restarted replica serving");
            await load.StopAsync();

            var events = await stack.EventsAsync();
            Assert.Contains(events, e => e.Type == ClusterEventTypes.Failed && e.Replica == victim.Id && e.Message.Contains("137", StringComparison.Ordinal));
            Assert.Contains(events, e => e.Type == ClusterEventTypes.Restarted && e.Replica == victim.Id && e.Message.StartsWith("restart 1", StringComparison.Ordinal));

            var outcomes = load.Outcomes.ToList();
            var failed = outcomes.Where(o => o.Failed).ToList();
            var gone = outcomes.Where(o => o.Replica == victim.Id && o.StartMs > killedAt).Select(o => o.StartMs).DefaultIfEmpty(double.NaN).Min();
            var duringOutage = outcomes.Where(o => o.StartMs >= killedAt && o.StartMs < killedAt + restartedMs).ToList();
            PrintSlowest(outcomes, killedAt);
            Figures.Report(output, "replica-kill",
            [
                ("restarted_ready_ms", restartedMs),
                ("first_served_again_ms", double.IsNaN(gone) ? -1 : gone - killedAt),
                ("requests", outcomes.Count),
                ("failed", failed.Count),
                ("p99_ms_during_outage", Percentile(duringOutage.Select(o => o.EndMs - o.StartMs), 0.99)),
                ("max_ms_during_outage", duringOutage.Count == 0 ? 0 : duringOutage.Max(o => o.EndMs - o.StartMs)),
            ]);

            Assert.True(failed.Count == 0, $"{failed.Count} of {outcomes.Count} requests failed, first: {failed.FirstOrDefault()}");
            // Restart back-off starts at 1 s; the rest is the simulator starting and one probe.
            Assert.True(restartedMs < 20_000, $"restarted and ready after {restartedMs:0} ms");
            Assert.NotNull(attempts.LastAttemptMs(victim.Id));
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }

    [Fact]
    public async Task A_frozen_node_goes_silent_fails_no_request_and_its_replica_is_replaced()
    {
        await using var stack = await ChaosStack.StartAsync(output);
        var frozen = new List<int>();
        try
        {
            var clock = Stopwatch.StartNew();
            var before = await stack.StatusAsync();
            var victim = before.Replicas[0];
            var victimNode = victim.Node!;
            var agent = stack.Agents[victim.NodeName!];
            var replicaPids = ReplicaProcesses.Find().GetValueOrDefault(victim.Id) ?? [];
            Assert.NotEmpty(replicaPids);

            await using var load = new SteadyLoad(stack.EdgeAddress, stack.EndpointKey, ChaosStack.Cluster, clock);
            await load.WaitForMoreAsync(200, TimeSpan.FromSeconds(30));

            // SIGSTOP: the machine hangs or its link goes dark. Unlike a crash, no socket closes: the
            // kernel keeps them open, so only missed heartbeats and tunnel pings can tell.
            var killedAtUtc = DateTimeOffset.UtcNow;
            var killedAt = clock.Elapsed.TotalMilliseconds;
            foreach (var pid in replicaPids.Append(agent.Pid))
            {
                Signal(pid, "STOP");
                frozen.Add(pid);
            }

            await Eventually.GetAsync(stack.NodesAsync,
                n => n.Any(x => x.Id == victimNode && x.State is NodeState.Disconnected or NodeState.Offline), TimeSpan.FromSeconds(30), "node disconnected");
            var disconnectedMs = clock.Elapsed.TotalMilliseconds - killedAt;
            var replaced = await Eventually.GetAsync(stack.StatusAsync,
                s => s.Cluster.ReadyReplicas == 2 && s.Replicas.Length == 2 && s.Replicas.All(r => r.Node != victimNode && r.State == ReplicaState.Ready),
                TimeSpan.FromSeconds(60), "replacement ready");
            var replacementMs = clock.Elapsed.TotalMilliseconds - killedAt;
            var replacement = Assert.Single(replaced.Replicas, r => before.Replicas.All(b => b.Id != r.Id));
            await Eventually.UntilAsync(() => load.Outcomes.Any(o => o.Replica == replacement.Id), TimeSpan.FromSeconds(15), "a request served by the replacement");
            // Requests stuck on the frozen node end when the edge gives up on its tunnels (ping timeout).
            await load.WaitForMoreAsync(50, TimeSpan.FromSeconds(30));
            await load.StopAsync();

            var events = await stack.EventsAsync();
            var lost = Assert.Single(events, e => e.Type == ClusterEventTypes.NodeLost && e.Replica == victim.Id);
            Assert.Contains("missed heartbeats", lost.Message, StringComparison.Ordinal);
            Assert.Contains(events, e => e.Type == ClusterEventTypes.Replaced && e.Replica == victim.Id);

            var outcomes = load.Outcomes.ToList();
            var failed = outcomes.Where(o => o.Failed).ToList();
            var afterKill = outcomes.Where(o => o.StartMs >= killedAt).ToList();
            // A request that started after the freeze and took over a second was sent to the frozen node:
            // the last such start is when the edge stopped sending there.
            var stuck = afterKill.Where(o => o.EndMs - o.StartMs > 1000).ToList();
            var routedAwayMs = stuck.Count == 0 ? 0 : stuck.Max(o => o.StartMs) - killedAt;
            PrintSlowest(outcomes, killedAt);
            Figures.Report(output, "node-freeze",
            [
                ("routed_away_ms", routedAwayMs),
                ("disconnected_ms", disconnectedMs),
                ("node_lost_event_ms", (lost.At - killedAtUtc).TotalMilliseconds),
                ("replacement_ready_ms", replacementMs),
                ("grace_ms", ChaosStack.GracePeriod.TotalMilliseconds),
                ("requests", outcomes.Count),
                ("failed", failed.Count),
                ("stuck_requests", stuck.Count),
                ("max_ms_after_freeze", afterKill.Count == 0 ? 0 : afterKill.Max(o => o.EndMs - o.StartMs)),
            ]);

            Assert.True(failed.Count == 0, $"{failed.Count} of {outcomes.Count} requests failed, first: {failed.FirstOrDefault()}");
            // 3 heartbeats of 2 s missed, plus up to one 1 s sweep: the goal is 6 s.
            Assert.True(disconnectedMs < 15_000, $"disconnected after {disconnectedMs:0} ms (goal 6 s)");
            Assert.True(replacementMs < disconnectedMs + ChaosStack.GracePeriod.TotalMilliseconds + 15_000, $"replacement ready after {replacementMs:0} ms");
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
        finally
        {
            // Frozen processes die with the stack (SIGKILL works on stopped processes); let them go first.
            foreach (var pid in frozen) Signal(pid, "CONT");
        }
    }

    private void PrintSlowest(IEnumerable<RequestOutcome> outcomes, double killedAt) => Scenario.PrintSlowest(output, outcomes, killedAt);

    private static void Signal(int pid, string signal) => Scenario.Signal(pid, signal);

    private static void KillNow(int pid) => Scenario.KillNow(pid);

    private static double Percentile(IEnumerable<double> values, double p) => Scenario.Percentile(values, p);
}
