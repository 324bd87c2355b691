using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Issue 14, item 3: a spec whose replicas crash before they are ever ready settles. After a
/// bounded number of attempts with a growing back-off the cluster is failed with the reason, runs
/// nothing, the edge answers 503 with the reason at once (no 30 s hold), and an update tries again.
/// A real server and edge; the agent is played on the wire protocol.
/// </summary>
public sealed class FailedClusterTests
{
    [Fact]
    public async Task A_replica_that_crashes_on_every_attempt_fails_the_cluster_with_the_reason_and_an_update_recovers_it()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-12-05T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        await using var server = await TestServer.StartAsync(time, o =>
        {
            o.MaxFailedAttempts = 2;
            o.AttemptBackoff = TimeSpan.FromSeconds(10);
            o.CrashLoopRestarts = 2;
            // The played agent sends no heartbeats while the clock jumps: it must not be taken for silent.
            o.HeartbeatInterval = TimeSpan.FromHours(1);
        });
        var state = server.Server.Services.GetRequiredService<ControlPlaneState>();
        var (joined, _) = await WireAgent.RegisterAsync(server.AgentUri, await server.CreateTokenAsync(), "node-a");
        await using var agent = joined!;
        await agent.SendAsync(WireAgent.Hello("node-a", ("rtx-4090", 1)));
        await agent.ReceiveAsync<WelcomeMessage>();
        await agent.ReceiveAsync<AssignmentsMessage>();
        (await server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 },
            ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();

        for (var attempt = 1; attempt <= 2; attempt++)
        {
            var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
            while (assigned.Replicas.Length == 0) assigned = await agent.ReceiveAsync<AssignmentsMessage>();
            var replica = Assert.Single(assigned.Replicas).ReplicaId;
            // The process exits at once, again and again: the agent says so.
            await agent.SendAsync(new HeartbeatMessage
            {
                AppliedRevision = assigned.Revision,
                Replicas = [new ReplicaReport { ReplicaId = replica, State = ReplicaState.Failed, Restarts = 2, ExitCode = 3, Reason = "exited with code 3; restarting in 2 s", PulledAt = time.GetUtcNow(), StartedAt = time.GetUtcNow() }],
            });
            var expected = attempt;
            await Eventually.GetAsync(() => server.Http.GetFromJsonAsync("/v1/clusters/demo", ShoalJsonContext.Default.ClusterDto),
                c => c!.FailedAttempts == expected, what: $"attempt {attempt} counted");
            if (attempt == 2) break;
            // Back-off: nothing new before it is over.
            time.Advance(TimeSpan.FromSeconds(9));
            await state.ReconcileAsync(default);
            Assert.Empty((await server.Http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto))!.Replicas);
            time.Advance(TimeSpan.FromSeconds(1));
            await state.ReconcileAsync(default);
        }

        var failed = await server.Http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto);
        Assert.StartsWith("2 attempts failed before any replica was ready; last: crash-looping on node-a", failed!.Cluster.Failure, StringComparison.Ordinal);
        Assert.Contains("exited with code 3", failed.Cluster.Failure, StringComparison.Ordinal);
        Assert.NotNull(failed.Cluster.FailedAt);
        Assert.Empty(failed.Replicas);
        var events = await server.Http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray);
        Assert.Single(events!, e => e.Type == ClusterEventTypes.ClusterFailed);
        Assert.Equal(2, events!.Count(e => e.Type == ClusterEventTypes.Replaced));
        // Nothing more is tried, however long one waits.
        time.Advance(TimeSpan.FromMinutes(30));
        await state.ReconcileAsync(default);
        Assert.Empty((await server.Http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto))!.Replicas);

        // The edge answers at once with the reason (the cluster's queue timeout is 30 s: no hold).
        var endpointKey = await server.CreateKeyAsync(ApiKeyRoles.Endpoint);
        using var edge = new HttpClient { BaseAddress = server.Server.EdgeAddress, Timeout = TimeSpan.FromSeconds(20) }.WithKey(endpointKey);
        using var content = new StringContent("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", Encoding.UTF8, "application/json");
        var routes = server.Server.Services.GetRequiredService<Shoal.Core.Routing.RouteTableHolder>();
        await Eventually.GetAsync(() => Task.FromResult(routes.Current), t => t.Clusters.TryGetValue("demo", out var c) && c.Unavailable is not null, what: "the reason in the route table");
        using var response = await edge.PostAsync("/c/demo/v1/chat/completions", content);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("the cluster failed: 2 attempts failed", body, StringComparison.Ordinal);
        Assert.Contains("update it to try again", body, StringComparison.Ordinal);

        // An update (a fixed spec) tries again at once.
        (await server.Http.PatchAsJsonAsync("/v1/clusters/demo", new UpdateClusterRequest { Env = new() { ["FIXED"] = "1" } }, ShoalJsonContext.Default.UpdateClusterRequest)).EnsureSuccessStatusCode();
        await state.ReconcileAsync(default);
        var recovered = await server.Http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto);
        Assert.Null(recovered!.Cluster.Failure);
        Assert.Equal(0, recovered.Cluster.FailedAttempts);
        Assert.Single(recovered.Replicas);
    }
}
