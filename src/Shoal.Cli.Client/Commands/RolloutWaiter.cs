using Shoal.Contracts;

namespace Shoal.Cli.Commands;

/// <summary>How a wait for an update ended.</summary>
public enum RolloutResult
{
    /// <summary>Every replica runs the new generation.</summary>
    Complete,
    /// <summary>The update failed and the cluster went back to its previous generation.</summary>
    RolledBack,
    TimedOut,
}

/// <summary>How a wait for an update ended, with the last status seen (null if none arrived).</summary>
public sealed record RolloutOutcome(RolloutResult Result, ClusterStatusDto? Last);

/// <summary>Polls a cluster's status until the update to <c>generation</c> completes or is rolled back, or the time is up.</summary>
public static class RolloutWaiter
{
    /// <summary>Where the rollout of <paramref name="generation"/> stands in <paramref name="status"/>, or null while it goes on.</summary>
    public static RolloutResult? Outcome(ClusterStatusDto status, long generation)
    {
        ArgumentNullException.ThrowIfNull(status);
        if (status.Cluster.Rollout is not { } rollout || status.Cluster.Generation < generation) return null;
        return rollout.State switch
        {
            RolloutStates.Complete => RolloutResult.Complete,
            // A rollback makes a newer generation (the old spec again): it answers this update.
            RolloutStates.RolledBack => RolloutResult.RolledBack,
            _ => null,
        };
    }

    public static async Task<RolloutOutcome> WaitAsync(
        Func<CancellationToken, Task<ClusterStatusDto>> poll,
        long generation,
        TimeSpan timeout,
        TimeSpan interval,
        TimeProvider time,
        Action<ClusterStatusDto>? onUpdate,
        CancellationToken ct)
    {
        // A server restart mid-rollout is ridden out: the rollout goes on from the store.
        var (result, last) = await DeploymentWaiter.PollAsync(poll, s => Outcome(s, generation), timeout, interval, time, onUpdate, ct);
        return new RolloutOutcome(result ?? RolloutResult.TimedOut, last);
    }
}
