using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.ControlPlane.Edges;

namespace Shoal.ControlPlane.Tests;

/// <summary>What one edge is sent of successive route tables, and when (a fake clock; no connection).</summary>
public sealed class EdgeRouteFeedTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-12-05T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    private static RouteTable Table(long version, double waiting = 0, bool second = false, string[]? lost = null)
    {
        RouteDestination[] destinations = second
            ? [Dest("r1", waiting), Dest("r2", 0)]
            : [Dest("r1", waiting)];
        return new RouteTable
        {
            Version = version,
            Clusters = new(StringComparer.Ordinal) { ["c"] = new ClusterRoute { Cluster = "c", Destinations = destinations } },
            LostNodes = lost ?? [],
        };
    }

    private static RouteDestination Dest(string id, double waiting) => new() { ReplicaId = id, NodeId = "n-" + id, Address = "http://10.0.0.1:9000", Waiting = waiting };

    [Fact]
    public void The_first_table_goes_whole_then_changes_go_as_deltas_based_on_what_the_edge_has()
    {
        var feed = new EdgeRouteFeed(deltas: true, Interval);
        Assert.IsType<RoutesMessage>(feed.Next(Table(1), _time.GetUtcNow()).Message);
        var step = feed.Next(Table(2, second: true), _time.GetUtcNow());
        var delta = Assert.IsType<RouteDeltaMessage>(step.Message).Delta;
        Assert.Equal((1, 2), (delta.BaseVersion, delta.Version));
        // The same content under a newer version sends nothing; the next delta is still based on version 2.
        Assert.Null(feed.Next(Table(3, second: true), _time.GetUtcNow()).Message);
        delta = Assert.IsType<RouteDeltaMessage>(feed.Next(Table(4), _time.GetUtcNow()).Message).Delta;
        Assert.Equal((2, 4), (delta.BaseVersion, delta.Version));
        Assert.Equal((1, 2), (feed.TablesSent, feed.DeltasSent));
    }

    [Fact]
    public void Load_figures_alone_wait_for_the_interval_and_replica_changes_do_not()
    {
        var feed = new EdgeRouteFeed(deltas: true, Interval);
        feed.Next(Table(1), _time.GetUtcNow());
        Assert.NotNull(feed.Next(Table(2, waiting: 1), _time.GetUtcNow()).Message);

        _time.Advance(TimeSpan.FromMilliseconds(100));
        var held = feed.Next(Table(3, waiting: 2), _time.GetUtcNow());
        Assert.Null(held.Message);
        Assert.Equal(TimeSpan.FromMilliseconds(150), held.Wait);

        // A replica added meanwhile goes at once, carrying the load figure with it.
        _time.Advance(TimeSpan.FromMilliseconds(10));
        var delta = Assert.IsType<RouteDeltaMessage>(feed.Next(Table(4, waiting: 2, second: true), _time.GetUtcNow()).Message).Delta;
        var d = Assert.Single(delta.Destinations!);
        Assert.Equal("r2", Assert.Single(d.Added!).ReplicaId);
        Assert.Equal(2, d.Waiting!["r1"]);

        // That reset the load clock: the next load figure waits a whole interval from then.
        _time.Advance(TimeSpan.FromMilliseconds(200));
        Assert.Equal(TimeSpan.FromMilliseconds(50), feed.Next(Table(5, waiting: 3, second: true), _time.GetUtcNow()).Wait);
        _time.Advance(TimeSpan.FromMilliseconds(50));
        delta = Assert.IsType<RouteDeltaMessage>(feed.Next(Table(6, waiting: 4, second: true), _time.GetUtcNow()).Message).Delta;
        Assert.Equal((4, 6), (delta.BaseVersion, delta.Version));
        Assert.Equal(4, Assert.Single(delta.Destinations!).Waiting!["r1"]);

        // A node lost goes at once too.
        Assert.IsType<RouteDeltaMessage>(feed.Next(Table(7, waiting: 4, second: true, lost: ["n9"]), _time.GetUtcNow()).Message);
    }

    [Fact]
    public void A_resync_sends_the_table_whole_even_when_nothing_changed()
    {
        var feed = new EdgeRouteFeed(deltas: true, Interval);
        var table = Table(1);
        feed.Next(table, _time.GetUtcNow());
        Assert.Null(feed.Next(table, _time.GetUtcNow()).Message);
        feed.RequestResync();
        Assert.Same(table, Assert.IsType<RoutesMessage>(feed.Next(table, _time.GetUtcNow()).Message).Table);
        Assert.Null(feed.Next(table, _time.GetUtcNow()).Message);
    }

    [Fact]
    public void An_edge_without_deltas_gets_every_new_table_whole_and_at_once()
    {
        var feed = new EdgeRouteFeed(deltas: false, Interval);
        feed.Next(Table(1), _time.GetUtcNow());
        var table = Table(2, waiting: 5);
        Assert.Same(table, Assert.IsType<RoutesMessage>(feed.Next(table, _time.GetUtcNow()).Message).Table);
        Assert.Null(feed.Next(table, _time.GetUtcNow()).Message);
        Assert.IsType<RoutesMessage>(feed.Next(Table(3, waiting: 6), _time.GetUtcNow()).Message);
        Assert.Equal((3, 0), (feed.TablesSent, feed.DeltasSent));
    }
}
