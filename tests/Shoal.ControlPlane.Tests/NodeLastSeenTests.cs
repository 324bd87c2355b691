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

/// <summary>Issue 14, item 7: node names are unique, so a name always finds one node.</summary>
public sealed class NodeNameTests
{
    [Fact]
    public async Task A_second_node_with_a_taken_name_is_refused_with_a_clear_error_and_its_token_is_not_used()
    {
        await using var server = await TestServer.StartAsync();
        var token = await server.CreateTokenAsync(uses: 2);
        var (first, status) = await WireAgent.RegisterAsync(server.AgentUri, token, "gpu-box");
        Assert.Equal(101, status);
        await using (first)
        {
            await first!.SendAsync(WireAgent.Hello("gpu-box", ("rtx-4090", 1)));
            await first.ReceiveAsync<WelcomeMessage>();
        }

        var (second, refused) = await WireAgent.RegisterAsync(server.AgentUri, token, "gpu-box");
        Assert.Null(second);
        Assert.Equal(401, refused);

        // The refusal did not use the token: its second use still admits a node with a free name,
        // and the name finds exactly one node.
        var (third, ok) = await WireAgent.RegisterAsync(server.AgentUri, token, "gpu-box-2");
        Assert.Equal(101, ok);
        await using (third)
        {
            await third!.SendAsync(WireAgent.Hello("gpu-box-2", ("rtx-4090", 1)));
            await third.ReceiveAsync<WelcomeMessage>();
        }
        var nodes = await server.Http.GetFromJsonAsync("/v1/nodes", ShoalJsonContext.Default.NodeDtoArray);
        Assert.Single(nodes!, n => n.Name == "gpu-box");
        Assert.Equal(System.Net.HttpStatusCode.OK, (await server.Http.PostAsync("/v1/nodes/gpu-box/cordon", null)).StatusCode);
    }
}
