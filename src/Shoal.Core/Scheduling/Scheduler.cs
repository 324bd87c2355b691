namespace Shoal.Core.Scheduling;

/// <summary>One GPU of a node, as the scheduler sees it.</summary>
public readonly record struct GpuSlot(int Index, string Type);

/// <summary>A node offered to the scheduler.</summary>
/// <param name="Id">Node id.</param>
/// <param name="Schedulable">Ready, connected and not cordoned.</param>
/// <param name="Gpus">All GPUs of the node.</param>
/// <param name="Reliability">0 (flaps all the time) to 1 (always up).</param>
/// <param name="CachedImages">Images already on the node, or null.</param>
/// <param name="Flapping">Disconnects too often: used only when no steady node fits.</param>
/// <param name="Labels">Labels the operator gave the node, or null for none.</param>
public sealed record NodeCapacity(
    string Id,
    bool Schedulable,
    IReadOnlyList<GpuSlot> Gpus,
    double Reliability = 1.0,
    IReadOnlySet<string>? CachedImages = null,
    bool Flapping = false,
    IReadOnlySet<string>? Labels = null)
{
    /// <summary>True when the node has every one of <paramref name="required"/>.</summary>
    public bool HasLabels(IReadOnlyList<string>? required) =>
        required is null || required.Count == 0 || (Labels is { } labels && required.All(labels.Contains));
}

/// <summary>A replica that already holds GPUs on a node.</summary>
public readonly record struct PlacedReplica(string ClusterId, string NodeId, IReadOnlyList<int> GpuIndexes);

/// <summary>A replica that needs a node.</summary>
/// <param name="AvoidNodes">
/// Nodes to use only when no other has room (say, where a replica of the cluster crash-looped);
/// the same for every request of a cluster. Null for none.
/// </param>
/// <param name="RequiredLabels">Labels a node must have to take the replica (the same for every request of a cluster); null or empty for none.</param>
/// <param name="WarmNodes">
/// Nodes where a replica of the cluster stopped recently (image and likely model files still cached):
/// preferred among equals, ahead of a cached image alone. The same for every request of a cluster; null for none.
/// </param>
public sealed record PlacementRequest(string ReplicaId, string ClusterId, string Gpu, int GpuCount, string Image, IReadOnlySet<string>? AvoidNodes = null, IReadOnlyList<string>? RequiredLabels = null,
    IReadOnlySet<string>? WarmNodes = null);

/// <summary>Where a replica goes, or why it cannot go anywhere.</summary>
public sealed record Placement(string ReplicaId, string? NodeId, int[] GpuIndexes, string? Reason)
{
    public bool Placed => NodeId is not null;
}

/// <summary>
/// Filter-then-score placement. Filters: node schedulable, has the labels asked for, GPU type matches, enough free GPUs.
/// Nodes the request avoids come last, then flapping nodes. Replicas of one cluster go to distinct
/// nodes when possible (fewest replicas of the cluster first), otherwise onto a node's further free GPUs. Among equals: a node where the cluster's replica stopped recently, image cached, reliability,
/// share of GPUs free, then node id, so the result is deterministic.
/// Pure: no I/O, no clock. Per call O(N + R) to set up (no sort; nothing allocated per node beyond a
/// small record), then per cluster one pass over the nodes that still have a free GPU of its type,
/// keeping only the k best candidates for its k replicas: O(N log k), not a heap of all N.
/// </summary>
public static class Scheduler
{
    public static IReadOnlyList<Placement> Schedule(
        IReadOnlyList<NodeCapacity> nodes,
        IEnumerable<PlacedReplica> existing,
        IReadOnlyList<PlacementRequest> requests)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        ArgumentNullException.ThrowIfNull(existing);
        ArgumentNullException.ThrowIfNull(requests);
        if (requests.Count == 0) return [];

        // No sort: ties are broken by node id inside the comparison, which only the few candidates
        // that tie on everything else ever reach.
        var work = new NodeWork[nodes.Count];
        var byId = new Dictionary<string, int>(work.Length, StringComparer.Ordinal);
        for (var i = 0; i < work.Length; i++)
        {
            work[i] = new NodeWork(nodes[i]);
            byId[nodes[i].Id] = i;
        }

        // Replicas per node are counted only for the clusters being placed (a deploy burst's pass places a
        // few clusters among a thousand others).
        var clusterCounts = new Dictionary<string, Dictionary<int, int>?>(StringComparer.Ordinal);
        foreach (var r in requests) clusterCounts.TryAdd(r.ClusterId, null);
        foreach (var placed in existing)
        {
            if (!byId.TryGetValue(placed.NodeId, out var idx)) continue;
            work[idx].Take(placed.GpuIndexes);
            if (clusterCounts.TryGetValue(placed.ClusterId, out var perNode))
            {
                if (perNode is null) clusterCounts[placed.ClusterId] = perNode = [];
                perNode[idx] = perNode.GetValueOrDefault(idx) + 1;
            }
        }

        // Per GPU type, the nodes with a free GPU of it; a full node drops out as the loop below fills it.
        var openByType = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        for (var i = 0; i < work.Length; i++)
        {
            if (!work[i].Node.Schedulable || work[i].FreeTotal == 0) continue;
            var gpus = work[i].Node.Gpus;
            for (var g = 0; g < gpus.Count; g++)
            {
                var type = gpus[g].Type;
                if (FirstOfType(gpus, g, type) != g) continue;
                if (!openByType.TryGetValue(type, out var list)) openByType[type] = list = [];
                list.Add(i);
            }
        }

        var results = new Placement[requests.Count];
        var groups = new Dictionary<(string, string, int, string), List<int>>();
        var order = new List<(string, string, int, string)>();
        for (var i = 0; i < requests.Count; i++)
        {
            var r = requests[i];
            var key = (r.ClusterId, r.Gpu, r.GpuCount, r.Image);
            if (!groups.TryGetValue(key, out var list))
            {
                groups[key] = list = [];
                order.Add(key);
            }
            list.Add(i);
        }

        foreach (var key in order)
        {
            var (clusterId, gpu, gpuCount, image) = key;
            var members = groups[key];
            clusterCounts.TryGetValue(clusterId, out var counts);
            var avoid = requests[members[0]].AvoidNodes;
            var labels = requests[members[0]].RequiredLabels;
            var warm = requests[members[0]].WarmNodes;

            // Only the best `members.Count` candidates can be picked first: each pick takes at most one
            // of them, and a node taken again ranks by its new count (it goes back into `picks`).
            var open = openByType.GetValueOrDefault(gpu) ?? [];
            // As many replicas as candidates (one big cluster): every candidate counts, one heap of all.
            var all = members.Count >= open.Count;
            var best = new PriorityQueue<int, Rank>(all ? open.Count : members.Count + 1, all ? RankComparer.Instance : RankComparer.Reversed);
            var kept = 0;
            for (var o = 0; o < open.Count; o++)
            {
                var i = open[o];
                var w = work[i];
                var free = w.FreeOfItsType(gpu);
                if (free == 0) continue;
                open[kept++] = i;
                if (free < gpuCount || !w.Node.HasLabels(labels)) continue;
                var rank = w.Rank(counts is null ? 0 : counts.GetValueOrDefault(i), image, avoid, warm);
                if (all || best.Count < members.Count) best.Enqueue(i, rank);
                else if (RankComparer.Instance.Compare(rank, PeekRank(best)) < 0) best.EnqueueDequeue(i, rank);
            }
            open.RemoveRange(kept, open.Count - kept);
            var picks = all ? best : new PriorityQueue<int, Rank>(best.UnorderedItems, RankComparer.Instance);
            string? reason = null;

            foreach (var ri in members)
            {
                var request = requests[ri];
                if (!picks.TryDequeue(out var nodeIdx, out _))
                {
                    reason ??= WhyNot(work, gpu, gpuCount, labels);
                    results[ri] = new Placement(request.ReplicaId, null, [], reason);
                    continue;
                }
                var w = work[nodeIdx];
                var gpus = w.Allocate(gpu, gpuCount);
                counts ??= clusterCounts[clusterId] = [];
                var count = counts.GetValueOrDefault(nodeIdx) + 1;
                counts[nodeIdx] = count;
                results[ri] = new Placement(request.ReplicaId, w.Node.Id, gpus, null);
                if (w.FreeOfItsType(gpu) >= gpuCount)
                {
                    picks.Enqueue(nodeIdx, w.Rank(count, image, avoid, warm));
                }
            }
        }
        return results;
    }

    /// <summary>Why a replica of this kind has no node (only asked when one has none: a pass over every node).</summary>
    private static string WhyNot(NodeWork[] work, string gpu, int gpuCount, IReadOnlyList<string>? labels)
    {
        var anyOfType = false;
        var anyUnlabelled = false;
        foreach (var w in work)
        {
            if (!w.Node.Schedulable || !w.HasType(gpu)) continue;
            if (w.Node.HasLabels(labels)) anyOfType = true;
            else anyUnlabelled = true;
        }
        return !anyOfType
            ? anyUnlabelled
                ? $"no ready node with {gpu} GPUs and label {string.Join(", ", labels!)} (nodes get labels from their provisioning token)"
                : $"no ready node with {gpu} GPUs"
            : gpuCount == 1 ? $"no node with a free {gpu}" : $"no node with {gpuCount} free {gpu} GPUs";
    }

    private static int FirstOfType(IReadOnlyList<GpuSlot> gpus, int upTo, string type)
    {
        for (var i = 0; i < upTo; i++)
        {
            if (string.Equals(gpus[i].Type, type, StringComparison.Ordinal)) return i;
        }
        return upTo;
    }

    private static Rank PeekRank(PriorityQueue<int, Rank> queue) => queue.TryPeek(out _, out var rank) ? rank : default;

    private readonly record struct Rank(bool Avoided, bool Flapping, int ClusterReplicas, double Score, string NodeId);

    private sealed class RankComparer(bool reversed) : IComparer<Rank>
    {
        public static readonly RankComparer Instance = new(false);

        /// <summary>Worst first: the head of a queue that keeps the best few is the one to drop.</summary>
        public static readonly RankComparer Reversed = new(true);

        public int Compare(Rank x, Rank y) => reversed ? Order(y, x) : Order(x, y);

        private static int Order(Rank x, Rank y)
        {
            var c = x.Avoided.CompareTo(y.Avoided);
            if (c != 0) return c;
            c = x.Flapping.CompareTo(y.Flapping);
            if (c != 0) return c;
            c = x.ClusterReplicas.CompareTo(y.ClusterReplicas);
            if (c != 0) return c;
            c = y.Score.CompareTo(x.Score);
            return c != 0 ? c : string.CompareOrdinal(x.NodeId, y.NodeId);
        }
    }

    /// <summary>A node's GPUs during one call: which are taken, without a collection per node until one is.</summary>
    private sealed class NodeWork(NodeCapacity node)
    {
        private bool[]? _taken;
        private int _used;

        public NodeCapacity Node { get; } = node;

        /// <summary>Free GPUs of any type.</summary>
        public int FreeTotal => Node.Gpus.Count - _used;

        public bool HasType(string type)
        {
            foreach (var g in Node.Gpus)
            {
                if (string.Equals(g.Type, type, StringComparison.Ordinal)) return true;
            }
            return false;
        }

        // Every GPU of the node is of one type (the common case): its free GPUs of that type are all its free GPUs.
        private readonly bool _oneType = OneType(node.Gpus);

        private static bool OneType(IReadOnlyList<GpuSlot> gpus)
        {
            for (var i = 1; i < gpus.Count; i++)
            {
                if (!string.Equals(gpus[i].Type, gpus[0].Type, StringComparison.Ordinal)) return false;
            }
            return true;
        }

        /// <summary>
        /// Free GPUs of <paramref name="type"/>, a type this node has (it is in that type's open list): without
        /// comparing type names when all its GPUs are of one type (a deploy's scan asks this of every open node
        /// for every cluster).
        /// </summary>
        public int FreeOfItsType(string type) => _oneType ? FreeTotal : FreeCount(type);

        /// <summary>Free GPUs of <paramref name="type"/>.</summary>
        public int FreeCount(string type)
        {
            var gpus = Node.Gpus;
            var free = 0;
            for (var i = 0; i < gpus.Count; i++)
            {
                if ((_taken is null || !_taken[i]) && string.Equals(gpus[i].Type, type, StringComparison.Ordinal)) free++;
            }
            return free;
        }

        public void Take(IReadOnlyList<int> indexes)
        {
            var gpus = Node.Gpus;
            foreach (var index in indexes)
            {
                for (var i = 0; i < gpus.Count; i++)
                {
                    if (gpus[i].Index != index) continue;
                    _taken ??= new bool[gpus.Count];
                    if (!_taken[i])
                    {
                        _taken[i] = true;
                        _used++;
                    }
                }
            }
        }

        /// <summary>The lowest-numbered free GPUs of <paramref name="type"/>.</summary>
        public int[] Allocate(string type, int count)
        {
            var gpus = Node.Gpus;
            var candidates = new List<(int Index, int Slot)>();
            for (var i = 0; i < gpus.Count; i++)
            {
                if (string.Equals(gpus[i].Type, type, StringComparison.Ordinal) && (_taken is null || !_taken[i])) candidates.Add((gpus[i].Index, i));
            }
            candidates.Sort();
            var taken = new int[Math.Min(count, candidates.Count)];
            _taken ??= new bool[gpus.Count];
            for (var k = 0; k < taken.Length; k++)
            {
                taken[k] = candidates[k].Index;
                _taken[candidates[k].Slot] = true;
                _used++;
            }
            return taken;
        }

        public Rank Rank(int clusterReplicas, string image, IReadOnlySet<string>? avoid, IReadOnlySet<string>? warm)
        {
            var cached = (Node.CachedImages?.Contains(image) == true ? 2.0 : 0.0) + (warm?.Contains(Node.Id) == true ? 1.5 : 0.0);
            var total = Node.Gpus.Count;
            var freeShare = total == 0 ? 0 : (double)(total - _used) / total;
            return new Rank(avoid?.Contains(Node.Id) == true, Node.Flapping, clusterReplicas, cached + Math.Clamp(Node.Reliability, 0, 1) + 0.5 * freeShare, Node.Id);
        }
    }
}
