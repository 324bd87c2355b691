using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// A node cut off the network: every agent runs in a network namespace of its own, and the cut
/// drops every packet on the victim's veth, both ways (sockets stay open, nothing is told: a pulled
/// cable). Heartbeats every 500 ms, so the server notices in 1.5-2.5 s. Grace 10 s for the short
/// cut (the node must come back in time even when its agent's socket takes a few seconds to notice
/// the server closed it: TCP retransmission back-off), 4 s for the long one.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
public sealed class NetworkCutTests(ITestOutputHelper output)
{
    internal static readonly ChaosStackOptions Options = new()
    {
        NetworkNamespaces = true,
        HeartbeatInterval = TimeSpan.FromMilliseconds(500),
        GracePeriod = TimeSpan.FromSeconds(4),
    };

    private static readonly ChaosStackOptions s_shortCutOptions = Options with { GracePeriod = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task A_node_cut_off_for_less_than_the_grace_keeps_its_replica_and_serves_again_when_it_returns()
    {
        await using var stack = await ChaosStack.StartAsync(output, s_shortCutOptions);
        try
        {
            await using var s = await Scenario.StartAsync(stack, output);

            s.MarkFault();
            stack.Cut(s.VictimNodeName);
            var disconnectedMs = await s.WaitForDisconnectAsync(TimeSpan.FromSeconds(15));
            // Out a little longer than it took to notice, well within the grace.
            await Task.Delay(TimeSpan.FromSeconds(1));
            var cutMs = s.SinceFault;
            stack.Restore(s.VictimNodeName);
            var restoredAt = s.Now;

            var backAt = await s.WaitForNodeReadyAsync(TimeSpan.FromSeconds(15));
            Assert.Contains((await stack.StatusAsync()).Replicas, r => r.Id == s.Victim.Id);
            var servedAgainAt = await s.WaitForServedAsync(s.Victim.Id, restoredAt, TimeSpan.FromSeconds(15), "the cut node's replica serving again");
            await s.Load.StopAsync();

            // Nothing was replaced: the same replicas, the same processes.
            var after = await stack.StatusAsync();
            Assert.Equal(s.Before.Replicas.Select(r => r.Id).Order(), after.Replicas.Select(r => r.Id).Order());
            Assert.All(after.Replicas, r => Assert.Equal(ReplicaState.Ready, r.State));
            Assert.Equal(s.VictimPids, stack.ReplicaProcesses()[s.Victim.Id]);
            var events = await s.PrintEventsAsync();
            Assert.DoesNotContain(events, e => e.Type == ClusterEventTypes.Replaced);
            var lost = Assert.Single(events, e => e.Type == ClusterEventTypes.NodeLost && e.Replica == s.Victim.Id);
            Assert.Contains("missed heartbeats", lost.Message, StringComparison.Ordinal);
            Assert.Single(events, e => e.Type == ClusterEventTypes.NodeBack && e.Replica == s.Victim.Id);

            var outcomes = s.Load.Outcomes.ToList();
            var afterCut = outcomes.Where(o => o.StartMs >= s.FaultAt).ToList();
            s.PrintSlowest(outcomes);
            Figures.Report(output, "cut-short",
            [
                ("disconnected_ms", disconnectedMs),
                ("cut_ms", cutMs),
                ("back_after_restore_ms", backAt - restoredAt),
                ("served_again_after_restore_ms", servedAgainAt - restoredAt),
                ("requests", outcomes.Count),
                ("failed", outcomes.Count(o => o.Failed)),
                ("max_ms_after_cut", afterCut.Count == 0 ? 0 : afterCut.Max(o => o.EndMs - o.StartMs)),
            ]);

            Scenario.AssertNoneFailed(outcomes);
            Assert.True(disconnectedMs < 10_000, $"disconnected after {disconnectedMs:0} ms (3 missed heartbeats of 500 ms)");
            Assert.True(servedAgainAt - restoredAt < 10_000, $"served again {servedAgainAt - restoredAt:0} ms after the link returned");
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }

    [Fact]
    public async Task A_node_cut_off_past_the_grace_is_replaced_and_its_surplus_replica_stopped_when_it_returns()
    {
        await using var stack = await ChaosStack.StartAsync(output, Options);
        try
        {
            await using var s = await Scenario.StartAsync(stack, output);

            s.MarkFault();
            stack.Cut(s.VictimNodeName);
            var disconnectedMs = await s.WaitForDisconnectAsync(TimeSpan.FromSeconds(15));
            var (_, replacement) = await s.WaitForReplacementAsync(TimeSpan.FromSeconds(30));
            var replacementMs = s.SinceFault;
            await s.WaitForServedAsync(replacement.Id, 0, TimeSpan.FromSeconds(15), "a request served by the replacement");
            // The old replica still runs on the cut node, which cannot be told yet.
            Assert.All(s.VictimPids, pid => Assert.True(Scenario.IsAlive(pid), $"replica pid {pid} on the cut node died during the cut"));

            var cutMs = s.SinceFault;
            stack.Restore(s.VictimNodeName);
            var restoredAt = s.Now;
            var backAt = await s.WaitForNodeReadyAsync(TimeSpan.FromSeconds(20));
            await Eventually.UntilAsync(() => s.VictimPids.All(pid => !Scenario.IsAlive(pid)), TimeSpan.FromSeconds(20), "the surplus replica stopped on the returned node");
            var surplusStoppedAt = s.Now;
            // Requests stuck on the cut node end when the link returns or the edge gives up its tunnels.
            await s.Load.WaitForMoreAsync(50, TimeSpan.FromSeconds(30));
            await s.Load.StopAsync();

            // Exactly the desired count, once each: no duplicate, nothing of the old replica left.
            var after = await stack.StatusAsync();
            Assert.Equal(2, after.Replicas.Length);
            Assert.All(after.Replicas, r => Assert.Equal(ReplicaState.Ready, r.State));
            Assert.DoesNotContain(after.Replicas, r => r.Id == s.Victim.Id || r.Node == s.VictimNode);
            var running = stack.ReplicaProcesses();
            Assert.Equal(after.Replicas.Select(r => r.Id).Order(), running.Keys.Order());
            Assert.All(running.Values, pids => Assert.Single(pids));
            var nodes = await stack.NodesAsync();
            Assert.Equal(0, nodes.Single(n => n.Id == s.VictimNode).Replicas);

            var events = await s.PrintEventsAsync();
            var lost = Assert.Single(events, e => e.Type == ClusterEventTypes.NodeLost && e.Replica == s.Victim.Id);
            var replaced = Assert.Single(events, e => e.Type == ClusterEventTypes.Replaced && e.Replica == s.Victim.Id);
            Assert.DoesNotContain(events, e => e.Type == ClusterEventTypes.NodeBack);

            var outcomes = s.Load.Outcomes.ToList();
            var afterCut = outcomes.Where(o => o.StartMs >= s.FaultAt).ToList();
            var lastAttempt = s.Attempts.LastAttemptMs(s.Victim.Id) ?? s.FaultAt;
            s.PrintSlowest(outcomes);
            Figures.Report(output, "cut-long",
            [
                ("disconnected_ms", disconnectedMs),
                ("node_lost_event_ms", (lost.At - s.FaultAtUtc).TotalMilliseconds),
                ("replaced_event_ms", (replaced.At - s.FaultAtUtc).TotalMilliseconds),
                ("replacement_ready_ms", replacementMs),
                ("replacement_after_disconnect_ms", replacementMs - disconnectedMs),
                ("grace_ms", stack.Grace.TotalMilliseconds),
                ("cut_ms", cutMs),
                ("back_after_restore_ms", backAt - restoredAt),
                ("surplus_stopped_after_restore_ms", surplusStoppedAt - restoredAt),
                ("last_attempt_on_cut_node_ms", lastAttempt - s.FaultAt),
                ("requests", outcomes.Count),
                ("failed", outcomes.Count(o => o.Failed)),
                ("max_ms_after_cut", afterCut.Count == 0 ? 0 : afterCut.Max(o => o.EndMs - o.StartMs)),
            ]);

            Scenario.AssertNoneFailed(outcomes);
            Assert.True(disconnectedMs < 10_000, $"disconnected after {disconnectedMs:0} ms (3 missed heartbeats of 500 ms)");
            Assert.True(replacementMs - disconnectedMs < stack.Grace.TotalMilliseconds + 15_000,
                $"replacement ready {replacementMs - disconnectedMs:0} ms after the disconnect (goal grace + 2 s)");
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }
}
