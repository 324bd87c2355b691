using Shoal.Core.Model;
using Shoal.Core.Reconciliation;

namespace Shoal.ControlPlane.State;

/// <summary>
/// What the reconciler's replacement rules (<see cref="Shoal.Core.Reconciliation.Replacements"/>) read
/// besides the model: restarts agents reported, and moves off flapping nodes under way.
/// </summary>
public sealed partial class ControlPlaneState
{
    // Replicas being moved off a flapping node (in memory; a restarted server decides afresh).
    private readonly HashSet<string> _leavingFlappingNodes = new(StringComparer.Ordinal);

    // Replica id → when its agent reported each restart within the crash-loop window. Stored with the
    // replica (ReplicaRecord.RecentRestarts) whenever it changes, which is only when a report's restart
    // count went up (the replica is written then anyway), so a server restart keeps a crash loop's count.
    private readonly Dictionary<string, List<DateTimeOffset>> _restartTimes = new(StringComparer.Ordinal);

    // A stored replica's restarts, back in memory (server start). Caller holds the lock.
    private void LoadRestartsLocked(ReplicaRecord r)
    {
        if (r.RecentRestarts.Length > 0) _restartTimes[r.Id] = [.. r.RecentRestarts.Order()];
        LoadQuietLocked(r);
    }

    // Counts the restarts a report showed; the replica to keep carries them so they are stored with it. Caller holds the lock.
    private ReplicaRecord RecordRestartsLocked(ReplicaRecord before, ReplicaRecord updated, DateTimeOffset now)
    {
        if (updated.Restarts <= before.Restarts) return updated;
        if (!_restartTimes.TryGetValue(before.Id, out var times)) _restartTimes[before.Id] = times = [];
        Replacements.RecordRestarts(times, updated.Restarts - before.Restarts, now, _reconcilerOptions);
        return updated with { RecentRestarts = [.. times] };
    }
}
