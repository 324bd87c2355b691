using Shoal.Core.Scheduling;

namespace Shoal.Core.Tests.Scheduling;

public sealed class SchedulerTests
{
    private static NodeCapacity Node(string id, string type, int count, bool schedulable = true, double reliability = 1.0, string[]? images = null) =>
        new(id, schedulable, Enumerable.Range(0, count).Select(i => new GpuSlot(i, type)).ToArray(), reliability, images?.ToHashSet());

    private static PlacementRequest Req(string id, string cluster = "c1", string gpu = "rtx-4090", int count = 1, string image = "shoal/sim") =>
        new(id, cluster, gpu, count, image);

    // The dev layout: node 1 rtx-4090:2, node 2 rtx-4090:1, node 3 rtx-3090:1.
    private static readonly NodeCapacity[] s_dev = [Node("n1", "rtx-4090", 2), Node("n2", "rtx-4090", 1), Node("n3", "rtx-3090", 1)];

    [Fact]
    public void Two_replicas_spread_over_distinct_nodes_of_the_right_type()
    {
        var result = Scheduler.Schedule(s_dev, [], [Req("r1"), Req("r2")]);
        Assert.All(result, p => Assert.True(p.Placed));
        Assert.Equal(["n1", "n2"], result.Select(p => p.NodeId!).Order().ToArray());
    }

    [Fact]
    public void Third_replica_goes_on_a_further_free_gpu_and_the_fourth_stays_pending_with_a_reason()
    {
        var existing = new[] { new PlacedReplica("c1", "n1", [0]), new PlacedReplica("c1", "n2", [0]) };
        var result = Scheduler.Schedule(s_dev, existing, [Req("r3"), Req("r4")]);
        Assert.Equal("n1", result[0].NodeId);
        Assert.Equal([1], result[0].GpuIndexes);
        Assert.False(result[1].Placed);
        Assert.Equal("no node with a free rtx-4090", result[1].Reason);
        Assert.DoesNotContain(result, p => p.NodeId == "n3");
    }

    [Fact]
    public void No_schedulable_node_of_the_type_says_so()
    {
        var result = Scheduler.Schedule([Node("n1", "rtx-4090", 2, schedulable: false), Node("n3", "rtx-3090", 1)], [], [Req("r1")]);
        Assert.False(result[0].Placed);
        Assert.Equal("no ready node with rtx-4090 GPUs", result[0].Reason);
    }

    [Fact]
    public void Multi_gpu_replicas_need_that_many_free_gpus_on_one_node()
    {
        var nodes = new[] { Node("a", "a100-80gb", 1), Node("b", "a100-80gb", 4) };
        var result = Scheduler.Schedule(nodes, [new PlacedReplica("other", "b", [0])], [Req("r1", gpu: "a100-80gb", count: 2), Req("r2", gpu: "a100-80gb", count: 2)]);
        Assert.Equal("b", result[0].NodeId);
        Assert.Equal([1, 2], result[0].GpuIndexes);
        Assert.False(result[1].Placed);
        Assert.Equal("no node with 2 free a100-80gb GPUs", result[1].Reason);
    }

    [Fact]
    public void Gpus_held_by_existing_replicas_are_never_given_twice()
    {
        var result = Scheduler.Schedule([Node("n1", "rtx-4090", 2)], [new PlacedReplica("other", "n1", [0])], [Req("r1"), Req("r2")]);
        Assert.Equal([1], result[0].GpuIndexes);
        Assert.False(result[1].Placed);
    }

    [Fact]
    public void Cached_image_and_reliability_break_ties_and_results_are_deterministic()
    {
        var nodes = new[]
        {
            Node("a", "rtx-4090", 1, reliability: 0.2),
            Node("b", "rtx-4090", 1, reliability: 1.0),
            Node("c", "rtx-4090", 1, reliability: 0.2, images: ["img"]),
        };
        var first = Scheduler.Schedule(nodes, [], [Req("r1", image: "img")]);
        Assert.Equal("c", first[0].NodeId);
        var second = Scheduler.Schedule(nodes, [], [Req("r1", image: "other")]);
        Assert.Equal("b", second[0].NodeId);
        var again = Scheduler.Schedule(nodes.Reverse().ToArray(), [], [Req("r1", image: "other")]);
        Assert.Equal(second[0].NodeId, again[0].NodeId);
        Assert.Equal(second[0].GpuIndexes, again[0].GpuIndexes);
    }

    [Fact]
    public void A_node_where_the_cluster_stopped_recently_comes_before_one_that_only_has_the_image()
    {
        var nodes = new[]
        {
            Node("a", "rtx-4090", 1, reliability: 1.0, images: ["img"]),
            Node("b", "rtx-4090", 1, reliability: 0.5, images: ["img"]),
            Node("c", "rtx-4090", 1, reliability: 1.0),
        };
        var warm = new HashSet<string> { "b" };
        Assert.Equal("a", Scheduler.Schedule(nodes, [], [Req("r1", image: "img")])[0].NodeId);
        var result = Scheduler.Schedule(nodes, [], [Req("r1", image: "img") with { WarmNodes = warm }, Req("r2", image: "img") with { WarmNodes = warm }]);
        Assert.Equal(["b", "a"], result.Select(p => p.NodeId!).ToArray());
        // Spread still comes first: a warm node that already runs a replica of the cluster waits its turn.
        var busy = Scheduler.Schedule([Node("b", "rtx-4090", 2, images: ["img"]), Node("a", "rtx-4090", 1)], [new PlacedReplica("c1", "b", [0])],
            [Req("r3", image: "img") with { WarmNodes = warm }]);
        Assert.Equal("a", busy[0].NodeId);
    }

    [Fact]
    public void Spread_holds_across_a_large_fleet()
    {
        var nodes = Enumerable.Range(0, 1000).Select(i => Node($"n{i:D4}", i % 2 == 0 ? "rtx-4090" : "rtx-3090", 2)).ToArray();
        var requests = Enumerable.Range(0, 600).Select(i => Req($"r{i}")).ToArray();
        var result = Scheduler.Schedule(nodes, [], requests);
        Assert.All(result, p => Assert.True(p.Placed));
        var perNode = result.GroupBy(p => p.NodeId).Select(g => g.Count()).ToArray();
        // 500 rtx-4090 nodes: the first 500 replicas take one each, the next 100 a second GPU.
        Assert.Equal(500, perNode.Length);
        Assert.Equal(100, perNode.Count(c => c == 2));
        Assert.All(result, p => Assert.Equal(0, int.Parse(p.NodeId![1..], System.Globalization.CultureInfo.InvariantCulture) % 2));
    }

    [Fact]
    public void Avoided_nodes_come_last_but_are_used_when_nothing_else_has_room()
    {
        var nodes = new[] { Node("n1", "rtx-4090", 2), Node("n2", "rtx-4090", 1) };
        var avoid = new HashSet<string> { "n1" };
        Assert.Equal("n1", Scheduler.Schedule(nodes, [], [Req("r1")])[0].NodeId);

        var result = Scheduler.Schedule(nodes, [], [Req("r1") with { AvoidNodes = avoid }, Req("r2") with { AvoidNodes = avoid }, Req("r3") with { AvoidNodes = avoid }]);

        Assert.Equal(["n2", "n1", "n1"], result.Select(p => p.NodeId!).ToArray());
    }

    [Fact]
    public void Replicas_asking_for_a_label_go_only_to_nodes_with_it_and_say_so_when_none_has_it()
    {
        var trusted = new HashSet<string> { "trusted", "eu" };
        var nodes = new[] { Node("big", "rtx-4090", 8), Node("small", "rtx-4090", 1) with { Labels = trusted } };
        var result = Scheduler.Schedule(nodes, [], [Req("r1") with { RequiredLabels = ["trusted"] }, Req("r2") with { RequiredLabels = ["trusted"] }]);
        Assert.Equal("small", result[0].NodeId);
        Assert.False(result[1].Placed);
        Assert.Equal("no node with a free rtx-4090", result[1].Reason);

        var none = Scheduler.Schedule([Node("big", "rtx-4090", 8)], [], [Req("r1") with { RequiredLabels = ["trusted"] }]);
        Assert.False(none[0].Placed);
        Assert.StartsWith("no ready node with rtx-4090 GPUs and label trusted", none[0].Reason, StringComparison.Ordinal);

        // Every label asked for, not just one of them.
        var both = Scheduler.Schedule(nodes, [], [Req("r1") with { RequiredLabels = ["trusted", "us"] }]);
        Assert.False(both[0].Placed);
        // No label asked for: any node.
        Assert.True(Scheduler.Schedule(nodes, [], [Req("r1") with { RequiredLabels = [] }])[0].Placed);
    }
}
