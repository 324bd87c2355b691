using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Shoal.ControlPlane.Agents;
using Shoal.ControlPlane.Edges;

namespace Shoal.ControlPlane.Tests;

public sealed class StoppingServerTests
{
    [Fact]
    public async Task A_stopping_server_marks_no_agent_lost_for_the_heartbeats_it_no_longer_reads()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a");
        using var stopping = new CancellationTokenSource();
        var gateway = new AgentGateway(h.State, h.Store, h.Time, h.Options, new EdgeDirectory(), new ProcessImageDirectory(),
            new Lifetime(stopping.Token), NullLogger<AgentGateway>.Instance);
        await stopping.CancelAsync();
        h.Time.Advance(h.Options.HeartbeatInterval * (h.Options.MissedHeartbeats + 1));
        Assert.NotEmpty(await h.State.FindStaleSessionsAsync(default));

        await gateway.CloseStaleSessionsAsync(default);
        await h.State.FlushAsync(default);

        var node = (await h.State.GetNodeAsync("a", default))!.Node;
        Assert.Equal(Shoal.Contracts.NodeState.Ready, node.State);
        Assert.Equal(0, node.Disconnects);
        Assert.Empty((await h.Store.LoadAsync()).Nodes.Single().RecentDisconnects);
    }

    private sealed class Lifetime(CancellationToken stopping) : IHostApplicationLifetime
    {
        public CancellationToken ApplicationStarted => CancellationToken.None;
        public CancellationToken ApplicationStopping => stopping;
        public CancellationToken ApplicationStopped => CancellationToken.None;
        public void StopApplication() { }
    }
}
