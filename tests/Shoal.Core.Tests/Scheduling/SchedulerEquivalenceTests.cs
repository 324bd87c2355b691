using Shoal.Core.Scheduling;

namespace Shoal.Core.Tests.Scheduling;

public sealed class SchedulerEquivalenceTests
{
    private static readonly string[] s_types = ["rtx-4090", "a100"];
    private static readonly string[] s_images = ["img-a", "img-b", "img-c"];
    private static readonly string[] s_labels = ["trusted", "eu"];

    [Fact]
    public void Agrees_with_the_reference_scheduler_on_random_fleets()
    {
        for (var seed = 0; seed < 2000; seed++)
        {
            var random = new Random(seed);
            var (nodes, existing, requests) = RandomWorld(random);
            var expected = ReferenceScheduler.Schedule(nodes, existing, requests);
            var actual = Scheduler.Schedule(nodes, existing, requests);
            Assert.Equal(expected.Count, actual.Count);
            for (var i = 0; i < expected.Count; i++)
            {
                var e = expected[i];
                var a = actual[i];
                Assert.True(e.ReplicaId == a.ReplicaId && e.NodeId == a.NodeId && e.Reason == a.Reason && e.GpuIndexes.SequenceEqual(a.GpuIndexes),
                    $"seed {seed}, request {i}: expected {e.NodeId} [{string.Join(',', e.GpuIndexes)}] {e.Reason}, got {a.NodeId} [{string.Join(',', a.GpuIndexes)}] {a.Reason}");
            }
        }
    }

    private static (List<NodeCapacity> Nodes, List<PlacedReplica> Existing, List<PlacementRequest> Requests) RandomWorld(Random random)
    {
        var nodes = new List<NodeCapacity>();
        var free = new List<(string Id, List<(int Index, string Type)> Gpus)>();
        var nodeCount = random.Next(0, 30);
        foreach (var n in Enumerable.Range(0, nodeCount).OrderBy(_ => random.Next()))
        {
            var gpus = Enumerable.Range(0, random.Next(0, 5)).Select(i => new GpuSlot(i, s_types[random.Next(s_types.Length)])).ToArray();
            var id = $"n{n:D3}";
            nodes.Add(new NodeCapacity(
                id,
                random.NextDouble() < 0.85,
                gpus,
                // Few distinct scores, so ties (broken by node id) are common.
                Math.Round(random.Next(0, 4) / 3.0, 3),
                random.NextDouble() < 0.4 ? s_images.Where(_ => random.NextDouble() < 0.5).ToHashSet(StringComparer.Ordinal) : null,
                random.NextDouble() < 0.15,
                random.NextDouble() < 0.5 ? s_labels.Where(_ => random.NextDouble() < 0.5).ToHashSet(StringComparer.Ordinal) : null));
            free.Add((id, gpus.Select(g => (g.Index, g.Type)).ToList()));
        }

        var clusters = Enumerable.Range(0, random.Next(1, 6)).Select(c => $"c{c}").ToArray();
        var existing = new List<PlacedReplica>();
        foreach (var (id, gpus) in free)
        {
            while (gpus.Count > 0 && random.NextDouble() < 0.35)
            {
                var take = gpus[random.Next(gpus.Count)];
                gpus.Remove(take);
                existing.Add(new PlacedReplica(clusters[random.Next(clusters.Length)], id, [take.Index]));
            }
        }

        var requests = new List<PlacementRequest>();
        var replica = 0;
        foreach (var cluster in clusters)
        {
            var gpu = s_types[random.Next(s_types.Length)];
            var gpuCount = random.Next(1, 3);
            var image = s_images[random.Next(s_images.Length)];
            var avoid = random.NextDouble() < 0.3 && nodes.Count > 0
                ? nodes.Where(_ => random.NextDouble() < 0.3).Select(n => n.Id).ToHashSet(StringComparer.Ordinal)
                : null;
            string[]? labels = random.NextDouble() < 0.3 ? [s_labels[random.Next(s_labels.Length)]] : null;
            var count = random.Next(0, 12);
            for (var i = 0; i < count; i++) requests.Add(new PlacementRequest($"r{replica++:D3}", cluster, gpu, gpuCount, image, avoid, labels));
        }
        return (nodes, existing, requests);
    }
}
