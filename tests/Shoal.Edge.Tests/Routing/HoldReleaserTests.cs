using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Routing;
using Shoal.Edge.Routing;
using Shoal.Edge.Upstreams;
using Shoal.Testing;

namespace Shoal.Edge.Tests.Routing;

/// <summary>
/// The release rule for held requests: a replica that just entered the route table takes them in
/// steps (its window, widened by each answer and doubling over time, less what is in flight to it),
/// oldest first; a replica long in the table takes them all at once.
/// </summary>
public sealed class HoldReleaserTests
{
    private static readonly TimeSpan s_doubling = TimeSpan.FromMilliseconds(100);
    private readonly FakeTimeProvider _time = new();
    private readonly RouteTableHolder _routes = new();
    private readonly RoutingSignal _signal = new();
    private readonly EdgeRouter _router;
    private readonly ClusterState _cluster;
    private readonly List<int> _released = [];

    public HoldReleaserTests()
    {
        _router = new EdgeRouter(_routes, _signal, _time);
        var options = new EdgeOptions { HeldReleaseWindow = 4, HeldReleaseDoubling = s_doubling };
        var selector = new ReplicaSelector(new PassiveHealth(options, _time, _signal), new Reachable());
        Releaser = new HoldReleaser(_router, selector, _signal, options, _time, NullLogger<HoldReleaser>.Instance);
        SetReplicas();
        _cluster = _router.Cluster("demo");
    }

    private HoldReleaser Releaser { get; }

    private int Released
    {
        get
        {
            lock (_released) return _released.Count;
        }
    }

    [Fact]
    public async Task A_replica_that_enters_the_table_takes_held_requests_in_doubling_steps_oldest_first_and_more_as_answers_come_back()
    {
        Hold(40);
        SetReplicas("a");
        await PassesDoneAsync(4);
        var a = _router.Replica("demo", "a");
        Assert.Equal(4, a.InFlight);

        // Nothing came back and the window has not grown: another look releases nothing.
        Releaser.Schedule(_cluster);
        await PassesDoneAsync(4);

        // Two answers: each frees its place and widens the window by one (4 → 6): four more go.
        Answer(a, 2);
        await PassesDoneAsync(8);
        Assert.Equal(6, a.InFlight);

        // Without answers the window doubles with time (4 → 8, beyond the 6 answers made it): room for 8 − 6 in flight.
        _time.Advance(s_doubling);
        await PassesDoneAsync(10);
        Assert.Equal(8, a.InFlight);

        // 16, then 32 less 16 in flight, then 64: the rest.
        _time.Advance(s_doubling);
        await PassesDoneAsync(18);
        _time.Advance(s_doubling);
        await PassesDoneAsync(34);
        _time.Advance(s_doubling);
        await PassesDoneAsync(40);
        Assert.Equal(0, _cluster.Queue.Count);
        lock (_released) Assert.Equal(Enumerable.Range(0, 40), _released);
    }

    [Fact]
    public async Task Each_new_replica_has_its_own_window_and_a_replica_long_in_the_table_takes_every_held_request_at_once()
    {
        SetReplicas("old");
        _time.Advance(TimeSpan.FromSeconds(5));
        // A replica that has served for a while: held requests (every replica was briefly ejected, say) all go at once.
        Hold(100);
        Releaser.Schedule(_cluster);
        await PassesDoneAsync(100);

        Answer(_router.Replica("demo", "old"), 100);
        SetReplicas();
        Hold(20);
        SetReplicas("b", "c");
        await PassesDoneAsync(108);
        Assert.Equal(8, _router.Replica("demo", "b").InFlight + _router.Replica("demo", "c").InFlight);
    }

    [Fact]
    public async Task A_replica_that_left_the_table_and_came_back_starts_its_ramp_again()
    {
        SetReplicas("a");
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(Releaser.Room(_cluster, _time.GetTimestamp(), out _) > 1_000_000);

        SetReplicas();
        Hold(10);
        SetReplicas("a");
        await PassesDoneAsync(4);
        Assert.Equal(6, _cluster.Queue.Count);
    }

    [Fact]
    public async Task A_cluster_that_left_the_table_lets_every_held_request_go_at_once()
    {
        Hold(10);
        SetReplicas("a");
        await PassesDoneAsync(4);
        _routes.Update(new RouteTable { Version = _routes.Current.Version + 1 });
        await PassesDoneAsync(10);
    }

    [Fact]
    public async Task A_window_of_zero_releases_every_held_request_at_once()
    {
        var options = new EdgeOptions { HeldReleaseWindow = 0 };
        using var router = new EdgeRouter(_routes, _signal, _time);
        _ = new HoldReleaser(router, new ReplicaSelector(new PassiveHealth(options, _time, _signal), new Reachable()), _signal, options, _time, NullLogger<HoldReleaser>.Instance);
        var cluster = router.Cluster("demo");
        for (var i = 0; i < 10; i++) Assert.NotNull(cluster.Queue.TryEnqueue(_time.GetTimestamp(), _time.GetTimestamp() + _time.TimestampFrequency * 60, 100, default));
        SetReplicas("a");
        await Eventually.UntilAsync(() => cluster.Queue.Count == 0 && cluster.Queue._passRequests == 0, what: "every held request released");
    }

    // Queues requests that, once released, go in flight to the replica a pass finds (as the proxy does, on the pass's thread).
    private void Hold(int count)
    {
        for (var i = 0; i < count; i++)
        {
            _time.Advance(TimeSpan.FromTicks(1));
            var now = _time.GetTimestamp();
            var held = _cluster.Queue.TryEnqueue(now, now + _time.TimestampFrequency * 600, 1000, default) ?? throw new InvalidOperationException("queue full");
            var n = Released + _cluster.Queue.Count - 1;
            held.Task.ContinueWith(_ =>
            {
                var view = _router.Find("demo");
                if (view is { Targets.Length: > 0 })
                {
                    var target = view.Targets.MinBy(t => t.State.InFlight);
                    Interlocked.Increment(ref target.State._inFlight);
                }
                lock (_released) _released.Add(n);
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private void Answer(EdgeReplica replica, int count)
    {
        for (var i = 0; i < count; i++)
        {
            Interlocked.Decrement(ref replica._inFlight);
            Releaser.AfterAttempt(_cluster, replica);
        }
    }

    /// <summary>Waits until the passes asked for have run and <paramref name="released"/> requests have left the queue, then checks no more did.</summary>
    private async Task PassesDoneAsync(int released)
    {
        await Eventually.UntilAsync(() => Released >= released && Volatile.Read(ref _cluster.Queue._passRequests) == 0, what: $"{released} released");
        Assert.Equal(released, Released);
    }

    private void SetReplicas(params string[] ids) => _routes.Update(new RouteTable
    {
        Version = _routes.Current.Version + 1,
        Clusters = new(StringComparer.Ordinal)
        {
            ["demo"] = new ClusterRoute
            {
                Cluster = "demo",
                Destinations = [.. ids.Select(id => new RouteDestination { ReplicaId = id, NodeId = "n", Address = "http://127.0.0.1:1" })],
            },
        },
    });

    private sealed class Reachable : IUpstreamConnector
    {
        public bool IsReachable(RouteDestination destination) => true;

        public (HttpMessageInvoker Client, string Address) Resolve(RouteDestination destination) => throw new NotSupportedException();
    }
}
