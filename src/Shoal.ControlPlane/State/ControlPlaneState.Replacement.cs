namespace Shoal.ControlPlane.State;

/// <summary>
/// What the reconciler's replacement rules (<see cref="Shoal.Core.Reconciliation.Replacements"/>) read
/// besides the model: restarts agents reported, and moves off flapping nodes under way.
/// </summary>
public sealed partial class ControlPlaneState
{
    // Replicas being moved off a flapping node (in memory; a restarted server decides afresh).
    private readonly HashSet<string> _leavingFlappingNodes = new(StringComparer.Ordinal);

    // Replica id → when its agent reported each restart (in memory: after a server restart the count starts again).
    private readonly Dictionary<string, List<DateTimeOffset>> _restartTimes = new(StringComparer.Ordinal);
}
