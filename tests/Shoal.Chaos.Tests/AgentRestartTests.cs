using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// The agent of a replica's node restarts, its replica does not: first a kill -9 of the agent
/// alone, then a SIGTERM (agents run with <c>--keep-replicas-on-exit</c>, as for an upgrade). Each
/// time the next agent re-adopts the running simulator process: same pid, same port, no restart.
/// Tunnel mode: the node's tunnels go with the agent, so meanwhile the edge sends everything to the
/// other replica.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
public sealed class AgentRestartTests(ITestOutputHelper output)
{
    [Fact]
    public async Task An_agent_killed_or_stopped_and_started_again_re_adopts_its_replica_without_restarting_it_and_fails_no_request()
    {
        await using var stack = await ChaosStack.StartAsync(output, new ChaosStackOptions
        {
            AgentArgs = ["--keep-replicas-on-exit"],
            // Nothing is to be replaced: the new agent's start (seconds of .NET start-up on a busy box) must not outlast the grace.
            GracePeriod = TimeSpan.FromSeconds(10),
        });
        try
        {
            await using var s = await Scenario.StartAsync(stack, output);
            var pids = stack.ReplicaProcesses();
            s.MarkFault();
            var figures = new List<(string, double)>();
            foreach (var (how, kill) in ((string, bool)[])[("kill", true), ("term", false)])
            {
                var agent = stack.Agents[s.VictimNodeName];
                var at = s.Now;
                if (kill)
                {
                    await agent.KillAsync();
                }
                else
                {
                    await agent.StopAsync(TimeSpan.FromSeconds(15));
                }
                var downMs = s.Now - at;
                // The server has seen it go (its socket closed), so "ready" below is the new agent's doing.
                await Eventually.GetAsync(stack.NodesAsync, n => n.Any(x => x.Id == s.VictimNode && x.State == NodeState.Disconnected), TimeSpan.FromSeconds(30), "node disconnected");
                Assert.All(s.VictimPids, pid => Assert.True(Scenario.IsAlive(pid), $"replica pid {pid} died with its agent ({how})"));

                var startAt = s.Now;
                stack.StartAgent(s.VictimNodeName);
                var readyAt = await s.WaitForNodeReadyAsync(TimeSpan.FromSeconds(30));
                Assert.Contains((await stack.StatusAsync()).Replicas, r => r.Id == s.Victim.Id);
                await Eventually.GetAsync(stack.StatusAsync, st => st.Cluster.ReadyReplicas == 2, TimeSpan.FromSeconds(30), "both replicas ready again");
                var replicaReadyAt = s.Now;
                var servedAt = await s.WaitForServedAsync(s.Victim.Id, startAt, TimeSpan.FromSeconds(20), "the re-adopted replica serving again");
                // The edges' first tunnel requests for the re-adopted port wait for it, not refused (issue 14, item 7).
                Assert.DoesNotContain("is not a replica on this node", stack.Agents[s.VictimNodeName].Output, StringComparison.Ordinal);

                // The same processes, nothing restarted, nothing duplicated.
                var status = await stack.StatusAsync();
                Assert.Equal(s.Before.Replicas.Select(r => r.Id).Order(), status.Replicas.Select(r => r.Id).Order());
                Assert.All(status.Replicas, r => Assert.Equal(0, r.Restarts));
                Assert.Equal(s.Victim.Address, status.Replicas.Single(r => r.Id == s.Victim.Id).Address);
                var running = stack.ReplicaProcesses();
                Assert.Equal(pids.Keys.Order(), running.Keys.Order());
                foreach (var (id, p) in pids) Assert.Equal(p, running[id]);

                figures.Add(($"{how}_agent_exit_ms", downMs));
                figures.Add(($"{how}_node_ready_after_start_ms", readyAt - startAt));
                figures.Add(($"{how}_replica_ready_after_start_ms", replicaReadyAt - startAt));
                figures.Add(($"{how}_served_again_after_start_ms", servedAt - startAt));
            }
            await s.Load.StopAsync();

            var events = await s.PrintEventsAsync();
            Assert.DoesNotContain(events, e => e.Type is ClusterEventTypes.Restarted or ClusterEventTypes.Replaced or ClusterEventTypes.Failed);

            var outcomes = s.Load.Outcomes.ToList();
            var afterFault = outcomes.Where(o => o.StartMs >= s.FaultAt).ToList();
            s.PrintSlowest(outcomes);
            figures.AddRange(
            [
                ("requests", outcomes.Count),
                ("failed", outcomes.Count(o => o.Failed)),
                ("max_ms_after_fault", afterFault.Count == 0 ? 0 : afterFault.Max(o => o.EndMs - o.StartMs)),
            ]);
            Figures.Report(output, "agent-restart", figures);
            Scenario.AssertNoneFailed(outcomes);
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }
}
