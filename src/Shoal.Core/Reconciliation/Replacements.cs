using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Model;
using Shoal.Core.Scheduling;

namespace Shoal.Core.Reconciliation;

/// <summary>Why a replica must be replaced, and the node its replacement should avoid (if any).</summary>
/// <param name="Message">Shown in events and as the drain reason, e.g. "crash-looping on node-2 (3 restarts within 300 s)".</param>
/// <param name="AvoidNode">A node new replicas of the cluster avoid for a while, or null.</param>
/// <param name="StartsFlappingMove">The replica's node flaps and a steady node has room: its move begins now.</param>
/// <param name="Failed">The replica itself failed (a crash loop), not its node or the cluster's spec: an attempt that may count against the cluster.</param>
public sealed record Replacement(string Message, string? AvoidNode = null, bool StartsFlappingMove = false, bool Failed = false);

/// <summary>
/// "Needs replacement because …": the one place that decides which replicas must go although the
/// cluster still wants that many. The reconciler replaces them surge-first (a new replica, ready,
/// then the old one drained) when they serve, and at once when they do not. Each reason is its own
/// method; a new one is one more method in <see cref="ReasonFor"/>.
/// </summary>
public static class Replacements
{
    /// <summary>Why <paramref name="r"/> must be replaced, or null when it may stay.</summary>
    public static Replacement? ReasonFor(ReconcileInput input, ClusterRecord cluster, ReplicaRecord r) =>
        OutdatedGeneration(cluster, r)
        ?? NodeBeingDrained(input, r)
        ?? CrashLooping(input, r)
        ?? NodeFlapping(input, cluster, r);

    private static Replacement? OutdatedGeneration(ClusterRecord cluster, ReplicaRecord r) =>
        Generations.IsCurrent(cluster, r) ? null : new Replacement($"generation {r.Generation} is replaced by generation {cluster.Generation}");

    private static Replacement? NodeBeingDrained(ReconcileInput input, ReplicaRecord r) =>
        r.NodeId is { } nodeId && input.Nodes.TryGetValue(nodeId, out var node) && node.Draining
            ? new Replacement($"node {node.Name} is being drained")
            : null;

    private static Replacement? CrashLooping(ReconcileInput input, ReplicaRecord r)
    {
        if (r.NodeId is not { } nodeId || !input.RestartTimes.TryGetValue(r.Id, out var times)) return null;
        var options = input.Options;
        var since = input.Now - options.CrashLoopWindow;
        var recent = times.Count(t => t > since);
        if (recent < options.CrashLoopRestarts) return null;
        var name = input.Nodes.GetValueOrDefault(nodeId)?.Name ?? nodeId;
        return new Replacement(
            string.Create(CultureInfo.InvariantCulture, $"crash-looping on {name} ({recent} restarts within {options.CrashLoopWindow.TotalSeconds:0} s") +
            ((r.LastFailure ?? r.Reason) is { Length: > 0 } why ? $"; last: {why})" : ")"),
            nodeId,
            Failed: true);
    }

    /// <summary>
    /// The replica's node keeps dropping (<see cref="NodeReliability.Flapping"/>): it moves to a steady
    /// node, but only when one has room for it; otherwise it stays where it is rather than churn
    /// between unreliable nodes. Once a move began, its replacement holds the room it found.
    /// </summary>
    private static Replacement? NodeFlapping(ReconcileInput input, ClusterRecord cluster, ReplicaRecord r)
    {
        if (r.NodeId is not { } nodeId || !input.Nodes.TryGetValue(nodeId, out var node)) return null;
        var reliability = input.LinkOf(nodeId).Reliability;
        if (!reliability.Flapping) return null;
        var starts = false;
        if (!input.LeavingFlappingNodes.Contains(r.Id))
        {
            if (!SteadyNodeHasRoom(input, cluster.Spec.Gpu, cluster.Spec.GpuCount, nodeId)) return null;
            starts = true;
        }
        return new Replacement(
            string.Create(CultureInfo.InvariantCulture, $"node {node.Name} is flapping ({reliability.RecentDisconnects} disconnects within {NodeReliability.Window.TotalMinutes:0} min)"),
            nodeId,
            starts);
    }

    /// <summary>Whether a schedulable node other than <paramref name="except"/>, not flapping, has <paramref name="count"/> free GPUs of <paramref name="gpu"/>.</summary>
    private static bool SteadyNodeHasRoom(ReconcileInput input, string gpu, int count, string except)
    {
        foreach (var node in input.Nodes.Values)
        {
            if (node.Id == except || node.State != NodeState.Ready || node.Cordoned || node.Draining) continue;
            var link = input.LinkOf(node.Id);
            if (!link.Connected || link.Reliability.Flapping) continue;
            var used = input.Replicas.Values.Where(x => x.NodeId == node.Id).SelectMany(x => x.GpuIndexes).ToHashSet();
            if (node.Hardware.Gpus.Count(g => g.Type == gpu && !used.Contains(g.Index)) >= count) return true;
        }
        return false;
    }

    /// <summary>The nodes new replicas of <paramref name="cluster"/> avoid now (null when none).</summary>
    public static HashSet<string>? AvoidedNodes(ClusterRecord cluster, DateTimeOffset now)
    {
        HashSet<string>? set = null;
        foreach (var (node, until) in cluster.Rollout.AvoidNodes)
        {
            if (until > now) (set ??= new HashSet<string>(StringComparer.Ordinal)).Add(node);
        }
        return set;
    }

    /// <summary>The nodes where a replica of <paramref name="cluster"/> finished draining within <paramref name="warmFor"/> (null when none).</summary>
    public static HashSet<string>? WarmNodes(ClusterRecord cluster, DateTimeOffset now, TimeSpan warmFor)
    {
        HashSet<string>? set = null;
        foreach (var (node, at) in cluster.Rollout.WarmNodes)
        {
            if (now - at < warmFor) (set ??= new HashSet<string>(StringComparer.Ordinal)).Add(node);
        }
        return set;
    }

    /// <summary>The cluster with <paramref name="nodeId"/> remembered as warm from now (entries past <paramref name="warmFor"/> dropped; at most the 32 latest kept).</summary>
    public static ClusterRecord Warm(ClusterRecord cluster, string nodeId, DateTimeOffset now, TimeSpan warmFor)
    {
        var warm = cluster.Rollout.WarmNodes
            .Where(kv => now - kv.Value < warmFor && kv.Key != nodeId)
            .OrderByDescending(kv => kv.Value)
            .Take(31)
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        warm[nodeId] = now;
        return cluster with { Rollout = cluster.Rollout with { WarmNodes = warm } };
    }

    /// <summary>The cluster with <paramref name="replacement"/>'s node avoided for a while (and expired entries dropped).</summary>
    public static ClusterRecord Avoid(ClusterRecord cluster, Replacement replacement, DateTimeOffset now, TimeSpan avoidFor)
    {
        if (replacement.AvoidNode is not { } node) return cluster;
        var avoid = cluster.Rollout.AvoidNodes.Where(kv => kv.Value > now).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        avoid[node] = now + avoidFor;
        return cluster with { Rollout = cluster.Rollout with { AvoidNodes = avoid } };
    }

    /// <summary>Adds the restarts a report showed to <paramref name="times"/> (at most the crash-loop count), dropping those out of the window.</summary>
    public static void RecordRestarts(List<DateTimeOffset> times, int count, DateTimeOffset now, ReconcilerOptions options)
    {
        ArgumentNullException.ThrowIfNull(times);
        ArgumentNullException.ThrowIfNull(options);
        for (var i = 0; i < Math.Min(count, options.CrashLoopRestarts); i++) times.Add(now);
        var since = now - options.CrashLoopWindow;
        times.RemoveAll(t => t <= since);
    }
}
