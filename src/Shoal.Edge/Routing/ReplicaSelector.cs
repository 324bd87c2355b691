using Shoal.Edge.Upstreams;

namespace Shoal.Edge.Routing;

/// <summary>
/// Picks a replica for a request among those that can take it: reachable (the connector says so),
/// not ejected, and not the one that just failed; replicas this request already tried come last.
/// Least outstanding (default): between two random candidates (power of two choices), the one with
/// fewer requests, counting the edge's own in-flight ones plus the replica's reported waiting queue.
/// Round robin: the next eligible replica in table order.
/// </summary>
public sealed class ReplicaSelector
{
    private const int StackLimit = 128;
    private readonly PassiveHealth _health;
    private readonly IUpstreamConnector _upstreams;

    public ReplicaSelector(PassiveHealth health, IUpstreamConnector upstreams)
    {
        _health = health;
        _upstreams = upstreams;
    }

    /// <summary>
    /// The replica to send to, or null when none can take the request now. <paramref name="exclude"/>
    /// is never chosen; <paramref name="tried"/> are chosen only when nothing else is left.
    /// </summary>
    public RouteTarget? Pick(ClusterView cluster, EdgeReplica? exclude = null, ReadOnlySpan<EdgeReplica?> tried = default)
    {
        var targets = cluster.Targets;
        if (targets.Length == 0) return null;
        if (cluster.RoundRobin) return PickRoundRobin(cluster, targets, exclude, tried);

        Span<int> eligible = targets.Length <= StackLimit ? stackalloc int[targets.Length] : new int[targets.Length];
        var count = Collect(targets, eligible, exclude, tried, skipTried: true);
        if (count == 0 && !tried.IsEmpty) count = Collect(targets, eligible, exclude, tried, skipTried: false);
        if (count == 0) return null;
        if (count == 1) return targets[eligible[0]];

        var i = Random.Shared.Next(count);
        var j = Random.Shared.Next(count - 1);
        if (j >= i) j++;
        var a = targets[eligible[i]];
        var b = targets[eligible[j]];
        return Load(a) <= Load(b) ? a : b;
    }

    /// <summary>True when a replica other than <paramref name="exclude"/> could take a request now.</summary>
    public bool HasOther(ClusterView cluster, EdgeReplica exclude)
    {
        foreach (var t in cluster.Targets)
        {
            if (t.State != exclude && Usable(t)) return true;
        }
        return false;
    }

    private static double Load(in RouteTarget t) => t.State.InFlight + t.Destination.Waiting;

    private RouteTarget? PickRoundRobin(ClusterView cluster, RouteTarget[] targets, EdgeReplica? exclude, ReadOnlySpan<EdgeReplica?> tried)
    {
        var start = (int)((uint)Interlocked.Increment(ref cluster.State._roundRobin) % (uint)targets.Length);
        for (var pass = 0; pass < 2; pass++)
        {
            for (var k = 0; k < targets.Length; k++)
            {
                var t = targets[(start + k) % targets.Length];
                if (t.State == exclude || (pass == 0 && Contains(tried, t.State)) || !Usable(t)) continue;
                return t;
            }
            if (tried.IsEmpty) break;
        }
        return null;
    }

    private int Collect(RouteTarget[] targets, Span<int> into, EdgeReplica? exclude, ReadOnlySpan<EdgeReplica?> tried, bool skipTried)
    {
        var n = 0;
        for (var k = 0; k < targets.Length; k++)
        {
            var t = targets[k];
            if (t.State == exclude || (skipTried && Contains(tried, t.State)) || !Usable(t)) continue;
            into[n++] = k;
        }
        return n;
    }

    /// <summary>True when <paramref name="t"/> could take a request now (reachable, not ejected).</summary>
    public bool IsUsable(in RouteTarget t) => Usable(t);

    private bool Usable(in RouteTarget t) => !_health.IsEjected(t.State) && _upstreams.IsReachable(t.Destination);

    private static bool Contains(ReadOnlySpan<EdgeReplica?> tried, EdgeReplica state)
    {
        foreach (var s in tried)
        {
            if (s == state) return true;
        }
        return false;
    }
}
