using Shoal.Contracts;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.State;

// GPU-time metering (issue 16): every commit that writes or deletes replicas also writes the replica
// runs it begins or ends (replica_runs), in the same transaction. A run is a replica's time running on
// a node from its reported start; it is keyed by replica id and start, so writing it again (a server
// restart, a replay) changes nothing and nothing is counted twice.
public sealed partial class ControlPlaneState
{
    // Replica id → start of its run as last committed (only replicas running now). Under _gate.
    private readonly Dictionary<string, DateTimeOffset> _committedRuns = new(StringComparer.Ordinal);

    /// <summary>
    /// The start of the run <paramref name="r"/> is in, to the millisecond as the store keeps it (a start
    /// read back from the store after a restart is the same run as the agent's report of it); null when
    /// it is not running on a node.
    /// </summary>
    private static DateTimeOffset? RunStart(ReplicaRecord? r) =>
        r is { StartedAt: { } started, NodeId: not null, State: ReplicaState.Starting or ReplicaState.Ready or ReplicaState.Unhealthy or ReplicaState.Draining }
            ? DateTimeOffset.FromUnixTimeMilliseconds(started.ToUnixTimeMilliseconds()) : null;

    /// <summary>Commits <paramref name="changes"/> with the replica runs they begin or end; the caller holds the lock.</summary>
    private async Task CommitLockedAsync(StoreChanges changes, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        var began = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        var ended = new List<string>();
        void End(string replicaId, ReplicaRecord? record, DateTimeOffset at)
        {
            if (!_committedRuns.TryGetValue(replicaId, out var start)) return;
            if (record is null && !_replicas.TryGetValue(replicaId, out record)) return;
            if (RunOf(record, start, at > start ? at : start) is { } run) changes.ReplicaRuns.Add(run);
            ended.Add(replicaId);
        }
        foreach (var r in changes.UpsertReplicas)
        {
            var start = RunStart(r);
            _committedRuns.TryGetValue(r.Id, out var committed);
            var had = _committedRuns.ContainsKey(r.Id);
            if (had && start == committed) continue;
            // Stopped (or restarted): the old run ends when the replica last changed, or at its new start.
            if (had) End(r.Id, r, start ?? (r.UpdatedAt > committed ? r.UpdatedAt : now));
            if (start is { } s && RunOf(r, s, null) is { } run)
            {
                changes.ReplicaRuns.Add(run);
                began[r.Id] = s;
            }
        }
        foreach (var id in changes.DeleteReplicas) End(id, null, now);
        foreach (var clusterId in changes.DeleteClusters)
        {
            foreach (var r in _replicas.Values)
            {
                if (r.ClusterId == clusterId) End(r.Id, r, now);
            }
        }
        var commitStart = System.Diagnostics.Stopwatch.GetTimestamp();
        await _store.CommitAsync(changes, ct);
        _gate.CommitDone(commitStart);
        foreach (var id in ended) _committedRuns.Remove(id);
        foreach (var (id, start) in began) _committedRuns[id] = start;
    }

    /// <summary>After loading: the runs of replicas running now are (again) written, so a run begun before an upgrade is metered too.</summary>
    private async Task LoadRunsLocked(CancellationToken ct)
    {
        var changes = new StoreChanges();
        foreach (var r in _replicas.Values)
        {
            if (RunStart(r) is { } start && RunOf(r, start, null) is { } run)
            {
                changes.ReplicaRuns.Add(run);
                _committedRuns[r.Id] = start;
            }
        }
        await _store.CommitAsync(changes, ct);
    }

    private ReplicaRunRecord? RunOf(ReplicaRecord r, DateTimeOffset start, DateTimeOffset? end)
    {
        if (r.NodeId is null || !_clustersById.TryGetValue(r.ClusterId, out var cluster)) return null;
        return new ReplicaRunRecord
        {
            ReplicaId = r.Id,
            StartedAt = start,
            EndedAt = end,
            ClusterId = r.ClusterId,
            Cluster = cluster.Name,
            Project = cluster.Project,
            NodeId = r.NodeId,
            Gpus = r.GpuIndexes.Length > 0 ? r.GpuIndexes.Length : cluster.Spec.GpuCount,
        };
    }
}
