using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Agent.Identity;
using Shoal.Agent.Tunnels;
using Shoal.Testing;

namespace Shoal.Agent.Tests.Tunnels;

public sealed class TunnelManagerTests
{
    private static readonly NodeIdentity s_identity = new() { NodeId = "n-1", NodeSecret = "secret" };

    [Fact]
    public async Task An_edge_the_server_stops_naming_keeps_its_tunnels_for_the_linger_unless_named_again()
    {
        var time = new FakeTimeProvider();
        await using var tunnels = new TunnelManager(new TunnelOptions { IdlePerEdge = 1, RemovedEdgeLinger = TimeSpan.FromSeconds(60) }, _ => false, time, NullLoggerFactory.Instance);
        // Nothing listens there: the pools just retry, which is all this test needs.
        var a = $"http://127.0.0.1:{FreePort.Next()}";
        var b = $"http://127.0.0.1:{FreePort.Next()}";

        tunnels.Update(s_identity, [a, b]);
        // b drops out of the list (its control stream broke, or a restarted server does not know it yet).
        tunnels.Update(s_identity, [a]);
        time.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(new[] { a, b }.Order(StringComparer.Ordinal), tunnels.Edges.Order(StringComparer.Ordinal));

        // Named again within the linger: kept, and no longer on its way out.
        tunnels.Update(s_identity, [a, b]);
        time.Advance(TimeSpan.FromSeconds(120));
        Assert.Equal(new[] { a, b }.Order(StringComparer.Ordinal), tunnels.Edges.Order(StringComparer.Ordinal));

        // Not named again: closed once the linger is over.
        tunnels.Update(s_identity, [a]);
        time.Advance(TimeSpan.FromSeconds(60));
        Assert.Equal([a], tunnels.Edges);
    }

    [Fact]
    public async Task Without_a_linger_an_edge_no_longer_named_loses_its_tunnels_at_once()
    {
        var time = new FakeTimeProvider();
        await using var tunnels = new TunnelManager(new TunnelOptions { IdlePerEdge = 1, RemovedEdgeLinger = TimeSpan.Zero }, _ => false, time, NullLoggerFactory.Instance);
        var a = $"http://127.0.0.1:{FreePort.Next()}";
        var b = $"http://127.0.0.1:{FreePort.Next()}";
        tunnels.Update(s_identity, [a, b]);
        tunnels.Update(s_identity, [a]);
        Assert.Equal([a], tunnels.Edges);
    }
}
