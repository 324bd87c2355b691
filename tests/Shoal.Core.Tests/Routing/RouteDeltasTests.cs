using System.Text.Json;
using Shoal.Contracts;
using Shoal.Core.Routing;

namespace Shoal.Core.Tests.Routing;

public sealed class RouteDeltasTests
{
    [Theory]
    [MemberData(nameof(Seeds))]
    public void Applying_each_delta_in_turn_gives_the_same_tables_as_sending_them_whole(int seed)
    {
        var random = new Random(seed);
        var table = RandomTable(random, version: 1);
        var edge = RoundTrip(table);
        for (var step = 0; step < 40; step++)
        {
            var next = Mutate(random, table);
            var delta = RouteDeltas.Diff(table, next);
            edge = RouteDeltas.Apply(edge, RoundTrip(delta));
            Assert.Equal(Canonical(next), Canonical(edge));
            table = next;
        }
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void A_delta_across_skipped_tables_gives_the_newest_table(int seed)
    {
        // A slow edge skips tables: the server diffs what the edge has against the newest.
        var random = new Random(seed);
        var sent = RandomTable(random, version: 1);
        var edge = RoundTrip(sent);
        var table = sent;
        for (var step = 0; step < 40; step++)
        {
            table = Mutate(random, table);
            if (random.Next(3) != 0) continue;
            edge = RouteDeltas.Apply(edge, RoundTrip(RouteDeltas.Diff(sent, table)));
            Assert.Equal(Canonical(table), Canonical(edge));
            sent = table;
        }
    }

    public static TheoryData<int> Seeds()
    {
        var data = new TheoryData<int>();
        for (var seed = 1; seed <= 25; seed++) data.Add(seed);
        return data;
    }

    [Fact]
    public void A_load_change_goes_as_a_figure_alone_and_is_marked_load_only()
    {
        var a = Table(1, Cluster("c", Dest("r1", waiting: 0), Dest("r2", waiting: 1)));
        var b = Table(2, Cluster("c", Dest("r1", waiting: 3), Dest("r2", waiting: 1)));
        var delta = RouteDeltas.Diff(a, b);
        Assert.True(RouteDeltas.IsLoadOnly(delta));
        Assert.True(RouteDeltas.HasLoad(delta));
        var d = Assert.Single(delta.Destinations!);
        Assert.Equal(new Dictionary<string, double> { ["r1"] = 3 }, d.Waiting);
        Assert.Null(d.Changed);
        Assert.Null(d.Added);
        Assert.Null(d.Removed);
        Assert.Equal((1, 2), (delta.BaseVersion, delta.Version));
    }

    [Fact]
    public void Replica_and_lost_node_changes_are_not_load_only()
    {
        var a = Table(1, Cluster("c", Dest("r1"), Dest("r2")));
        var removed = RouteDeltas.Diff(a, Table(2, Cluster("c", Dest("r1"))));
        Assert.False(RouteDeltas.IsLoadOnly(removed));
        Assert.Equal(["r2"], Assert.Single(removed.Destinations!).Removed!);
        var moved = RouteDeltas.Diff(a, Table(2, Cluster("c", Dest("r1"), Dest("r2", address: "http://10.0.0.9:1"))));
        Assert.False(RouteDeltas.IsLoadOnly(moved));
        Assert.Equal("http://10.0.0.9:1", Assert.Single(Assert.Single(moved.Destinations!).Changed!).Address);
        var lost = RouteDeltas.Diff(a, a with { Version = 2, LostNodes = ["n9"] });
        Assert.False(RouteDeltas.IsLoadOnly(lost));
        Assert.Equal(["n9"], lost.LostNodesAdded!);
        Assert.Null(lost.Destinations);
    }

    [Fact]
    public void Draining_replicas_go_as_added_and_removed_and_are_not_load_only()
    {
        var a = Table(1, Cluster("c", Dest("r1"), Dest("r2"))) with { DrainingReplicas = ["r0"] };
        var b = Table(2, Cluster("c", Dest("r1"))) with { DrainingReplicas = ["r2"] };
        var delta = RoundTrip(RouteDeltas.Diff(a, b));
        Assert.Equal(["r2"], delta.DrainingAdded!);
        Assert.Equal(["r0"], delta.DrainingRemoved!);
        Assert.Null(delta.DrainingReplicas);
        Assert.False(RouteDeltas.IsLoadOnly(delta));
        Assert.False(RouteDeltas.IsEmpty(delta));
        Assert.Equal(Canonical(b), Canonical(RouteDeltas.Apply(a, delta)));
        Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a, new RouteDelta { BaseVersion = 1, Version = 2, DrainingRemoved = ["r9"] }));
        // Unsorted: the whole list goes.
        var c = b with { Version = 3, DrainingReplicas = ["r2", "r1"] };
        var whole = RouteDeltas.Diff(b, c);
        Assert.Equal(["r2", "r1"], whole.DrainingReplicas!);
        Assert.Equal(Canonical(c), Canonical(RouteDeltas.Apply(b, whole)));
    }

    [Fact]
    public void A_first_byte_timeout_change_sends_the_cluster_whole()
    {
        var a = Table(1, Cluster("c", Dest("r1")));
        var b = Table(2, Cluster("c", Dest("r1")) with { FirstByteTimeoutMs = 2000 });
        var delta = RouteDeltas.Diff(a, b);
        Assert.Equal(2000, Assert.Single(delta.ChangedClusters!).FirstByteTimeoutMs);
        Assert.Equal(Canonical(b), Canonical(RouteDeltas.Apply(a, delta)));
    }

    [Fact]
    public void Tables_with_the_same_content_differ_by_nothing_but_the_version()
    {
        var a = Table(1, Cluster("c", Dest("r1"), Dest("r2")), Cluster("d"));
        var b = Table(7, Cluster("c", Dest("r1"), Dest("r2")), Cluster("d"));
        var delta = RouteDeltas.Diff(a, b);
        Assert.True(RouteDeltas.IsEmpty(delta));
        Assert.False(RouteDeltas.IsLoadOnly(delta));
        Assert.Equal(7, RouteDeltas.Apply(a, delta).Version);
    }

    [Fact]
    public void A_cluster_whose_settings_change_goes_whole()
    {
        var a = Table(1, Cluster("c", Dest("r1")));
        var b = Table(2, Cluster("c", Dest("r1"), Dest("r2")) with { Public = true });
        var delta = RouteDeltas.Diff(a, b);
        Assert.True(Assert.Single(delta.ChangedClusters!).Public);
        Assert.Null(delta.Destinations);
        Assert.Equal(Canonical(b), Canonical(RouteDeltas.Apply(a, delta)));
    }

    [Fact]
    public void Unsorted_destinations_and_lost_nodes_still_round_trip()
    {
        var a = Table(1, Cluster("c", Dest("r2"), Dest("r1"))) with { LostNodes = ["n2", "n1"] };
        var b = Table(2, Cluster("c", Dest("r3"), Dest("r1"))) with { LostNodes = ["n3", "n1"] };
        var delta = RouteDeltas.Diff(a, b);
        Assert.Single(delta.ChangedClusters!);
        Assert.Equal(["n3", "n1"], delta.LostNodes!);
        Assert.Equal(Canonical(b), Canonical(RouteDeltas.Apply(a, delta)));
    }

    [Fact]
    public void A_delta_for_another_version_is_refused()
    {
        var a = Table(1, Cluster("c", Dest("r1")));
        var delta = RouteDeltas.Diff(a, Table(2, Cluster("c")));
        var error = Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a with { Version = 5 }, delta));
        Assert.Contains("version 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_delta_that_names_what_the_table_lacks_is_refused()
    {
        var a = Table(1, Cluster("c", Dest("r1")));
        Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a, new RouteDelta { BaseVersion = 1, Version = 2, RemovedClusters = ["x"] }));
        Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a, new RouteDelta { BaseVersion = 1, Version = 2, AddedClusters = [Cluster("c")] }));
        Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a, new RouteDelta { BaseVersion = 1, Version = 2, ChangedClusters = [Cluster("x")] }));
        Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a, new RouteDelta
        {
            BaseVersion = 1, Version = 2, Destinations = [new DestinationDelta { Cluster = "c", Removed = ["r9"] }],
        }));
        Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a, new RouteDelta
        {
            BaseVersion = 1, Version = 2, Destinations = [new DestinationDelta { Cluster = "c", Waiting = new() { ["r9"] = 1 } }],
        }));
        Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a, new RouteDelta
        {
            BaseVersion = 1, Version = 2, Destinations = [new DestinationDelta { Cluster = "c", Added = [Dest("r1")] }],
        }));
        Assert.Throws<RouteDeltaException>(() => RouteDeltas.Apply(a, new RouteDelta { BaseVersion = 1, Version = 2, LostNodesRemoved = ["n1"] }));
        // The table it was given is untouched.
        Assert.Equal(["r1"], a.Clusters["c"].Destinations.Select(d => d.ReplicaId));
    }

    // ---------------------------------------------------------------- generators

    private static RouteTable Table(long version, params ClusterRoute[] clusters) =>
        new() { Version = version, Clusters = clusters.ToDictionary(c => c.Cluster, StringComparer.Ordinal) };

    private static ClusterRoute Cluster(string name, params RouteDestination[] destinations) => new() { Cluster = name, Destinations = destinations };

    private static RouteDestination Dest(string id, double waiting = 0, string? address = null) =>
        new() { ReplicaId = id, NodeId = "n-" + id, Address = address ?? "http://10.0.0.1:" + id.Length, Waiting = waiting };

    private static RouteTable RandomTable(Random random, long version)
    {
        var clusters = new Dictionary<string, ClusterRoute>(StringComparer.Ordinal);
        for (var i = 0; i < random.Next(1, 8); i++)
        {
            var name = "c" + random.Next(12);
            clusters[name] = RandomCluster(random, name);
        }
        return new RouteTable { Version = version, Clusters = clusters, LostNodes = RandomLost(random), DrainingReplicas = RandomDraining(random) };
    }

    private static ClusterRoute RandomCluster(Random random, string name) => new()
    {
        Cluster = name,
        Project = random.Next(4) == 0 ? "p" + random.Next(2) : "default",
        Public = random.Next(3) == 0,
        Balancing = random.Next(2) == 0 ? BalancingPolicy.LeastOutstanding : BalancingPolicy.RoundRobin,
        QueueTimeoutMs = random.Next(2) == 0 ? BalancingPolicy.DefaultQueueTimeoutMs : 1000 * random.Next(1, 5),
        FirstByteTimeoutMs = random.Next(3) == 0 ? 1000 * random.Next(0, 3) : null,
        Unavailable = random.Next(8) == 0 ? "the cluster failed: " + random.Next(3) : null,
        Destinations = Enumerable.Range(0, 12).Where(_ => random.Next(3) == 0).Select(i => RandomDestination(random, $"{name}-r{i:D2}")).ToArray(),
    };

    private static RouteDestination RandomDestination(Random random, string id) => new()
    {
        ReplicaId = id,
        NodeId = "n" + random.Next(20),
        Address = $"http://10.0.0.{random.Next(4)}:{random.Next(1000, 1004)}",
        Via = random.Next(2) == 0 ? RouteVia.Direct : RouteVia.Tunnel,
        Waiting = random.Next(4) == 0 ? random.NextDouble() * 10 : random.Next(5),
    };

    private static string[] RandomLost(Random random) =>
        [.. Enumerable.Range(0, 20).Where(_ => random.Next(6) == 0).Select(i => "n" + i).Order(StringComparer.Ordinal)];

    private static string[] RandomDraining(Random random) =>
        [.. Enumerable.Range(0, 20).Where(_ => random.Next(8) == 0).Select(i => $"c{random.Next(12)}-r{i:D2}").Distinct().Order(StringComparer.Ordinal)];

    /// <summary>The next table as the control plane would build it: new objects throughout, a few things changed.</summary>
    private static RouteTable Mutate(Random random, RouteTable table)
    {
        var clusters = table.Clusters.Values
            .Select(c => c with { Destinations = [.. c.Destinations.Select(d => d with { })] })
            .ToDictionary(c => c.Cluster, StringComparer.Ordinal);
        var lost = table.LostNodes;
        var draining = table.DrainingReplicas;
        for (var n = random.Next(0, 4); n >= 0; n--)
        {
            var names = clusters.Keys.Order(StringComparer.Ordinal).ToArray();
            var name = names.Length == 0 ? null : names[random.Next(names.Length)];
            switch (random.Next(10))
            {
                case 0:
                    var added = "c" + random.Next(12);
                    clusters[added] = RandomCluster(random, added);
                    break;
                case 1 when name is not null:
                    clusters.Remove(name);
                    break;
                case 2 when name is not null:
                    clusters[name] = clusters[name] with { Public = !clusters[name].Public };
                    break;
                case 3 or 4 when name is not null:
                    var id = $"{name}-r{random.Next(12):D2}";
                    var list = clusters[name].Destinations.Where(d => d.ReplicaId != id).ToList();
                    if (list.Count == clusters[name].Destinations.Length) list.Add(RandomDestination(random, id));
                    clusters[name] = clusters[name] with { Destinations = [.. list.OrderBy(d => d.ReplicaId, StringComparer.Ordinal)] };
                    break;
                case 5 when name is not null && clusters[name].Destinations.Length > 0:
                    var ds = clusters[name].Destinations.ToArray();
                    var k = random.Next(ds.Length);
                    ds[k] = RandomDestination(random, ds[k].ReplicaId);
                    clusters[name] = clusters[name] with { Destinations = ds };
                    break;
                case 6 or 7 or 8 when name is not null:
                    clusters[name] = clusters[name] with
                    {
                        Destinations = [.. clusters[name].Destinations.Select(d => random.Next(2) == 0 ? d with { Waiting = random.Next(6) } : d)],
                    };
                    break;
                case 9:
                    if (random.Next(2) == 0) lost = RandomLost(random);
                    else draining = RandomDraining(random);
                    break;
            }
        }
        return new RouteTable { Version = table.Version + 1, Clusters = clusters, LostNodes = lost, DrainingReplicas = draining };
    }

    /// <summary>The table as JSON with clusters in name order: equal strings, equal tables.</summary>
    private static string Canonical(RouteTable table) => JsonSerializer.Serialize(
        table with { Clusters = table.Clusters.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(StringComparer.Ordinal) },
        ShoalJsonContext.Default.RouteTable);

    private static RouteTable RoundTrip(RouteTable table) =>
        ((RoutesMessage)JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes<EdgeMessage>(new RoutesMessage { Table = table }, ShoalJsonContext.Default.EdgeMessage), ShoalJsonContext.Default.EdgeMessage)!).Table;

    private static RouteDelta RoundTrip(RouteDelta delta) =>
        ((RouteDeltaMessage)JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes<EdgeMessage>(new RouteDeltaMessage { Delta = delta }, ShoalJsonContext.Default.EdgeMessage), ShoalJsonContext.Default.EdgeMessage)!).Delta;
}
