using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Routing;
using Shoal.Edge.Routing;
using Shoal.Edge.Upstreams;

namespace Shoal.Edge.Tests.Routing;

public sealed class ReplicaSelectorTests
{
    private readonly FakeTimeProvider _time = new();
    private readonly RouteTableHolder _routes = new();
    private readonly RoutingSignal _signal = new();
    private readonly PassiveHealth _health;
    private readonly EdgeRouter _router;
    private readonly Connector _connector = new();
    private readonly ReplicaSelector _selector;

    public ReplicaSelectorTests()
    {
        _health = new PassiveHealth(new EdgeOptions(), _time, _signal);
        _router = new EdgeRouter(_routes, _signal);
        _selector = new ReplicaSelector(_health, _connector);
    }

    private ClusterView Cluster(string balancing, params (string Id, double Waiting)[] replicas)
    {
        _routes.Update(new RouteTable
        {
            Version = 1,
            Clusters = new(StringComparer.Ordinal)
            {
                ["demo"] = new ClusterRoute
                {
                    Cluster = "demo",
                    Balancing = balancing,
                    Destinations = [.. replicas.Select(r => new RouteDestination { ReplicaId = r.Id, NodeId = "n-" + r.Id, Address = "http://127.0.0.1:1", Waiting = r.Waiting })],
                },
            },
        });
        return _router.Find("demo")!;
    }

    private string Pick(ClusterView view, EdgeReplica? exclude = null, EdgeReplica?[]? tried = null) =>
        _selector.Pick(view, exclude, tried)?.Destination.ReplicaId ?? "none";

    [Fact]
    public void Round_robin_takes_replicas_in_turn_and_skips_ejected_and_unreachable_ones()
    {
        var view = Cluster(BalancingPolicy.RoundRobin, ("a", 0), ("b", 0), ("c", 0));
        Assert.Equal(["a", "b", "c", "a", "b", "c"], Enumerable.Range(0, 6).Select(_ => Pick(view)));

        _health.ReportFailure(_router.Replica("demo", "b"), connectionRefused: true);
        _connector.Unreachable.Add("c");
        Assert.Equal(["a", "a", "a"], Enumerable.Range(0, 3).Select(_ => Pick(view)));
        _health.ReportFailure(_router.Replica("demo", "a"), connectionRefused: true);
        Assert.Equal("none", Pick(view));
    }

    [Fact]
    public void Least_outstanding_picks_the_replica_with_fewer_in_flight_plus_waiting_requests()
    {
        var view = Cluster(BalancingPolicy.LeastOutstanding, ("a", 0), ("b", 3));
        // With two replicas both are always the candidates: b has 3 waiting, so a wins with 2 in flight and loses with 4.
        Interlocked.Add(ref _router.Replica("demo", "a")._inFlight, 2);
        for (var i = 0; i < 20; i++) Assert.Equal("a", Pick(view));
        Interlocked.Add(ref _router.Replica("demo", "a")._inFlight, 2);
        for (var i = 0; i < 20; i++) Assert.Equal("b", Pick(view));
    }

    [Fact]
    public void Least_outstanding_spreads_over_many_replicas_by_power_of_two_choices()
    {
        var view = Cluster(BalancingPolicy.LeastOutstanding, ("a", 0), ("b", 0), ("c", 0), ("d", 100));
        var counts = new Dictionary<string, int>();
        for (var i = 0; i < 240; i++)
        {
            var id = Pick(view);
            counts[id] = counts.GetValueOrDefault(id) + 1;
            Interlocked.Increment(ref _router.Replica("demo", id)._inFlight);
        }
        // Loaded d loses every comparison until the others reach its load (100), so it gets nothing
        // here; the others stay within a few requests of each other (80 each on average).
        Assert.False(counts.ContainsKey("d"));
        Assert.All(["a", "b", "c"], id => Assert.InRange(counts[id], 74, 86));
    }

    [Fact]
    public void The_replica_that_just_failed_is_never_picked_and_tried_ones_only_when_nothing_else_is_left()
    {
        var view = Cluster(BalancingPolicy.LeastOutstanding, ("a", 0), ("b", 0), ("c", 0));
        var a = _router.Replica("demo", "a");
        var b = _router.Replica("demo", "b");
        for (var i = 0; i < 50; i++) Assert.Equal("c", Pick(view, exclude: b, tried: [a, b]));
        _connector.Unreachable.Add("c");
        for (var i = 0; i < 50; i++) Assert.Equal("a", Pick(view, exclude: b, tried: [a, b]));

        var single = Cluster(BalancingPolicy.RoundRobin, ("a", 0));
        Assert.Equal("none", Pick(single, exclude: _router.Replica("demo", "a")));
    }

    [Fact]
    public async Task A_new_route_table_wakes_held_requests_and_keeps_the_replicas_live_state()
    {
        var view = Cluster(BalancingPolicy.LeastOutstanding, ("a", 0));
        Interlocked.Increment(ref view.Targets[0].State._inFlight);
        var wake = _signal.Next;
        var next = Cluster(BalancingPolicy.LeastOutstanding, ("a", 0), ("b", 0));
        await wake.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Same(view.Targets[0].State, next.Targets[0].State);
        Assert.Equal(1, next.Targets[0].State.InFlight);
    }

    private sealed class Connector : IUpstreamConnector
    {
        public HashSet<string> Unreachable { get; } = [];

        public bool IsReachable(RouteDestination destination) => !Unreachable.Contains(destination.ReplicaId);

        public (HttpMessageInvoker Client, string Address) Resolve(RouteDestination destination) => throw new NotSupportedException();
    }
}
