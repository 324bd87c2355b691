using System.Globalization;
using Shoal.Core.Clusters;
using Shoal.Core.Model;

namespace Shoal.Core.Reconciliation;

/// <summary>Which spec a replica runs: its cluster's current one, or an earlier generation's kept for it.</summary>
public static class Generations
{
    /// <summary>The spec replicas of <paramref name="generation"/> run: the current one, or an earlier one kept for them.</summary>
    public static ClusterSpec SpecFor(ClusterRecord cluster, long generation) =>
        generation != cluster.Generation && cluster.Rollout.Generations.TryGetValue(generation, out var g) ? g.Spec : cluster.Spec;

    /// <summary>The image digest replicas of <paramref name="generation"/> run.</summary>
    public static string? DigestFor(ClusterRecord cluster, long generation) =>
        generation != cluster.Generation && cluster.Rollout.Generations.TryGetValue(generation, out var g) ? g.ImageDigest : cluster.ImageDigest;

    /// <summary>
    /// The replica runs what the cluster wants now: it is of the current generation, or of one
    /// whose spec runs the same (after a rollback the old replicas are current again).
    /// </summary>
    public static bool IsCurrent(ClusterRecord cluster, ReplicaRecord r) =>
        r.Generation == cluster.Generation
        || !cluster.Rollout.Generations.TryGetValue(r.Generation, out var g)
        || ClusterSpec.SameRuntime(g.Spec, cluster.Spec);

    /// <summary>Seconds with one decimal, for messages ("4.0").</summary>
    public static string Seconds(TimeSpan span) => span.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);
}
