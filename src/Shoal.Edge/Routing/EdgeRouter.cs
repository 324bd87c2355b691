using System.Collections.Concurrent;
using Microsoft.Extensions.Primitives;
using Shoal.Contracts;
using Shoal.Core.Routing;

namespace Shoal.Edge.Routing;

/// <summary>A routable replica: its route-table entry and the edge's live state for it.</summary>
public readonly record struct RouteTarget(RouteDestination Destination, EdgeReplica State);

/// <summary>One cluster of the current route table, with its replicas' live state attached.</summary>
public sealed class ClusterView
{
    internal ClusterView(ClusterRoute route, RouteTarget[] targets, ClusterState state)
    {
        Route = route;
        Targets = targets;
        State = state;
        RoundRobin = route.Balancing == BalancingPolicy.RoundRobin;
    }

    public ClusterRoute Route { get; }

    public RouteTarget[] Targets { get; }

    public ClusterState State { get; }

    public bool RoundRobin { get; }
}

/// <summary>
/// The route table as the request path reads it: each cluster's destinations joined once per
/// table (not per request) to the per-replica state that outlives tables. Rebuilt lazily when the
/// source's table is replaced; fires <see cref="RoutingSignal"/> on every change so held requests look again.
/// </summary>
public sealed class EdgeRouter : IDisposable
{
    /// <summary>
    /// How long the live state (counters, passive health) of a replica or cluster that left the
    /// route table is kept: a replica that comes back within it (not ready for a while, a node
    /// that returned) keeps its history; one gone for longer is forgotten, so an edge that runs for
    /// months under replica churn does not grow.
    /// </summary>
    public static readonly TimeSpan ForgetAfter = TimeSpan.FromMinutes(10);

    /// <summary>Departed state is looked for at most this often (tables change on every heartbeat).</summary>
    internal static readonly TimeSpan ForgetCheckInterval = TimeSpan.FromMinutes(1);

    private readonly IRouteTableSource _source;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, EdgeReplica> _replicas = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ClusterState> _clusters = new(StringComparer.Ordinal);
    private readonly IDisposable _subscription;
    private volatile Snapshot _snapshot = new(null, new Dictionary<string, ClusterView>(StringComparer.Ordinal), new Dictionary<string, ProjectModels>(StringComparer.Ordinal));
    private long _lastForgetCheck;
    // The table the last change was checked against, to see which replicas left it.
    private RouteTable _previous = RouteTable.Empty;

    public EdgeRouter(IRouteTableSource source, RoutingSignal signal, TimeProvider? time = null)
    {
        _source = source;
        _time = time ?? TimeProvider.System;
        _subscription = ChangeToken.OnChange(source.GetChangeToken, () =>
        {
            var table = source.Current;
            CutLostNodes(table);
            var previous = Interlocked.Exchange(ref _previous, table);
            CutDeparted(previous, table);
            TrackEntries(previous, table);
            ForgetDeparted(table);
            signal.Fire();
        });
    }

    /// <summary>
    /// Drops the state of replicas and clusters absent from the route table for
    /// <see cref="ForgetAfter"/> (never while requests are in flight to them or held for them).
    /// Runs on table changes, at most once per <see cref="ForgetCheckInterval"/>.
    /// </summary>
    private void ForgetDeparted(RouteTable table)
    {
        var now = _time.GetTimestamp();
        if (_lastForgetCheck != 0 && _time.GetElapsedTime(_lastForgetCheck, now) < ForgetCheckInterval) return;
        _lastForgetCheck = now;
        var present = new HashSet<string>(StringComparer.Ordinal);
        foreach (var route in table.Clusters.Values)
        {
            foreach (var d in route.Destinations) present.Add(d.ReplicaId);
        }
        foreach (var (id, replica) in _replicas)
        {
            if (Departed(present.Contains(id), ref replica._absentSince, now) && replica.InFlight == 0)
            {
                _replicas.TryRemove(KeyValuePair.Create(id, replica));
            }
        }
        foreach (var (name, cluster) in _clusters)
        {
            if (Departed(table.Clusters.ContainsKey(name), ref cluster._absentSince, now) && cluster.Queue.Count == 0)
            {
                _clusters.TryRemove(KeyValuePair.Create(name, cluster));
            }
        }
    }

    /// <summary>Tracks since when something is absent; true once it has been for <see cref="ForgetAfter"/>.</summary>
    private bool Departed(bool present, ref long absentSince, long now)
    {
        if (present)
        {
            absentSince = 0;
            return false;
        }
        if (absentSince == 0)
        {
            absentSince = now;
            return false;
        }
        return _time.GetElapsedTime(absentSince, now) >= ForgetAfter;
    }

    /// <summary>Requests in flight to replicas on nodes the control plane lost are cut (and retried elsewhere when they can be).</summary>
    private void CutLostNodes(RouteTable table)
    {
        if (table.LostNodes.Length == 0) return;
        var lost = new HashSet<string>(table.LostNodes, StringComparer.Ordinal);
        foreach (var replica in _replicas.Values)
        {
            if (replica.InFlight > 0 && replica.NodeId is { } node && lost.Contains(node)) replica.CutInFlight();
        }
    }

    /// <summary>
    /// Requests in flight to replicas that left the table without draining (unhealthy, failed,
    /// removed) are cut while they have no response, and retried elsewhere when they can be: an
    /// unhealthy replica may be hung, and would hold them until the activity timeout. A draining
    /// replica keeps them: it is finishing its in-flight requests. Only clusters whose destinations
    /// changed are looked at.
    /// </summary>
    private void CutDeparted(RouteTable previous, RouteTable table)
    {
        HashSet<string>? draining = null;
        foreach (var (name, old) in previous.Clusters)
        {
            var now = table.Clusters.GetValueOrDefault(name);
            if (ReferenceEquals(old.Destinations, now?.Destinations) || SameReplicas(old.Destinations, now?.Destinations)) continue;
            HashSet<string>? present = null;
            foreach (var d in old.Destinations)
            {
                if (!_replicas.TryGetValue(d.ReplicaId, out var replica) || replica.InFlight == 0) continue;
                present ??= now is null ? [] : new HashSet<string>(now.Destinations.Select(x => x.ReplicaId), StringComparer.Ordinal);
                if (present.Contains(d.ReplicaId)) continue;
                draining ??= new HashSet<string>(table.DrainingReplicas, StringComparer.Ordinal);
                if (!draining.Contains(d.ReplicaId)) replica.CutUnanswered();
            }
        }
    }

    /// <summary>
    /// Notes when replicas entered the table (their held-release ramp counts from then, see
    /// <see cref="HoldReleaser"/>), and forgets it for those that left: one that comes back (a
    /// restarted replica) is cold again. Only clusters whose destinations changed are looked at.
    /// </summary>
    private void TrackEntries(RouteTable previous, RouteTable table)
    {
        var now = Math.Max(1, _time.GetTimestamp());
        foreach (var (name, route) in table.Clusters)
        {
            var old = previous.Clusters.GetValueOrDefault(name);
            if (old is not null && (ReferenceEquals(old.Destinations, route.Destinations) || SameReplicas(old.Destinations, route.Destinations))) continue;
            foreach (var d in route.Destinations)
            {
                var replica = Replica(name, d.ReplicaId, d.NodeId);
                if (Volatile.Read(ref replica._enteredAt) == 0) Interlocked.CompareExchange(ref replica._enteredAt, now, 0);
            }
        }
        foreach (var (name, old) in previous.Clusters)
        {
            var current = table.Clusters.GetValueOrDefault(name);
            if (ReferenceEquals(old.Destinations, current?.Destinations) || SameReplicas(old.Destinations, current?.Destinations)) continue;
            var present = current is null ? [] : new HashSet<string>(current.Destinations.Select(x => x.ReplicaId), StringComparer.Ordinal);
            foreach (var d in old.Destinations)
            {
                if (present.Contains(d.ReplicaId) || !_replicas.TryGetValue(d.ReplicaId, out var replica)) continue;
                Volatile.Write(ref replica._enteredAt, 0);
                Volatile.Write(ref replica._rampAnswers, 0);
            }
        }
    }

    /// <summary>True when both hold the same replicas in the same order (the common change: load figures only).</summary>
    private static bool SameReplicas(RouteDestination[] a, RouteDestination[]? b)
    {
        if (b is null || a.Length != b.Length) return false;
        for (var i = 0; i < a.Length; i++)
        {
            if (!string.Equals(a[i].ReplicaId, b[i].ReplicaId, StringComparison.Ordinal)) return false;
        }
        return true;
    }

    /// <summary>Every replica the edge knows (for metrics): those routed to, and those that left the table less than <see cref="ForgetAfter"/> ago.</summary>
    public ICollection<EdgeReplica> Replicas => _replicas.Values;

    /// <summary>Every cluster the edge knows (for metrics), kept like <see cref="Replicas"/>.</summary>
    public ICollection<ClusterState> Clusters => _clusters.Values;

    public ClusterView? Find(string cluster)
    {
        var table = _source.Current;
        var snapshot = _snapshot;
        if (!ReferenceEquals(snapshot.Table, table)) snapshot = Rebuild(table);
        return snapshot.Clusters.GetValueOrDefault(cluster);
    }

    /// <summary>
    /// The cluster of <paramref name="project"/> that serves <paramref name="model"/> (the <c>/v1</c>
    /// facade's routing), from an index built once per route table. Several clusters serving the
    /// model: the first by name with a ready replica, else the first by name not failed (it holds
    /// the request and wakes from zero), else the first by name.
    /// </summary>
    public ClusterView? FindModel(string project, string model)
    {
        var snapshot = Current();
        if (!snapshot.Models.TryGetValue(project, out var models) || !models.Clusters.TryGetValue(model, out var names)) return null;
        ClusterView? idle = null, failed = null;
        foreach (var name in names)
        {
            if (!snapshot.Clusters.TryGetValue(name, out var view)) continue;
            if (view.Route.Unavailable is not null) failed ??= view;
            else if (view.Targets.Length > 0) return view;
            else idle ??= view;
        }
        return idle ?? failed;
    }

    /// <summary>The model names <paramref name="project"/>'s clusters serve, sorted.</summary>
    public IReadOnlyList<string> ModelsOf(string project) =>
        Current().Models.TryGetValue(project, out var models) ? models.Names : [];

    private Snapshot Current()
    {
        var table = _source.Current;
        var snapshot = _snapshot;
        return ReferenceEquals(snapshot.Table, table) ? snapshot : Rebuild(table);
    }

    /// <summary>The live state of a replica (created on first use).</summary>
    public EdgeReplica Replica(string cluster, string replicaId, string? nodeId = null)
    {
        var replica = _replicas.GetOrAdd(replicaId, static (id, c) => new EdgeReplica(c, id), cluster);
        if (nodeId is not null && replica.NodeId != nodeId) replica.NodeId = nodeId;
        return replica;
    }

    public ClusterState Cluster(string name) => _clusters.GetOrAdd(name, static (n, time) => new ClusterState(n, time), _time);

    private Snapshot Rebuild(RouteTable table)
    {
        // Racing rebuilds of the same table produce equal snapshots; the last write wins harmlessly.
        var clusters = new Dictionary<string, ClusterView>(table.Clusters.Count, StringComparer.Ordinal);
        foreach (var (name, route) in table.Clusters)
        {
            var targets = new RouteTarget[route.Destinations.Length];
            for (var i = 0; i < targets.Length; i++)
            {
                var d = route.Destinations[i];
                targets[i] = new RouteTarget(d, Replica(name, d.ReplicaId, d.NodeId));
            }
            clusters[name] = new ClusterView(route, targets, Cluster(name));
        }
        var snapshot = new Snapshot(table, clusters, IndexModels(table));
        _snapshot = snapshot;
        return snapshot;
    }

    /// <summary>Project → model → the names of the clusters serving it (sorted), for <see cref="FindModel"/>.</summary>
    private static Dictionary<string, ProjectModels> IndexModels(RouteTable table)
    {
        var byProject = new Dictionary<string, Dictionary<string, List<string>>>(StringComparer.Ordinal);
        foreach (var (name, route) in table.Clusters)
        {
            if (route.Models is not { Length: > 0 } models) continue;
            if (!byProject.TryGetValue(route.Project, out var index)) byProject[route.Project] = index = new(StringComparer.Ordinal);
            foreach (var model in models)
            {
                if (!index.TryGetValue(model, out var clusters)) index[model] = clusters = [];
                if (!clusters.Contains(name)) clusters.Add(name);
            }
        }
        var result = new Dictionary<string, ProjectModels>(byProject.Count, StringComparer.Ordinal);
        foreach (var (project, index) in byProject)
        {
            var clusters = new Dictionary<string, string[]>(index.Count, StringComparer.Ordinal);
            foreach (var (model, names) in index)
            {
                names.Sort(StringComparer.Ordinal);
                clusters[model] = [.. names];
            }
            var all = index.Keys.ToArray();
            Array.Sort(all, StringComparer.Ordinal);
            result[project] = new ProjectModels(clusters, all);
        }
        return result;
    }

    public void Dispose() => _subscription.Dispose();

    private sealed record ProjectModels(Dictionary<string, string[]> Clusters, string[] Names);

    private sealed record Snapshot(RouteTable? Table, Dictionary<string, ClusterView> Clusters, Dictionary<string, ProjectModels> Models);
}
