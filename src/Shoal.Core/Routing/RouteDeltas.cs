using Shoal.Contracts;

namespace Shoal.Core.Routing;

/// <summary>A route delta did not fit the table it was applied to (another base version, or a change to something absent).</summary>
public sealed class RouteDeltaException(string message) : Exception(message);

/// <summary>
/// Computes the <see cref="RouteDelta"/> between two route tables and applies one to a table.
/// Pure: the control plane diffs the tables it builds, the edge applies what it receives, and
/// applying <c>Diff(a, b)</c> to <c>a</c> gives a table equal to <c>b</c>. Destinations are
/// compared by merging the arrays sorted by replica id (as the control plane builds them); a
/// cluster whose array is not sorted goes whole, so any input still round-trips.
/// </summary>
public static class RouteDeltas
{
    /// <summary>What turns <paramref name="from"/> into <paramref name="to"/>.</summary>
    public static RouteDelta Diff(RouteTable from, RouteTable to)
    {
        List<ClusterRoute>? added = null, changed = null;
        List<string>? removed = null;
        List<DestinationDelta>? destinations = null;
        foreach (var (name, route) in to.Clusters)
        {
            if (!from.Clusters.TryGetValue(name, out var old))
            {
                (added ??= []).Add(route);
                continue;
            }
            if (ReferenceEquals(old, route)) continue;
            if (!SameSettings(old, route) || !IsSorted(old.Destinations) || !IsSorted(route.Destinations))
            {
                (changed ??= []).Add(route);
                continue;
            }
            if (DiffDestinations(name, old.Destinations, route.Destinations) is { } delta) (destinations ??= []).Add(delta);
        }
        foreach (var name in from.Clusters.Keys)
        {
            if (!to.Clusters.ContainsKey(name)) (removed ??= []).Add(name);
        }

        var (lostAdded, lostRemoved, lostWhole) = DiffList(from.LostNodes, to.LostNodes);
        var (drainingAdded, drainingRemoved, drainingWhole) = DiffList(from.DrainingReplicas, to.DrainingReplicas);

        return new RouteDelta
        {
            BaseVersion = from.Version,
            Version = to.Version,
            AddedClusters = added?.ToArray(),
            ChangedClusters = changed?.ToArray(),
            RemovedClusters = removed?.ToArray(),
            Destinations = destinations?.ToArray(),
            LostNodesAdded = lostAdded,
            LostNodesRemoved = lostRemoved,
            LostNodes = lostWhole,
            DrainingAdded = drainingAdded,
            DrainingRemoved = drainingRemoved,
            DrainingReplicas = drainingWhole,
        };
    }

    /// <summary>A sorted id list's change as added and removed ids, or whole when either side is not sorted; all null when it did not change.</summary>
    private static (string[]? Added, string[]? Removed, string[]? Whole) DiffList(string[] from, string[] to)
    {
        if (from.AsSpan().SequenceEqual(to)) return (null, null, null);
        if (!IsSorted(from) || !IsSorted(to)) return (null, null, to);
        var (added, removed) = DiffSorted(from, to);
        return (added, removed, null);
    }

    private static string[] ApplyList(string[] current, string[]? whole, string[]? added, string[]? removed, string what)
    {
        if (whole is not null) return whole;
        if (added is null && removed is null) return current;
        return ApplySorted(current, added ?? [], removed ?? [], what);
    }

    /// <summary>True when the delta changes nothing but the version.</summary>
    public static bool IsEmpty(RouteDelta delta) =>
        delta.AddedClusters is null && delta.ChangedClusters is null && delta.RemovedClusters is null && delta.Destinations is null &&
        delta.LostNodesAdded is null && delta.LostNodesRemoved is null && delta.LostNodes is null &&
        delta.DrainingAdded is null && delta.DrainingRemoved is null && delta.DrainingReplicas is null;

    /// <summary>True when the delta changes replicas' load figures and nothing else (those may wait to be batched).</summary>
    public static bool IsLoadOnly(RouteDelta delta) =>
        delta.AddedClusters is null && delta.ChangedClusters is null && delta.RemovedClusters is null &&
        delta.LostNodesAdded is null && delta.LostNodesRemoved is null && delta.LostNodes is null &&
        delta.DrainingAdded is null && delta.DrainingRemoved is null && delta.DrainingReplicas is null &&
        delta.Destinations is { } d && Array.TrueForAll(d, x => x.Added is null && x.Changed is null && x.Removed is null);

    /// <summary>True when the delta carries load figures.</summary>
    public static bool HasLoad(RouteDelta delta) => delta.Destinations is { } d && Array.Exists(d, x => x.Waiting is not null);

    /// <summary>
    /// The table <paramref name="delta"/> makes of <paramref name="table"/>; throws
    /// <see cref="RouteDeltaException"/> when the delta is for another version or names what the table lacks
    /// (the edge then asks for the whole table).
    /// </summary>
    public static RouteTable Apply(RouteTable table, RouteDelta delta)
    {
        if (table.Version != delta.BaseVersion)
        {
            throw new RouteDeltaException($"the delta is for version {delta.BaseVersion}, the table is version {table.Version}");
        }
        var clusters = new Dictionary<string, ClusterRoute>(table.Clusters, StringComparer.Ordinal);
        foreach (var name in delta.RemovedClusters ?? [])
        {
            if (!clusters.Remove(name)) throw new RouteDeltaException($"cluster '{name}' is to be removed but is not in the table");
        }
        foreach (var route in delta.AddedClusters ?? [])
        {
            if (!clusters.TryAdd(route.Cluster, route)) throw new RouteDeltaException($"cluster '{route.Cluster}' is to be added but is in the table already");
        }
        foreach (var route in delta.ChangedClusters ?? [])
        {
            if (!clusters.ContainsKey(route.Cluster)) throw new RouteDeltaException($"cluster '{route.Cluster}' is to be changed but is not in the table");
            clusters[route.Cluster] = route;
        }
        foreach (var d in delta.Destinations ?? [])
        {
            if (!clusters.TryGetValue(d.Cluster, out var route)) throw new RouteDeltaException($"cluster '{d.Cluster}' has destination changes but is not in the table");
            clusters[d.Cluster] = route with { Destinations = ApplyDestinations(d, route.Destinations) };
        }

        var lost = ApplyList(table.LostNodes, delta.LostNodes, delta.LostNodesAdded, delta.LostNodesRemoved, "lost nodes");
        var draining = ApplyList(table.DrainingReplicas, delta.DrainingReplicas, delta.DrainingAdded, delta.DrainingRemoved, "draining replicas");
        return new RouteTable { Version = delta.Version, Clusters = clusters, LostNodes = lost, DrainingReplicas = draining };
    }

    private static bool SameSettings(ClusterRoute a, ClusterRoute b) =>
        a.Cluster == b.Cluster && a.Project == b.Project && a.Public == b.Public && a.Balancing == b.Balancing && a.QueueTimeoutMs == b.QueueTimeoutMs
        && a.Unavailable == b.Unavailable && a.MaxHeld == b.MaxHeld && a.FirstByteTimeoutMs == b.FirstByteTimeoutMs
        && a.Price == b.Price && a.GpuCount == b.GpuCount && SameModels(a.Models, b.Models);

    private static bool SameModels(string[]? a, string[]? b) =>
        ReferenceEquals(a, b) || (a ?? []).AsSpan().SequenceEqual(b ?? []);

    private static bool IsSorted(RouteDestination[] destinations)
    {
        for (var i = 1; i < destinations.Length; i++)
        {
            if (string.CompareOrdinal(destinations[i - 1].ReplicaId, destinations[i].ReplicaId) >= 0) return false;
        }
        return true;
    }

    private static bool IsSorted(string[] ids)
    {
        for (var i = 1; i < ids.Length; i++)
        {
            if (string.CompareOrdinal(ids[i - 1], ids[i]) >= 0) return false;
        }
        return true;
    }

    /// <summary>Merges two arrays sorted by replica id; null when they hold the same.</summary>
    private static DestinationDelta? DiffDestinations(string cluster, RouteDestination[] from, RouteDestination[] to)
    {
        List<RouteDestination>? added = null, changed = null;
        List<string>? removed = null;
        Dictionary<string, double>? waiting = null;
        int i = 0, j = 0;
        while (i < from.Length || j < to.Length)
        {
            var order = i == from.Length ? 1 : j == to.Length ? -1 : string.CompareOrdinal(from[i].ReplicaId, to[j].ReplicaId);
            if (order < 0)
            {
                (removed ??= []).Add(from[i++].ReplicaId);
            }
            else if (order > 0)
            {
                (added ??= []).Add(to[j++]);
            }
            else
            {
                var (a, b) = (from[i++], to[j++]);
                if (ReferenceEquals(a, b) || a == b) continue;
                if (a.NodeId == b.NodeId && a.Address == b.Address && a.Via == b.Via) (waiting ??= new(StringComparer.Ordinal))[b.ReplicaId] = b.Waiting;
                else (changed ??= []).Add(b);
            }
        }
        if (added is null && changed is null && removed is null && waiting is null) return null;
        return new DestinationDelta { Cluster = cluster, Added = added?.ToArray(), Changed = changed?.ToArray(), Removed = removed?.ToArray(), Waiting = waiting };
    }

    private static RouteDestination[] ApplyDestinations(DestinationDelta delta, RouteDestination[] current)
    {
        var removed = delta.Removed is { } r ? new HashSet<string>(r, StringComparer.Ordinal) : null;
        var changed = delta.Changed?.ToDictionary(c => c.ReplicaId, StringComparer.Ordinal);
        var added = delta.Added ?? [];
        if (!IsSorted(added)) throw new RouteDeltaException($"cluster '{delta.Cluster}': added destinations are not sorted by replica id");
        if (!IsSorted(current)) throw new RouteDeltaException($"cluster '{delta.Cluster}': the table's destinations are not sorted by replica id");
        var result = new List<RouteDestination>(current.Length + added.Length);
        int found = 0, i = 0, j = 0;
        while (i < current.Length || j < added.Length)
        {
            var order = i == current.Length ? 1 : j == added.Length ? -1 : string.CompareOrdinal(current[i].ReplicaId, added[j].ReplicaId);
            if (order == 0) throw new RouteDeltaException($"cluster '{delta.Cluster}': replica '{added[j].ReplicaId}' is to be added but is in the table already");
            if (order > 0)
            {
                result.Add(added[j++]);
                continue;
            }
            var d = current[i++];
            if (removed is not null && removed.Contains(d.ReplicaId))
            {
                found++;
                continue;
            }
            if (changed is not null && changed.TryGetValue(d.ReplicaId, out var c))
            {
                found++;
                d = c;
            }
            if (delta.Waiting is not null && delta.Waiting.TryGetValue(d.ReplicaId, out var w))
            {
                found++;
                d = d with { Waiting = w };
            }
            result.Add(d);
        }
        var expected = (removed?.Count ?? 0) + (changed?.Count ?? 0) + (delta.Waiting?.Count ?? 0);
        if (found != expected || (removed?.Count ?? 0) != (delta.Removed?.Length ?? 0) || (changed?.Count ?? 0) != (delta.Changed?.Length ?? 0))
        {
            throw new RouteDeltaException($"cluster '{delta.Cluster}': the delta names replicas that are not in the table");
        }
        return [.. result];
    }

    private static (string[]? Added, string[]? Removed) DiffSorted(string[] from, string[] to)
    {
        List<string>? added = null, removed = null;
        int i = 0, j = 0;
        while (i < from.Length || j < to.Length)
        {
            var order = i == from.Length ? 1 : j == to.Length ? -1 : string.CompareOrdinal(from[i], to[j]);
            if (order < 0) (removed ??= []).Add(from[i++]);
            else if (order > 0) (added ??= []).Add(to[j++]);
            else (i, j) = (i + 1, j + 1);
        }
        return (added?.ToArray(), removed?.ToArray());
    }

    private static string[] ApplySorted(string[] current, string[] added, string[] removed, string what)
    {
        if (!IsSorted(current) || !IsSorted(added)) throw new RouteDeltaException($"{what} are not sorted");
        var gone = new HashSet<string>(removed, StringComparer.Ordinal);
        var result = new List<string>(current.Length + added.Length);
        int found = 0, i = 0, j = 0;
        while (i < current.Length || j < added.Length)
        {
            var order = i == current.Length ? 1 : j == added.Length ? -1 : string.CompareOrdinal(current[i], added[j]);
            if (order == 0) throw new RouteDeltaException($"{what}: '{added[j]}' is to be added but is listed already");
            if (order > 0)
            {
                result.Add(added[j++]);
            }
            else if (gone.Contains(current[i]))
            {
                found++;
                i++;
            }
            else
            {
                result.Add(current[i++]);
            }
        }
        if (found != gone.Count || gone.Count != removed.Length) throw new RouteDeltaException($"the delta removes {what} that are not listed");
        return [.. result];
    }
}
