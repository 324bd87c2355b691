using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Reconciliation;
using Shoal.Core.Model;

namespace Shoal.ControlPlane.State;

/// <summary>
/// Cluster events. Events of a desired-state change commit in the same transaction as the change;
/// events seen in agents' reports (started, ready, unhealthy…) wait in memory and go to the store
/// with the next flush of observed state, like the state they describe. Reads merge both.
/// </summary>
public sealed partial class ControlPlaneState
{
    private readonly List<ClusterEventRecord> _pendingEvents = [];
    private long _eventSeq;

    // Caller holds the lock. Sequence numbers follow the clock (µs-ish: ms × 1000, then +1 per event
    // within a millisecond), so a second server on the same store (say, one starting while the old
    // one still flushes) does not reuse the numbers the first is writing; the store also ignores a
    // duplicate rather than failing the commit.
    private ClusterEventRecord NewEventLocked(string clusterId, DateTimeOffset at, string type, string message, string? replicaId = null, string? nodeId = null, string? actor = null) => new()
    {
        Actor = actor,
        Seq = _eventSeq = Math.Max(_eventSeq + 1, at.ToUnixTimeMilliseconds() * 1000),
        ClusterId = clusterId,
        At = at,
        Type = type,
        ReplicaId = replicaId,
        NodeId = nodeId,
        NodeName = nodeId is null ? null : _nodes.GetValueOrDefault(nodeId)?.Name,
        Message = message,
    };

    // A reconciler's event (numbered 0) numbered like the others. Caller holds the lock.
    private ClusterEventRecord NumberedLocked(ClusterEventRecord e) =>
        e with { Seq = _eventSeq = Math.Max(_eventSeq + 1, e.At.ToUnixTimeMilliseconds() * 1000) };

    // An event found in observed state: stored with the next flush.
    private void RecordObservedLocked(string clusterId, DateTimeOffset at, string type, string message, string? replicaId, string? nodeId) =>
        _pendingEvents.Add(NewEventLocked(clusterId, at, type, message, replicaId, nodeId));

    // Replicas that failed and restarted since they were last ready, with both already told in events:
    // their further failures, restarts, pulls and starts are not listed one by one (a crash loop or a
    // pull retried with back-off would add several events per restart). The restart count and the
    // reason stay in the replica's status, and the replacement's event sums the loop up. Being ready
    // again ends it.
    private readonly HashSet<string> _quietReplicas = new(StringComparer.Ordinal);

    // A stored replica that was failing (restarted, not ready since) stays quiet after a server start. Caller holds the lock.
    private void LoadQuietLocked(ReplicaRecord r)
    {
        if (r.Restarts > 0 && r.State is ReplicaState.Failed or ReplicaState.Pulling or ReplicaState.Starting) _quietReplicas.Add(r.Id);
    }

    /// <summary>What a report's change of a replica says happened: restarted, started, ready, unhealthy, failed…</summary>
    private void RecordReplicaTransitionLocked(ReplicaRecord before, ReplicaRecord after, DateTimeOffset now)
    {
        var node = after.NodeId;
        var restarted = after.Restarts > before.Restarts;
        if (after.State == ReplicaState.Ready)
        {
            _quietReplicas.Remove(after.Id);
        }
        else if (_quietReplicas.Contains(after.Id))
        {
            return;
        }
        if (restarted)
        {
            RecordObservedLocked(after.ClusterId, now, ClusterEventTypes.Restarted,
                $"restart {after.Restarts.ToString(CultureInfo.InvariantCulture)}" + (before.Reason is { Length: > 0 } why ? $" (after: {why})" : ""), after.Id, node);
            // Until it is ready again, this restart's event stands for the ones that follow.
            if (after.State != ReplicaState.Ready) _quietReplicas.Add(after.Id);
        }
        if (after.State == before.State) return;
        switch (after.State)
        {
            case ReplicaState.Pulling when !restarted:
                RecordObservedLocked(after.ClusterId, now, ClusterEventTypes.Pulling, "pulling the image", after.Id, node);
                break;
            case ReplicaState.Starting when !restarted:
                RecordObservedLocked(after.ClusterId, now, ClusterEventTypes.Started, "started", after.Id, node);
                break;
            case ReplicaState.Ready:
                var since = after.StartedAt is { } started ? $" {Seconds(now - started)} s after start" : "";
                if (node is not null && _liveness.TryGetValue(node, out var live) && RouteRefusalLocked(after, live) is { } refused)
                {
                    RecordObservedLocked(after.ClusterId, now, ClusterEventTypes.Unroutable,
                        $"ready{since}, but no traffic is routed to it: node {_nodes[node].Name} {(live.Tunnel ? "reported" : "is direct-mode and")} {refused}", after.Id, node);
                    break;
                }
                RecordObservedLocked(after.ClusterId, now, ClusterEventTypes.Ready, $"ready{since}: in routing", after.Id, node);
                break;
            case ReplicaState.Unhealthy:
                RecordObservedLocked(after.ClusterId, now, ClusterEventTypes.Unhealthy, $"{after.Reason ?? "health check failed"}: out of routing", after.Id, node);
                break;
            case ReplicaState.Failed:
                RecordObservedLocked(after.ClusterId, now, ClusterEventTypes.Failed, after.Reason ?? (after.ExitCode is { } code ? $"exited with code {code}" : "failed"), after.Id, node);
                break;
        }
    }

    // Event messages read the same whatever the server's culture.
    private static string Seconds(TimeSpan span) => Generations.Seconds(span);

    /// <summary>
    /// The last <paramref name="limit"/> events of a cluster, oldest first, or null when there is no such cluster.
    /// </summary>
    public async Task<IReadOnlyList<ClusterEventRecord>?> ListEventsAsync(string name, int limit, CancellationToken ct)
    {
        string id;
        List<ClusterEventRecord> pending;
        await _gate.WaitAsync(ct);
        try
        {
            if (!_clusterIdsByName.TryGetValue(name, out id!)) return null;
            pending = _pendingEvents.Where(e => e.ClusterId == id).ToList();
        }
        finally
        {
            _gate.Release();
        }
        // Read outside the lock; an event flushed meanwhile is in both lists, hence the union by sequence.
        var stored = await _store.ListEventsAsync(id, limit, ct);
        return stored.Concat(pending)
            .DistinctBy(e => e.Seq)
            .OrderBy(e => e.Seq)
            .TakeLast(limit)
            .ToList();
    }
}
