using Shoal.Core.Scheduling;

namespace Shoal.Core.Tests.Scheduling;

// The scheduler as it was before its per-cluster pass kept only the best k candidates (a heap of
// every node per cluster, a set per node): the oracle the faster one must agree with exactly.
/// <summary>
/// Filter-then-score placement. Filters: node schedulable, has the labels asked for, GPU type matches, enough free GPUs.
/// Nodes the request avoids come last, then flapping nodes. Replicas of one cluster go to distinct
/// nodes when possible (fewest replicas of the cluster first), otherwise onto a node's further free GPUs. Among equals: image cached, reliability,
/// share of GPUs free, then node id, so the result is deterministic.
/// Pure: no I/O, no clock; O((N + R) log N) per cluster.
/// </summary>
internal static class ReferenceScheduler
{
    public static IReadOnlyList<Placement> Schedule(
        IReadOnlyList<NodeCapacity> nodes,
        IEnumerable<PlacedReplica> existing,
        IReadOnlyList<PlacementRequest> requests)
    {
        if (requests.Count == 0) return [];

        var work = nodes.OrderBy(n => n.Id, StringComparer.Ordinal).Select(n => new NodeWork(n)).ToArray();
        var byId = new Dictionary<string, int>(work.Length, StringComparer.Ordinal);
        for (var i = 0; i < work.Length; i++) byId[work[i].Node.Id] = i;

        var clusterCounts = new Dictionary<string, Dictionary<int, int>>(StringComparer.Ordinal);
        foreach (var placed in existing)
        {
            if (!byId.TryGetValue(placed.NodeId, out var idx)) continue;
            work[idx].Take(placed.GpuIndexes);
            Increment(clusterCounts, placed.ClusterId, idx);
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
            clusterCounts.TryGetValue(clusterId, out var counts);
            var avoid = requests[groups[key][0]].AvoidNodes;
            var labels = requests[groups[key][0]].RequiredLabels;
            var heap = new PriorityQueue<int, Rank>(RankComparer.Instance);
            var anyOfType = false;
            var anyUnlabelled = false;
            for (var i = 0; i < work.Length; i++)
            {
                var w = work[i];
                if (!w.Node.Schedulable || !w.HasType(gpu)) continue;
                if (!w.Node.HasLabels(labels))
                {
                    anyUnlabelled = true;
                    continue;
                }
                anyOfType = true;
                if (w.FreeCount(gpu) >= gpuCount)
                {
                    heap.Enqueue(i, w.Rank(i, counts is null ? 0 : counts.GetValueOrDefault(i), gpu, image, avoid));
                }
            }

            var reason = !anyOfType
                ? anyUnlabelled
                    ? $"no ready node with {gpu} GPUs and label {string.Join(", ", labels!)} (nodes get labels from their provisioning token)"
                    : $"no ready node with {gpu} GPUs"
                : gpuCount == 1 ? $"no node with a free {gpu}" : $"no node with {gpuCount} free {gpu} GPUs";

            foreach (var ri in groups[key])
            {
                var request = requests[ri];
                if (!heap.TryDequeue(out var nodeIdx, out _))
                {
                    results[ri] = new Placement(request.ReplicaId, null, [], reason);
                    continue;
                }
                var w = work[nodeIdx];
                var gpus = w.Allocate(gpu, gpuCount);
                counts ??= clusterCounts[clusterId] = [];
                var count = counts.GetValueOrDefault(nodeIdx) + 1;
                counts[nodeIdx] = count;
                results[ri] = new Placement(request.ReplicaId, w.Node.Id, gpus, null);
                if (w.FreeCount(gpu) >= gpuCount)
                {
                    heap.Enqueue(nodeIdx, w.Rank(nodeIdx, count, gpu, image, avoid));
                }
            }
        }
        return results;
    }

    private static void Increment(Dictionary<string, Dictionary<int, int>> counts, string clusterId, int nodeIdx)
    {
        if (!counts.TryGetValue(clusterId, out var perNode)) counts[clusterId] = perNode = [];
        perNode[nodeIdx] = perNode.GetValueOrDefault(nodeIdx) + 1;
    }

    private readonly record struct Rank(bool Avoided, bool Flapping, int ClusterReplicas, double Score, int Ordinal);

    private sealed class RankComparer : IComparer<Rank>
    {
        public static readonly RankComparer Instance = new();

        public int Compare(Rank x, Rank y)
        {
            var c = x.Avoided.CompareTo(y.Avoided);
            if (c != 0) return c;
            c = x.Flapping.CompareTo(y.Flapping);
            if (c != 0) return c;
            c = x.ClusterReplicas.CompareTo(y.ClusterReplicas);
            if (c != 0) return c;
            c = y.Score.CompareTo(x.Score);
            return c != 0 ? c : x.Ordinal.CompareTo(y.Ordinal);
        }
    }

    private sealed class NodeWork(NodeCapacity node)
    {
        private readonly Dictionary<string, SortedSet<int>> _free = BuildFree(node);
        private readonly int _total = node.Gpus.Count;
        private int _used;

        public NodeCapacity Node { get; } = node;

        private static Dictionary<string, SortedSet<int>> BuildFree(NodeCapacity node)
        {
            var free = new Dictionary<string, SortedSet<int>>(StringComparer.Ordinal);
            foreach (var g in node.Gpus)
            {
                if (!free.TryGetValue(g.Type, out var set)) free[g.Type] = set = [];
                set.Add(g.Index);
            }
            return free;
        }

        public bool HasType(string type) => _free.ContainsKey(type);

        public int FreeCount(string type) => _free.TryGetValue(type, out var s) ? s.Count : 0;

        public void Take(IReadOnlyList<int> indexes)
        {
            foreach (var set in _free.Values)
            {
                foreach (var i in indexes)
                {
                    if (set.Remove(i)) _used++;
                }
            }
        }

        public int[] Allocate(string type, int count)
        {
            var set = _free[type];
            var taken = set.Take(count).ToArray();
            foreach (var i in taken) set.Remove(i);
            _used += taken.Length;
            return taken;
        }

        public Rank Rank(int ordinal, int clusterReplicas, string type, string image, IReadOnlySet<string>? avoid)
        {
            var cached = Node.CachedImages?.Contains(image) == true ? 2.0 : 0.0;
            var freeShare = _total == 0 ? 0 : (double)(_total - _used) / _total;
            return new Rank(avoid?.Contains(Node.Id) == true, Node.Flapping, clusterReplicas, cached + Math.Clamp(Node.Reliability, 0, 1) + 0.5 * freeShare, ordinal);
        }
    }
}
