using Shoal.Contracts;

namespace Shoal.Agent.Replicas;

/// <summary>What to do to go from the replicas a node runs to the set it was assigned.</summary>
public sealed record ConvergePlan(IReadOnlyList<Assignment> ToStart, IReadOnlyList<string> ToStop, IReadOnlyList<string> Unchanged)
{
    public bool IsEmpty => ToStart.Count == 0 && ToStop.Count == 0;
}

/// <summary>
/// Level-triggered diffing, like a kubelet: start what is assigned but not running, stop what
/// runs but is not assigned, leave the rest alone. A replica is identified by its id only, so an
/// identical set sent again changes nothing.
/// </summary>
public static class Converger
{
    public static ConvergePlan Plan(IEnumerable<string> running, IEnumerable<Assignment> desired)
    {
        var runningSet = new HashSet<string>(running, StringComparer.Ordinal);
        var desiredIds = new HashSet<string>(StringComparer.Ordinal);
        var toStart = new List<Assignment>();
        var unchanged = new List<string>();
        foreach (var assignment in desired)
        {
            if (!desiredIds.Add(assignment.ReplicaId))
            {
                continue; // a duplicate id: the first one wins
            }
            if (runningSet.Contains(assignment.ReplicaId))
            {
                unchanged.Add(assignment.ReplicaId);
            }
            else
            {
                toStart.Add(assignment);
            }
        }
        var toStop = runningSet.Where(id => !desiredIds.Contains(id)).Order(StringComparer.Ordinal).ToList();
        return new ConvergePlan(toStart, toStop, unchanged);
    }
}
