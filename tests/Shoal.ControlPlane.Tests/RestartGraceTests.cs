using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// A server that starts again on the same store gives the nodes that were serving before it
/// <see cref="ServerOptions.RestartGracePeriod"/> to reconnect (their agents may be deep in their
/// reconnect back-off), not the plain grace: else a longer outage would replace every replica.
/// </summary>
public sealed class RestartGraceTests
{
    [Fact]
    public async Task After_a_restart_serving_nodes_keep_their_replicas_for_the_restart_grace_and_lose_them_after()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-23T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        using var dir = new TempDirectory("shoal-restart");
        string replicaId;
        var first = await TestServer.StartAsync(time, o => o.DataDir = dir.Path);
        WireAgent agent;
        try
        {
            var token = await first.CreateTokenAsync();
            (var joined, _) = await WireAgent.RegisterAsync(first.AgentUri, token, "node-a");
            agent = joined!;
            await agent.SendAsync(WireAgent.Hello("node-a", ("rtx-4090", 1)));
            await agent.ReceiveAsync<WelcomeMessage>();
            await agent.ReceiveAsync<AssignmentsMessage>();
            (await first.Http.PostAsJsonAsync("/v1/clusters",
                new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 },
                ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            replicaId = Assert.Single((await agent.ReceiveAsync<AssignmentsMessage>()).Replicas).ReplicaId;
        }
        finally
        {
            // The server goes while its agent is still connected, as in a crash or a restart.
            await first.DisposeAsync();
        }
        await agent.DisposeAsync();

        await using var second = await TestServer.StartAsync(time, o =>
        {
            o.DataDir = dir.Path;
            o.NodeGracePeriod = TimeSpan.FromSeconds(10);
            o.RestartGracePeriod = TimeSpan.FromSeconds(40);
        });
        var state = second.Server.Services.GetRequiredService<ControlPlaneState>();
        Assert.Equal(NodeState.Disconnected, (await state.ListNodesAsync(default)).Single().Node.State);

        // Past the plain grace: kept.
        time.Advance(TimeSpan.FromSeconds(30));
        await state.ReconcileAsync(default);
        Assert.Equal(replicaId, Assert.Single((await state.GetClusterAsync("demo", default))!.Replicas).Replica.Id);

        // Past the restart grace: replaced.
        time.Advance(TimeSpan.FromSeconds(11));
        await state.ReconcileAsync(default);
        Assert.NotEqual(replicaId, Assert.Single((await state.GetClusterAsync("demo", default))!.Replicas).Replica.Id);
        Assert.Equal(NodeState.Offline, (await state.ListNodesAsync(default)).Single().Node.State);
        var events = await second.Http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray);
        Assert.Contains(events!, e => e.Type == ClusterEventTypes.Replaced && e.Replica == replicaId && e.Message.Contains("grace 40", StringComparison.Ordinal));
    }
}
