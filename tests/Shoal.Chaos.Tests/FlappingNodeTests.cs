using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// A flapping node: the agent of a replica's node dies (kill -9) and comes back three times in a
/// row, each time within the grace, so no single outage gets its replica replaced. The third drop
/// within ten minutes makes the node flapping: its replica moves to the steady spare node, the
/// flapping node's process is stopped when its agent is back, and no request fails meanwhile.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
public sealed class FlappingNodeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_node_that_keeps_dropping_is_marked_flapping_and_its_replica_moves_to_a_steady_node_without_failing_a_request()
    {
        await using var stack = await ChaosStack.StartAsync(output, new ChaosStackOptions
        {
            AgentArgs = ["--keep-replicas-on-exit"],
            // Each outage is short: only flapping, never the grace, may move the replica.
            GracePeriod = TimeSpan.FromSeconds(10),
        });
        try
        {
            await using var s = await Scenario.StartAsync(stack, output);
            s.MarkFault();
            double thirdDropAt = 0;
            for (var drop = 1; drop <= 3; drop++)
            {
                var at = s.Now;
                await stack.Agents[s.VictimNodeName].KillAsync();
                await Eventually.GetAsync(stack.NodesAsync, n => n.Any(x => x.Id == s.VictimNode && x.State == NodeState.Disconnected), TimeSpan.FromSeconds(30), $"drop {drop} seen");
                if (drop == 3)
                {
                    thirdDropAt = at;
                    break;
                }
                var replicas = (await stack.StatusAsync()).Replicas;
                Assert.Contains(replicas, r => r.Id == s.Victim.Id);
                stack.StartAgent(s.VictimNodeName);
                await s.WaitForNodeReadyAsync(TimeSpan.FromSeconds(30));
                await Eventually.GetAsync(stack.StatusAsync, st => st.Cluster.ReadyReplicas == 2, TimeSpan.FromSeconds(30), "both replicas ready again");
            }

            var flapping = (await stack.NodesAsync()).Single(n => n.Id == s.VictimNode);
            Assert.True(flapping.Flapping, $"node {flapping.Name}: {flapping.RecentDisconnects} recent disconnects, reliability {flapping.Reliability}");
            Assert.Equal(3, flapping.RecentDisconnects);
            var (_, replacement) = await s.WaitForReplacementAsync(TimeSpan.FromSeconds(30));
            var replacedAt = s.Now;
            var steady = (await stack.NodesAsync()).Single(n => n.Id == replacement.Node);
            Assert.False(steady.Flapping);

            // The flapping node comes back: the replica it ran is stopped there, not duplicated.
            stack.StartAgent(s.VictimNodeName);
            await s.WaitForNodeReadyAsync(TimeSpan.FromSeconds(30));
            await Eventually.UntilAsync(() => s.VictimPids.All(pid => !Scenario.IsAlive(pid)), TimeSpan.FromSeconds(30), "the moved replica's old process stopped");
            var servedAt = await s.WaitForServedAsync(replacement.Id, replacedAt - 1, TimeSpan.FromSeconds(20), "the replacement serving");
            await s.Load.StopAsync();

            var status = await stack.StatusAsync();
            Assert.Equal(2, status.Replicas.Length);
            Assert.DoesNotContain(status.Replicas, r => r.Node == s.VictimNode);
            Assert.Equal(2, stack.ReplicaProcesses().Count);
            var events = await s.PrintEventsAsync();
            Assert.Contains(events, e => e.Replica == s.Victim.Id && e.Type == ClusterEventTypes.Replaced && e.Message.Contains("flapping", StringComparison.Ordinal));

            var outcomes = s.Load.Outcomes.ToList();
            var afterFault = outcomes.Where(o => o.StartMs >= s.FaultAt).ToList();
            s.PrintSlowest(outcomes);
            Figures.Report(output, "flapping-node",
            [
                ("third_drop_to_replacement_ready_ms", replacedAt - thirdDropAt),
                ("third_drop_to_replacement_serving_ms", servedAt - thirdDropAt),
                ("reliability", flapping.Reliability),
                ("requests", outcomes.Count),
                ("failed", outcomes.Count(o => o.Failed)),
                ("max_ms_after_fault", afterFault.Count == 0 ? 0 : afterFault.Max(o => o.EndMs - o.StartMs)),
            ]);
            Scenario.AssertNoneFailed(outcomes);
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }
}
