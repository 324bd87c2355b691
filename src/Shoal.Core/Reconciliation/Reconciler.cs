using System.Runtime.CompilerServices;
using Shoal.Contracts;
using Shoal.Core.Model;
using Shoal.Core.Scheduling;

namespace Shoal.Core.Reconciliation;

/// <summary>
/// The control plane's decisions as pure code: a snapshot of the model and the time in, a plan of
/// writes out. One pass: nodes gone past their grace go offline and their replicas are replaced;
/// per cluster, finished drains stop, a failing update rolls back, replicas that must go are
/// replaced surge-first (one extra at a time, an old one drained only once the others keep the
/// desired ready count), the replica count is met (surplus drained); drained nodes with nothing
/// left finish draining; replicas without a node are placed. No store, no clock, no lock: the
/// caller commits the plan in one transaction and applies it.
/// </summary>
public static class Reconciler
{
    public static ReconcilePlan Plan(ReconcileInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var now = input.Now;
        var plan = new ReconcilePlan(now, new Dictionary<string, ReplicaRecord>(input.Replicas, StringComparer.Ordinal));

        TakeLostNodesOffline(input, plan);

        var byCluster = plan.Replicas.Values.GroupBy(r => r.ClusterId).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        foreach (var cluster in input.Clusters.Values)
        {
            ClusterReconciler.Reconcile(input, plan, cluster, byCluster.GetValueOrDefault(cluster.Id) ?? []);
        }
        FinishNodeDrains(input, plan);
        Place(input, plan);
        CollectWrites(input, plan);
        return plan;
    }

    /// <summary>A cluster event (numbered by the caller when it is stored).</summary>
    public static ClusterEventRecord Event(ReconcileInput input, string clusterId, DateTimeOffset at, string type, string message, string? replicaId = null, string? nodeId = null) => new()
    {
        Seq = 0,
        ClusterId = clusterId,
        At = at,
        Type = type,
        ReplicaId = replicaId,
        NodeId = nodeId,
        NodeName = nodeId is null ? null : input.Nodes.GetValueOrDefault(nodeId)?.Name,
        Message = message,
    };

    /// <summary>Nodes gone longer than their grace period: offline, their replicas removed (and so replaced elsewhere).</summary>
    private static void TakeLostNodesOffline(ReconcileInput input, ReconcilePlan plan)
    {
        var now = plan.Now;
        List<string>? lost = null;
        foreach (var id in input.Unlinked ?? (IReadOnlyCollection<string>)input.Nodes.Keys.ToList())
        {
            if (!input.Nodes.TryGetValue(id, out var node)) continue;
            var link = input.LinkOf(id);
            if (link.Connected || link.DisconnectedSince is not { } since || node.State == NodeState.Offline) continue;
            if (now - since < (link.Grace ?? input.Options.NodeGracePeriod)) continue;
            (lost ??= []).Add(id);
        }
        if (lost is null) return;
        var lostSet = lost.ToHashSet(StringComparer.Ordinal);
        var onLost = plan.Replicas.Values.Where(r => r.NodeId is not null && lostSet.Contains(r.NodeId)).ToLookup(r => r.NodeId!, StringComparer.Ordinal);
        foreach (var id in lost.Order(StringComparer.Ordinal))
        {
            var node = input.Nodes[id];
            var link = input.LinkOf(id);
            var since = link.DisconnectedSince!.Value;
            var grace = link.Grace ?? input.Options.NodeGracePeriod;
            plan.Nodes[id] = node with { State = NodeState.Offline };
            foreach (var r in onLost[id])
            {
                plan.Remove(r);
                plan.Events.Add(Event(input, r.ClusterId, now, ClusterEventTypes.Replaced,
                    $"node {node.Name} gone for {Generations.Seconds(now - since)} s (grace {Generations.Seconds(grace)} s): replica removed, a replacement is placed elsewhere",
                    r.Id, id));
            }
            plan.ChangedNodes.Add(id);
            plan.OfflineNodes.Add(id);
        }
    }

    /// <summary>A connected node's state follows its flags; a disconnected or offline one keeps saying so.</summary>
    public static NodeState SchedulingState(NodeRecord node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return node.State is NodeState.Disconnected or NodeState.Offline ? node.State
            : node.Draining ? NodeState.Draining
            : node.Cordoned ? NodeState.Cordoned
            : NodeState.Ready;
    }

    // A drained node with no replica left is done draining; it stays cordoned until uncordoned.
    private static void FinishNodeDrains(ReconcileInput input, ReconcilePlan plan)
    {
        HashSet<string>? occupied = null;
        // Draining nodes are few: find them without a lookup in the plan for every node.
        var draining = plan.Nodes.Values.Where(n => n.Draining)
            .Concat(input.Nodes.Values.Where(n => n.Draining && !plan.Nodes.ContainsKey(n.Id)))
            .ToList();
        foreach (var current in draining)
        {
            occupied ??= plan.Replicas.Values.Where(r => r.NodeId is not null).Select(r => r.NodeId!).ToHashSet(StringComparer.Ordinal);
            if (occupied.Contains(current.Id)) continue;
            var done = current with { Draining = false };
            plan.Nodes[current.Id] = done with { State = SchedulingState(done) };
        }
    }

    /// <summary>Placement of every replica without a node, oldest first.</summary>
    private static void Place(ReconcileInput input, ReconcilePlan plan)
    {
        var now = plan.Now;
        var replicas = plan.Replicas;
        var requests = replicas.Values
            .Where(r => r.NodeId is null)
            .OrderBy(r => r.CreatedAt)
            .ThenBy(r => r.Id, StringComparer.Ordinal)
            .Select(r =>
            {
                var cluster = plan.ClusterOf(r.ClusterId, input.Clusters);
                var spec = Generations.SpecFor(cluster, r.Generation);
                return new PlacementRequest(r.Id, r.ClusterId, spec.Gpu, spec.GpuCount, spec.Image, Replacements.AvoidedNodes(cluster, now), spec.RequiredNodeLabels,
                    Replacements.WarmNodes(cluster, now, input.Options.WarmFor));
            })
            .ToList();
        if (requests.Count == 0) return;

        // Only schedulable nodes: the scheduler uses no other (not even for its reasons).
        var capacity = new List<NodeCapacity>(input.Nodes.Count);
        foreach (var n in input.Nodes.Values)
        {
            var current = plan.Nodes.GetValueOrDefault(n.Id) ?? n;
            if (current.State != NodeState.Ready || current.Cordoned || !current.Approved) continue;
            var link = input.LinkOf(n.Id);
            if (!link.Connected || link.AddressRefused is not null) continue;
            capacity.Add(s_shapes.GetValue(n, NodeShape.Of).Capacity(n.Id, link.Reliability));
        }
        var placedReplicas = replicas.Values
            .Where(r => r.NodeId is not null)
            .Select(r => new PlacedReplica(r.ClusterId, r.NodeId!, r.GpuIndexes));
        var heldBack = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in Scheduler.Schedule(capacity, placedReplicas, requests))
        {
            var r = replicas[p.ReplicaId];
            if (p.Placed)
            {
                replicas[r.Id] = r with
                {
                    NodeId = p.NodeId,
                    GpuIndexes = p.GpuIndexes,
                    State = ReplicaState.Assigned,
                    Reason = null,
                    AssignedAt = now,
                    UpdatedAt = now,
                };
                plan.ChangedNodes.Add(p.NodeId!);
                plan.Placed++;
                var gpus = string.Join(',', p.GpuIndexes);
                plan.Events.Add(Event(input, r.ClusterId, now, ClusterEventTypes.Scheduled,
                    $"scheduled on {input.Nodes[p.NodeId!].Name} (GPU {gpus})", r.Id, p.NodeId));
            }
            else
            {
                plan.Pending++;
                var gpu = Generations.SpecFor(plan.ClusterOf(r.ClusterId, input.Clusters), r.Generation).Gpu;
                if (!heldBack.TryGetValue(gpu, out var note)) heldBack[gpu] = note = HeldBackNote(input, plan, gpu);
                var reason = p.Reason + note;
                if (r.Reason != reason)
                {
                    replicas[r.Id] = r with { Reason = reason, UpdatedAt = now };
                    plan.Events.Add(Event(input, r.ClusterId, now, ClusterEventTypes.Pending, $"cannot be placed: {reason}", r.Id));
                }
            }
        }
    }

    /// <summary>
    /// A node record's GPUs, images and labels as the scheduler takes them, built once per record
    /// (records are immutable and replaced on change) instead of once per pass: at 10,000 nodes the
    /// sets were most of a pass's allocations. The node as offered to the scheduler is kept too, and
    /// offered again while the node's reliability is the same.
    /// </summary>
    private sealed record NodeShape(GpuSlot[] Gpus, IReadOnlySet<string>? Images, IReadOnlySet<string>? Labels)
    {
        private NodeCapacity? _offered;

        public static NodeShape Of(NodeRecord n) => new(
            n.Hardware.Gpus.Select(g => new GpuSlot(g.Index, g.Type)).ToArray(),
            n.Images.Length == 0 ? null : n.Images.ToHashSet(StringComparer.Ordinal),
            n.Labels.Length == 0 ? null : n.Labels.ToHashSet(StringComparer.Ordinal));

        public NodeCapacity Capacity(string id, NodeReliability reliability)
        {
            var offered = Volatile.Read(ref _offered);
            if (offered is not null && offered.Reliability == reliability.Score && offered.Flapping == reliability.Flapping) return offered;
            offered = new NodeCapacity(id, true, Gpus, reliability.Score, Images, reliability.Flapping, Labels);
            Volatile.Write(ref _offered, offered);
            return offered;
        }
    }

    private static readonly ConditionalWeakTable<NodeRecord, NodeShape> s_shapes = new();

    // Connected nodes with GPUs of this type that the operator's policy keeps from work, for a pending replica's reason.
    private static string HeldBackNote(ReconcileInput input, ReconcilePlan plan, string gpu)
    {
        var notes = new List<string>();
        foreach (var n in input.Nodes.Values)
        {
            var current = plan.Nodes.GetValueOrDefault(n.Id) ?? n;
            var link = input.LinkOf(n.Id);
            if (!link.Connected || !current.Hardware.Gpus.Any(g => g.Type == gpu)) continue;
            if (!current.Approved) notes.Add($"{current.Name} waits for approval (shoal nodes approve {current.Name})");
            else if (link.AddressRefused is { } refused) notes.Add($"{current.Name}: {refused}");
        }
        if (notes.Count == 0) return "";
        var shown = string.Join("; ", notes.Order(StringComparer.Ordinal).Take(3));
        return $"; not used: {shown}" + (notes.Count > 3 ? $" (and {notes.Count - 3} more)" : "");
    }

    // New or changed replicas, and node revisions bumped where the assignment set changed.
    private static void CollectWrites(ReconcileInput input, ReconcilePlan plan)
    {
        foreach (var r in plan.Replicas.Values)
        {
            if (!input.Replicas.TryGetValue(r.Id, out var before) || before != r) plan.Upserts.Add(r);
        }
        foreach (var id in plan.ChangedNodes)
        {
            var n = plan.Nodes.GetValueOrDefault(id) ?? input.Nodes[id];
            plan.Nodes[id] = n with { Revision = n.Revision + 1 };
        }
    }
}
