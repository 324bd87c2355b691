namespace Shoal.Edge.Routing;

/// <summary>
/// Hands held requests on when their cluster can take them: on every <see cref="RoutingSignal"/>
/// (a route table change, an ejection that ended, a tunnel that opened) and whenever a request is
/// queued while a replica is usable, one release pass per cluster runs on the thread pool and lets
/// the oldest request go, then the next, while a replica can take one. Each released request runs
/// on the pass's thread until it is on its way to a replica, so requests leave in arrival order
/// and none that arrived later overtakes them (new arrivals queue behind held ones).
/// </summary>
public sealed class HoldReleaser
{
    private readonly EdgeRouter _router;
    private readonly ReplicaSelector _selector;

    public HoldReleaser(EdgeRouter router, ReplicaSelector selector, RoutingSignal signal)
    {
        _router = router;
        _selector = selector;
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
        if (CanRelease(cluster)) Schedule(cluster);
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
        // A released request that finds no replica after all queues again at its place and asks for
        // another pass; the bound keeps one pass from chasing it.
        for (var budget = queue.Count; budget > 0 && CanRelease(cluster); budget--)
        {
            if (!queue.ReleaseOldest()) return;
            Interlocked.Increment(ref cluster._released);
        }
    }

    /// <summary>
    /// True when holding makes no sense now: a replica can take a request, or the cluster left the
    /// table or failed (the request then gets its 404 or 503 at once).
    /// </summary>
    private bool CanRelease(ClusterState cluster)
    {
        var view = _router.Find(cluster.Name);
        return view is null || view.Route.Unavailable is not null || _selector.HasOther(view, null!);
    }
}
