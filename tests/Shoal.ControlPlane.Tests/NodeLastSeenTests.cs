using System.Net.Http.Json;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Tests;

/// <summary>Issue 14, item 3: <c>shoal nodes</c> LAST SEEN follows heartbeats, not only hellos and acks.</summary>
public sealed class NodeLastSeenTests
{
    [Fact]
    public async Task Last_seen_moves_with_every_heartbeat()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-12-04T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        await using var server = await TestServer.StartAsync(time);
        var (agent, status) = await WireAgent.RegisterAsync(server.AgentUri, await server.CreateTokenAsync(), "steady");
        Assert.Equal(101, status);
        await using (agent)
        {
            await agent!.SendAsync(WireAgent.Hello("steady", ("rtx-4090", 1)));
            await agent.ReceiveAsync<WelcomeMessage>();
            var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
            var helloAt = time.GetUtcNow();
            NodeDto? node = null;
            for (var i = 0; i < 30; i++)
            {
                // Each heartbeat is seen before the clock moves on (the clock alone would make the node miss them).
                time.Advance(TimeSpan.FromSeconds(2));
                await agent.SendAsync(new HeartbeatMessage { AppliedRevision = assigned.Revision });
                var beat = time.GetUtcNow();
                node = await Eventually.GetAsync(() => server.Http.GetFromJsonAsync("/v1/nodes/steady", ShoalJsonContext.Default.NodeDto),
                    n => n!.LastSeenAt >= beat, what: $"last seen at heartbeat {i + 1}");
            }
            Assert.Equal(NodeState.Ready, node!.State);
            Assert.Equal(helloAt + TimeSpan.FromMinutes(1), node.LastSeenAt);
        }
    }
}
