using System.Diagnostics;

namespace Shoal.Edge.Routing;

/// <summary>
/// Hands held requests on when their cluster can take them: on every <see cref="RoutingSignal"/>
/// (a route table change, an ejection that ended, a tunnel that opened), whenever a request is
/// queued while a replica is usable, when a request to the cluster's replicas ends while others
/// are held, and when a replica's release window grows. One release pass per cluster runs on the
/// thread pool and lets the oldest request go, then the next, while the cluster's usable replicas
/// have room. Each released request runs on the pass's thread until it is on its way to a
/// replica, so requests leave in arrival order and none that arrived later overtakes them (new
/// arrivals queue behind held ones).
/// </summary>
/// <remarks>
/// A replica's room for held requests is its release window less the requests this edge has in
/// flight to it. The window starts at <see cref="EdgeOptions.HeldReleaseWindow"/> when the
/// replica enters the route table; each answer that comes back while requests are held frees its
/// place and widens the window by one (it doubles with each round of answers, like TCP's slow
/// start), and without answers it still doubles every <see cref="EdgeOptions.HeldReleaseDoubling"/>.
/// A replica that wakes a cluster from zero with a thousand requests held gets a batch it can
/// start on, and answers it, instead of a thousand connections at once in front of its first
/// answer. A replica that has been in the table for a while has a window far beyond any hold
/// queue, so it takes every held request at once as before.
/// </remarks>
public sealed partial class HoldReleaser
{
    // Beyond this many doublings the window is unbounded (32 << 20 is past any hold queue).
    private const int MaxDoublings = 20;

    private readonly EdgeRouter _router;
    private readonly ReplicaSelector _selector;
    private readonly TimeProvider _time;
    private readonly int _window;
    private readonly long _doubling;
    private readonly ILogger<HoldReleaser> _logger;

    public HoldReleaser(EdgeRouter router, ReplicaSelector selector, RoutingSignal signal, EdgeOptions options, TimeProvider time, ILogger<HoldReleaser> logger)
    {
        _router = router;
        _selector = selector;
        _time = time;
        _window = options.HeldReleaseWindow;
        _doubling = Math.Max(1, (long)(options.HeldReleaseDoubling.TotalSeconds * time.TimestampFrequency));
        _logger = logger;
        signal.Fired += OnChanged;
    }

    private void OnChanged()
    {
        foreach (var cluster in _router.Clusters)
        {
            if (cluster.Queue.Count > 0) Schedule(cluster);
        }
    }

    /// <summary>After a request was queued: if its cluster can take requests now (the change came between its look and its queueing), release.</summary>
    public void AfterQueued(ClusterState cluster)
    {
        if (Room(cluster, _time.GetTimestamp(), out _) > 0) Schedule(cluster);
    }

    /// <summary>After a request to <paramref name="replica"/> (of <paramref name="cluster"/>) ended: its place, and one more, may go to held ones.</summary>
    public void AfterAttempt(ClusterState cluster, EdgeReplica replica)
    {
        if (cluster.Queue.Count == 0) return;
        Interlocked.Increment(ref replica._rampAnswers);
        Schedule(cluster);
    }

    /// <summary>Runs a release pass for <paramref name="cluster"/> soon; passes requested while one runs fold into one more.</summary>
    public void Schedule(ClusterState cluster)
    {
        if (Interlocked.Increment(ref cluster.Queue._passRequests) == 1)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static s => s.Releaser.Run(s.Cluster), (Releaser: this, Cluster: cluster), preferLocal: false);
        }
    }

    private void Run(ClusterState cluster)
    {
        var queue = cluster.Queue;
        while (true)
        {
            var seen = Volatile.Read(ref queue._passRequests);
            Pass(cluster);
            if (Interlocked.Add(ref queue._passRequests, -seen) == 0) return;
        }
    }

    private void Pass(ClusterState cluster)
    {
        var queue = cluster.Queue;
        var began = Stopwatch.GetTimestamp();
        var now = _time.GetTimestamp();
        // Room is taken once per pass: the requests it releases reach their replica's in-flight count on this thread.
        // A released request that finds no replica after all queues again at its place and asks for
        // another pass; the bound keeps one pass from chasing it.
        var room = Room(cluster, now, out var grows);
        var released = 0;
        for (var budget = Math.Min(queue.Count, room); budget > 0; budget--)
        {
            if (!queue.ReleaseOldest()) break;
            Interlocked.Increment(ref cluster._released);
            released++;
        }
        // Still held while a replica's window is full: look again when it grows (answers coming back ask too).
        if (queue.Count > 0 && grows != long.MaxValue) WakeAt(cluster, now, grows);
        if (released > 0)
        {
            var ms = Stopwatch.GetElapsedTime(began).TotalMilliseconds;
            LogReleased(_logger, released, cluster.Name, ms, queue.Count);
        }
    }

    /// <summary>
    /// How many held requests the cluster can take now: unbounded when holding makes no sense (the
    /// cluster left the table or failed: the request then gets its 404 or 503 at once), else the
    /// room in its usable replicas' release windows. <paramref name="grows"/>: when a usable
    /// replica's window next grows (a timestamp), <see cref="long.MaxValue"/> when none will.
    /// </summary>
    internal int Room(ClusterState cluster, long now, out long grows)
    {
        grows = long.MaxValue;
        var view = _router.Find(cluster.Name);
        if (view is null || view.Route.Unavailable is not null) return int.MaxValue;
        long room = 0;
        foreach (var t in view.Targets)
        {
            if (!_selector.IsUsable(t)) continue;
            var window = Window(t.State, now, ref grows);
            room += Math.Max(0, window - t.State.InFlight);
            if (room >= int.MaxValue) return int.MaxValue;
        }
        return (int)room;
    }

    // The replica's release window now; lowers grows to when it next doubles.
    private long Window(EdgeReplica replica, long now, ref long grows)
    {
        if (_window == 0) return int.MaxValue;
        var entered = Volatile.Read(ref replica._enteredAt);
        if (entered == 0)
        {
            // A table this edge reads before its change was taken in (the router notes entries then): the ramp starts now.
            Interlocked.CompareExchange(ref replica._enteredAt, Math.Max(1, now), 0);
            entered = Volatile.Read(ref replica._enteredAt);
        }
        var doublings = Math.Max(0, now - entered) / _doubling;
        if (doublings >= MaxDoublings) return int.MaxValue;
        grows = Math.Min(grows, entered + (doublings + 1) * _doubling);
        return Math.Max((long)_window << (int)doublings, (long)_window + Volatile.Read(ref replica._rampAnswers));
    }

    private void WakeAt(ClusterState cluster, long now, long due)
    {
        var wait = _time.GetElapsedTime(now, due);
        if (wait < TimeSpan.Zero) wait = TimeSpan.Zero;
        // Only the pass (one at a time per cluster) sets the timer.
        if (cluster._rampTimer is { } timer) timer.Change(wait, Timeout.InfiniteTimeSpan);
        else cluster._rampTimer = _time.CreateTimer(static s => ((Wake)s!).Fire(), new Wake(this, cluster), wait, Timeout.InfiniteTimeSpan);
    }

    private sealed record Wake(HoldReleaser Releaser, ClusterState Cluster)
    {
        public void Fire() => Releaser.Schedule(Cluster);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Released {Released} held requests of cluster {Cluster} in {Ms:F1} ms; {Held} still held")]
    private static partial void LogReleased(ILogger logger, int released, string cluster, double ms, int held);
}
