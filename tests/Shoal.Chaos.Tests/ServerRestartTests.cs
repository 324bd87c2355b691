using System.Net.Http.Json;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// The control plane dies in the middle of a deploy (a scale from 2 to 3 replicas, killed the
/// moment the API accepted it) and starts again on the same store. The edge is a standalone
/// <c>shoal edge</c> process, so traffic keeps flowing from its last route table meanwhile.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
public sealed class ServerRestartTests(ITestOutputHelper output)
{
    [Fact]
    public Task Kill_9_of_the_server_mid_deploy_on_sqlite_loses_nothing_duplicates_nothing_and_fails_no_request() =>
        ServerRestart.RunAsync(output, "server-kill-sqlite", database: null, sigkill: true);

    [Fact]
    public Task Sigterm_of_the_server_mid_deploy_on_sqlite_loses_nothing_duplicates_nothing_and_fails_no_request() =>
        ServerRestart.RunAsync(output, "server-term-sqlite", database: null, sigkill: false);
}

/// <summary>The same on PostgreSQL (a real server, see <see cref="PostgresServer"/>).</summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
[Trait(Categories.Name, Categories.Postgres)]
public sealed class ServerRestartPostgresTests(ITestOutputHelper output, PostgresFixture postgres) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task Kill_9_of_the_server_mid_deploy_on_postgres_loses_nothing_duplicates_nothing_and_fails_no_request() =>
        await ServerRestart.RunAsync(output, "server-kill-postgres", await postgres.CreateDatabaseAsync("chaos"), sigkill: true);
}

internal static class ServerRestart
{
    public static async Task RunAsync(ITestOutputHelper output, string scenario, string? database, bool sigkill)
    {
        // Nothing is to be replaced here, so the default grace (10 s): a starved box that makes an agent
        // miss heartbeats must not turn into a replacement the scenario would count as a duplicate.
        await using var stack = await ChaosStack.StartAsync(output, new ChaosStackOptions { StandaloneEdge = true, Database = database, GracePeriod = TimeSpan.FromSeconds(10) });
        try
        {
            await using var s = await Scenario.StartAsync(stack, output);
            var pidsBefore = stack.ReplicaProcesses();
            Assert.Equal(2, pidsBefore.Count);

            // The deploy: 2 → 3 replicas; the server dies the moment it has accepted it.
            var scaled = await stack.Api.PatchAsJsonAsync($"/v1/clusters/{ChaosStack.Cluster}", new UpdateClusterRequest { Replicas = 3 }, ShoalJsonContext.Default.UpdateClusterRequest);
            scaled.EnsureSuccessStatusCode();
            s.MarkFault();
            if (sigkill)
            {
                await stack.Server.KillAsync();
            }
            else
            {
                await stack.Server.StopAsync(TimeSpan.FromSeconds(15));
            }
            var downAt = s.Now;
            // Down for a while: the edge serves from its last route table, the agents carry on.
            await s.Load.WaitForMoreAsync(100, TimeSpan.FromSeconds(30));
            await Task.Delay(TimeSpan.FromSeconds(1));
            var restartAt = s.Now;
            await stack.StartServerAsync();
            var upAt = s.Now;

            var done = await Eventually.GetAsync(stack.StatusAsync,
                st => st.Cluster.Replicas == 3 && st.Cluster.ReadyReplicas == 3 && st.Replicas.Length == 3, TimeSpan.FromSeconds(60), "3 ready replicas after the restart");
            var doneAt = s.Now;
            var added = Assert.Single(done.Replicas, r => s.Before.Replicas.All(b => b.Id != r.Id));
            var servedAt = await s.WaitForServedAsync(added.Id, 0, TimeSpan.FromSeconds(20), "the new replica serving through the edge");
            await s.Load.StopAsync();

            // No duplicate: one process per replica the server knows, on distinct nodes; the two old
            // replicas are the same processes (not restarted); nothing else runs.
            var running = stack.ReplicaProcesses();
            Assert.Equal(done.Replicas.Select(r => r.Id).Order(), running.Keys.Order());
            Assert.All(running.Values, pids => Assert.Single(pids));
            foreach (var (id, pids) in pidsBefore) Assert.Equal(pids, running[id]);
            Assert.Equal(3, done.Replicas.Select(r => r.Node).Distinct().Count());
            Assert.All(done.Replicas, r => Assert.Equal(0, r.Restarts));
            // No cluster lost, none added.
            var clusters = await stack.Api.GetFromJsonAsync("/v1/clusters", ShoalJsonContext.Default.ClusterDtoArray);
            Assert.Equal(ChaosStack.Cluster, Assert.Single(clusters!).Name);

            var events = await s.PrintEventsAsync();
            Assert.Single(events, e => e.Type == ClusterEventTypes.Scaled);
            Assert.Single(events, e => e.Type == ClusterEventTypes.Scheduled && e.Replica == added.Id);
            Assert.DoesNotContain(events, e => e.Type is ClusterEventTypes.Replaced or ClusterEventTypes.Removed);

            var outcomes = s.Load.Outcomes.ToList();
            var duringDowntime = outcomes.Where(o => o.StartMs >= downAt && o.StartMs < upAt).ToList();
            s.PrintSlowest(outcomes);
            Figures.Report(output, scenario,
            [
                ("down_ms", restartAt - downAt),
                ("api_up_after_start_ms", upAt - restartAt),
                ("deploy_done_after_start_ms", doneAt - restartAt),
                ("new_replica_served_after_start_ms", servedAt - restartAt),
                ("requests_while_down", duringDowntime.Count),
                ("requests", outcomes.Count),
                ("failed", outcomes.Count(o => o.Failed)),
                ("max_ms_while_down", duringDowntime.Count == 0 ? 0 : duringDowntime.Max(o => o.EndMs - o.StartMs)),
            ]);

            Scenario.AssertNoneFailed(outcomes);
            Assert.NotEmpty(duringDowntime);
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }
}
