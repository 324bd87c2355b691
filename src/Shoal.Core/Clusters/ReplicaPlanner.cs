using Shoal.Contracts;

namespace Shoal.Core.Clusters;

/// <summary>A replica as the planner needs to see it.</summary>
public readonly record struct ReplicaView(string Id, string? NodeId, ReplicaState State, DateTimeOffset CreatedAt);

/// <summary>Decides which replicas go when a cluster has more than it should.</summary>
public static class ReplicaPlanner
{
    /// <summary>
    /// Picks <paramref name="count"/> replicas to remove: those doing the least good first
    /// (pending, failed, unhealthy, still starting, then ready), and among equals those on
    /// nodes crowded with this cluster's replicas, then the newest.
    /// </summary>
    public static IReadOnlyList<string> ChooseForRemoval(IReadOnlyList<ReplicaView> replicas, int count)
    {
        if (count <= 0) return [];
        var perNode = replicas.Where(r => r.NodeId is not null)
            .GroupBy(r => r.NodeId!, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        return replicas
            .OrderBy(r => Usefulness(r.State))
            .ThenByDescending(r => r.NodeId is null ? 0 : perNode[r.NodeId])
            .ThenByDescending(r => r.CreatedAt)
            .ThenByDescending(r => r.Id, StringComparer.Ordinal)
            .Take(count)
            .Select(r => r.Id)
            .ToArray();
    }

    private static int Usefulness(ReplicaState state) => state switch
    {
        ReplicaState.Pending => 0,
        ReplicaState.Failed or ReplicaState.Stopped => 1,
        ReplicaState.Unhealthy => 2,
        ReplicaState.Assigned or ReplicaState.Pulling or ReplicaState.Starting => 3,
        ReplicaState.Draining => 4,
        _ => 5,
    };
}
