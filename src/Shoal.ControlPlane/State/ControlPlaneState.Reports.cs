using Shoal.Contracts;
using Shoal.Core.Model;
using Shoal.Core.Reconciliation;

namespace Shoal.ControlPlane.State;

/// <summary>What agents' reports say, before it goes into the model, status and events.</summary>
public sealed partial class ControlPlaneState
{
    // Shorter values are not masked: they would mask ordinary words of a reason.
    private const int MinMaskedLength = 4;

    /// <summary>
    /// A replica's reason with its cluster's secret env values and registry password masked: an exit
    /// reason carries the replica's last output, which may echo them. Caller holds the lock.
    /// </summary>
    private string? RedactLocked(ReplicaRecord replica, string? reason)
    {
        if (reason is null || !_clustersById.TryGetValue(replica.ClusterId, out var cluster)) return reason;
        var spec = Generations.SpecFor(cluster, replica.Generation);
        if (!spec.HasSecrets) return reason;
        foreach (var value in spec.SecretEnv.Values)
        {
            if (value.Length >= MinMaskedLength) reason = reason.Replace(value, SecretValue.Mask, StringComparison.Ordinal);
        }
        if (spec.RegistryAuth?.Password is { Length: >= MinMaskedLength } password) reason = reason.Replace(password, SecretValue.Mask, StringComparison.Ordinal);
        return reason;
    }
}
