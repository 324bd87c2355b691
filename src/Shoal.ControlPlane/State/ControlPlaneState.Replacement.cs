using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Scheduling;
using Shoal.Core.Model;

namespace Shoal.ControlPlane.State;

/// <summary>Why a replica must be replaced, and the node its replacement should avoid (if any).</summary>
/// <param name="Message">Shown in events and as the drain reason, e.g. "crash-looping on node-2 (3 restarts within 300 s)".</param>
/// <param name="AvoidNode">A node new replicas of the cluster avoid for a while, or null.</param>
internal sealed record Replacement(string Message, string? AvoidNode = null);

/// <summary>
/// "Needs replacement because …": the one place that decides which replicas must go although the
/// cluster still wants that many. The reconciler replaces them surge-first (a new replica, ready,
/// then the old one drained) when they serve, and at once when they do not. Each reason is its own
/// method; a new one (say, "node unstable: flapping") is one more method in <see cref="ReplacementReasonLocked"/>.
/// </summary>
public sealed partial class ControlPlaneState
{
    // Replicas being moved off a flapping node (in memory; a restarted server decides afresh).
    private readonly HashSet<string> _leavingFlappingNodes = new(StringComparer.Ordinal);

    // Replica id → when its agent reported each restart (in memory: after a server restart the count starts again).
    private readonly Dictionary<string, List<DateTimeOffset>> _restartTimes = new(StringComparer.Ordinal);

    /// <summary>Why <paramref name="r"/> must be replaced, or null when it may stay. Caller holds the lock.</summary>
    private Replacement? ReplacementReasonLocked(ClusterRecord cluster, ReplicaRecord r, DateTimeOffset now) =>
        OutdatedGeneration(cluster, r)
        ?? NodeBeingDrained(r)
        ?? CrashLooping(r, now)
        ?? NodeFlapping(cluster, r, now);

    private static Replacement? OutdatedGeneration(ClusterRecord cluster, ReplicaRecord r) =>
        IsCurrent(cluster, r) ? null : new Replacement($"generation {r.Generation} is replaced by generation {cluster.Generation}");

    private Replacement? NodeBeingDrained(ReplicaRecord r) =>
        r.NodeId is { } nodeId && _nodes.TryGetValue(nodeId, out var node) && node.Draining
            ? new Replacement($"node {node.Name} is being drained")
            : null;

    private Replacement? CrashLooping(ReplicaRecord r, DateTimeOffset now)
    {
        if (r.NodeId is not { } nodeId || !_restartTimes.TryGetValue(r.Id, out var times)) return null;
        var since = now - _options.CrashLoopWindow;
        var recent = times.Count(t => t > since);
        if (recent < _options.CrashLoopRestarts) return null;
        var name = _nodes.GetValueOrDefault(nodeId)?.Name ?? nodeId;
        return new Replacement(
            string.Create(CultureInfo.InvariantCulture, $"crash-looping on {name} ({recent} restarts within {_options.CrashLoopWindow.TotalSeconds:0} s") +
            (r.Reason is { Length: > 0 } why ? $"; last: {why})" : ")"),
            nodeId);
    }

    /// <summary>
    /// The replica's node keeps dropping (<see cref="NodeReliability.Flapping"/>): it moves to a steady
    /// node, but only when one has room for it; otherwise it stays where it is rather than churn
    /// between unreliable nodes.
    /// </summary>
    private Replacement? NodeFlapping(ClusterRecord cluster, ReplicaRecord r, DateTimeOffset now)
    {
        if (r.NodeId is not { } nodeId || !_nodes.TryGetValue(nodeId, out var node)) return null;
        var reliability = ReliabilityLocked(nodeId, now);
        if (!reliability.Flapping)
        {
            _leavingFlappingNodes.Remove(r.Id);
            return null;
        }
        // Once a move began, its replacement holds the room it found: the move goes on.
        if (!_leavingFlappingNodes.Contains(r.Id))
        {
            if (!SteadyNodeHasRoomLocked(cluster.Spec.Gpu, cluster.Spec.GpuCount, nodeId, now)) return null;
            _leavingFlappingNodes.Add(r.Id);
        }
        return new Replacement(
            string.Create(CultureInfo.InvariantCulture, $"node {node.Name} is flapping ({reliability.RecentDisconnects} disconnects within {NodeReliability.Window.TotalMinutes:0} min)"),
            nodeId);
    }

    /// <summary>Whether a schedulable node other than <paramref name="except"/>, not flapping, has <paramref name="count"/> free GPUs of <paramref name="gpu"/>.</summary>
    private bool SteadyNodeHasRoomLocked(string gpu, int count, string except, DateTimeOffset now)
    {
        foreach (var node in _nodes.Values)
        {
            if (node.Id == except || node.State != NodeState.Ready || node.Cordoned || node.Draining) continue;
            if (!_liveness.TryGetValue(node.Id, out var live) || live.Session is null || ReliabilityLocked(node.Id, now).Flapping) continue;
            var used = _replicas.Values.Where(x => x.NodeId == node.Id).SelectMany(x => x.GpuIndexes).ToHashSet();
            if (node.Hardware.Gpus.Count(g => g.Type == gpu && !used.Contains(g.Index)) >= count) return true;
        }
        return false;
    }

    // A report said the replica restarted (count more than once if several restarts happened between reports).
    private void RecordRestartsLocked(string replicaId, int count, DateTimeOffset now)
    {
        if (!_restartTimes.TryGetValue(replicaId, out var times)) _restartTimes[replicaId] = times = [];
        for (var i = 0; i < Math.Min(count, _options.CrashLoopRestarts); i++) times.Add(now);
        var since = now - _options.CrashLoopWindow;
        times.RemoveAll(t => t <= since);
    }

    /// <summary>The nodes new replicas of <paramref name="cluster"/> avoid now (null when none).</summary>
    private static HashSet<string>? AvoidedNodes(ClusterRecord cluster, DateTimeOffset now)
    {
        HashSet<string>? set = null;
        foreach (var (node, until) in cluster.Rollout.AvoidNodes)
        {
            if (until > now) (set ??= new HashSet<string>(StringComparer.Ordinal)).Add(node);
        }
        return set;
    }

    /// <summary>The cluster with <paramref name="replacement"/>'s node avoided for a while (and expired entries dropped).</summary>
    private ClusterRecord AvoidLocked(ClusterRecord cluster, Replacement replacement, DateTimeOffset now)
    {
        if (replacement.AvoidNode is not { } node) return cluster;
        var avoid = cluster.Rollout.AvoidNodes.Where(kv => kv.Value > now).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        avoid[node] = now + _options.CrashLoopAvoidFor;
        return cluster with { Rollout = cluster.Rollout with { AvoidNodes = avoid } };
    }
}
