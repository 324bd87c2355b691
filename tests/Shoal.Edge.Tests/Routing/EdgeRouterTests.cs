using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Routing;
using Shoal.Edge.Routing;

namespace Shoal.Edge.Tests.Routing;

/// <summary>The edge forgets the live state of replicas and clusters that left the route table long ago, and only those.</summary>
public sealed class EdgeRouterTests : IDisposable
{
    private readonly FakeTimeProvider _time = new();
    private readonly RouteTableHolder _routes = new();
    private readonly EdgeRouter _router;
    private long _version;

    public EdgeRouterTests() => _router = new EdgeRouter(_routes, new RoutingSignal(), _time);

    public void Dispose() => _router.Dispose();

    private void Publish(params (string Cluster, string[] Replicas)[] clusters)
    {
        _routes.Update(new RouteTable
        {
            Version = ++_version,
            Clusters = clusters.ToDictionary(
                c => c.Cluster,
                c => new ClusterRoute
                {
                    Cluster = c.Cluster,
                    Destinations = [.. c.Replicas.Select(r => new RouteDestination { ReplicaId = r, NodeId = "n-" + r, Address = "http://127.0.0.1:1" })],
                },
                StringComparer.Ordinal),
        });
        foreach (var (cluster, _) in clusters) _router.Find(cluster);
    }

    private string[] Replicas => [.. _router.Replicas.Select(r => r.ReplicaId).Order(StringComparer.Ordinal)];

    private string[] Clusters => [.. _router.Clusters.Select(c => c.Name).Order(StringComparer.Ordinal)];

    [Fact]
    public void Replicas_and_clusters_gone_from_the_table_for_longer_than_the_limit_are_forgotten()
    {
        Publish(("demo", ["a", "b"]), ("old", ["c"]));
        Assert.Equal(["a", "b", "c"], Replicas);
        _router.Replica("demo", "b")._ejections = 2;

        // b stops being routed to and the cluster "old" is deleted: both are still known for a while.
        _time.Advance(TimeSpan.FromMinutes(2));
        Publish(("demo", ["a"]));
        Assert.Equal(["a", "b", "c"], Replicas);
        _time.Advance(EdgeRouter.ForgetAfter - TimeSpan.FromMinutes(1));
        Publish(("demo", ["a"]));
        Assert.Equal(["a", "b", "c"], Replicas);
        Assert.Equal(["demo", "old"], Clusters);

        // Past the limit they are forgotten; what is still routed stays.
        _time.Advance(TimeSpan.FromMinutes(2));
        Publish(("demo", ["a"]));
        Assert.Equal(["a"], Replicas);
        Assert.Equal(["demo"], Clusters);
    }

    [Fact]
    public void A_replica_that_comes_back_in_time_keeps_its_state_and_one_with_requests_in_flight_is_kept()
    {
        Publish(("demo", ["a", "b", "busy"]));
        var b = _router.Replica("demo", "b");
        b._ejections = 3;
        var busy = _router.Replica("demo", "busy");
        Interlocked.Increment(ref busy._inFlight);

        _time.Advance(TimeSpan.FromMinutes(2));
        Publish(("demo", ["a"]));
        _time.Advance(EdgeRouter.ForgetAfter - TimeSpan.FromMinutes(1));
        Publish(("demo", ["a", "b"]));
        _time.Advance(TimeSpan.FromMinutes(5));
        Publish(("demo", ["a", "b"]));

        // b came back before the limit: the same state, its history intact. "busy" still has a request in flight.
        Assert.Same(b, _router.Replica("demo", "b"));
        Assert.Equal(3, b.Ejections);
        Assert.Equal(["a", "b", "busy"], Replicas);

        Interlocked.Decrement(ref busy._inFlight);
        _time.Advance(TimeSpan.FromMinutes(2));
        Publish(("demo", ["a", "b"]));
        Assert.Equal(["a", "b"], Replicas);
    }
}
