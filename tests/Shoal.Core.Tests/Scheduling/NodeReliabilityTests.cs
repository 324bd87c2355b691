using Shoal.Core.Scheduling;

namespace Shoal.Core.Tests.Scheduling;

public sealed class NodeReliabilityTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.Parse("2026-11-23T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void A_node_up_for_the_whole_window_without_disconnects_is_fully_reliable()
    {
        var r = NodeReliability.Compute([], Now - TimeSpan.FromHours(1), Now);
        Assert.Equal(new NodeReliability(1.0, 0, false), r);
    }

    [Fact]
    public void Each_recent_disconnect_lowers_the_score_and_three_make_a_node_flapping()
    {
        var up = Now - TimeSpan.FromHours(1);
        var one = NodeReliability.Compute([Now - TimeSpan.FromMinutes(5)], up, Now);
        var two = NodeReliability.Compute([Now - TimeSpan.FromMinutes(5), Now - TimeSpan.FromMinutes(4)], up, Now);
        var three = NodeReliability.Compute([Now - TimeSpan.FromMinutes(3), Now - TimeSpan.FromMinutes(2), Now - TimeSpan.FromMinutes(1)], up, Now);
        Assert.Equal((0.5, 1, false), (one.Score, one.RecentDisconnects, one.Flapping));
        Assert.Equal((0.333, 2, false), (two.Score, two.RecentDisconnects, two.Flapping));
        Assert.Equal((0.25, 3, true), (three.Score, three.RecentDisconnects, three.Flapping));
    }

    [Fact]
    public void Disconnects_older_than_the_window_are_forgotten_and_a_fresh_connection_costs_a_little()
    {
        var old = Enumerable.Range(0, 5).Select(i => Now - NodeReliability.Window - TimeSpan.FromSeconds(i + 1)).ToArray();
        var justBack = NodeReliability.Compute(old, Now, Now);
        Assert.Equal((0.9, 0, false), (justBack.Score, justBack.RecentDisconnects, justBack.Flapping));
        var halfWindow = NodeReliability.Compute(old, Now - NodeReliability.Window / 2, Now);
        Assert.Equal(0.95, halfWindow.Score);
        // Disconnected right now: no uptime at all.
        Assert.Equal(0.45, NodeReliability.Compute([Now - TimeSpan.FromSeconds(1)], null, Now).Score);
    }

    [Fact]
    public void Placement_puts_replicas_on_steady_nodes_first_even_against_spread_and_a_cached_image_and_uses_a_flapping_node_last()
    {
        NodeCapacity Node(string id, bool flapping, string[]? images = null) =>
            new(id, true, [new GpuSlot(0, "rtx-4090"), new GpuSlot(1, "rtx-4090")], flapping ? 0.25 : 1.0, images?.ToHashSet(), flapping);
        var nodes = new[] { Node("a-flappy", flapping: true, images: ["img"]), Node("b-steady", flapping: false) };
        var requests = Enumerable.Range(0, 3).Select(i => new PlacementRequest($"r{i}", "c", "rtx-4090", 1, "img")).ToList();

        var placements = Scheduler.Schedule(nodes, [], requests);

        // Both steady GPUs first (two replicas on one node rather than one on the flapping node), then the flapping one.
        Assert.Equal(["b-steady", "b-steady", "a-flappy"], placements.Select(p => p.NodeId!).ToArray());
    }
}
