using System.Globalization;
using Shoal.Core.Model;

namespace Shoal.Core.Reconciliation;

/// <summary>
/// Attempts at a spec that has not worked yet. A replica of the current generation replaced because
/// it failed (a crash loop, an image that cannot be pulled), before any replica of that generation
/// was ever ready, is a failed attempt: the next replacement waits a back-off (10 s, doubling, at
/// most 5 min), and after <see cref="ReconcilerOptions.MaxFailedAttempts"/> (5) the cluster gives up:
/// it is failed, with the reason, runs nothing and pulls nothing until it is updated.
/// </summary>
public static class Attempts
{
    /// <summary>The cluster after one more failed attempt, and what the replacement's event adds.</summary>
    public sealed record Outcome(ClusterRecord Cluster, string Note);

    public static Outcome Failed(ReconcileInput input, ClusterRecord cluster, Replacement why)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(why);
        var options = input.Options;
        var now = input.Now;
        var attempts = cluster.Rollout.FailedAttempts + 1;
        if (attempts >= options.MaxFailedAttempts)
        {
            var failure = string.Create(CultureInfo.InvariantCulture, $"{attempts} attempts failed before any replica was ready; last: {why.Message}");
            return new Outcome(
                cluster with { Rollout = cluster.Rollout with { FailedAttempts = attempts, RetryAt = null, Failure = failure, FailedAt = now } },
                string.Create(CultureInfo.InvariantCulture, $"; attempt {attempts} of {options.MaxFailedAttempts}: the cluster gives up"));
        }
        var wait = Backoff(options, attempts);
        return new Outcome(
            cluster with { Rollout = cluster.Rollout with { FailedAttempts = attempts, RetryAt = now + wait } },
            string.Create(CultureInfo.InvariantCulture, $"; attempt {attempts} of {options.MaxFailedAttempts} failed, next in {Generations.Seconds(wait)} s"));
    }

    /// <summary>The wait after the <paramref name="attempts"/>-th failed attempt: the back-off, doubling, capped.</summary>
    public static TimeSpan Backoff(ReconcilerOptions options, int attempts)
    {
        ArgumentNullException.ThrowIfNull(options);
        var factor = Math.Pow(2, Math.Clamp(attempts - 1, 0, 30));
        return TimeSpan.FromTicks((long)Math.Min(options.AttemptBackoff.Ticks * factor, options.AttemptBackoffMax.Ticks));
    }

    /// <summary>The cluster with its count of failed attempts cleared once a replica of its current generation was ready.</summary>
    public static ClusterRecord Worked(ClusterRecord cluster, IReadOnlyList<ReplicaRecord> replicas)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(replicas);
        if (cluster.Rollout.FailedAttempts == 0 && cluster.Rollout.RetryAt is null) return cluster;
        if (!replicas.Any(r => r.ReadyAt is not null && Generations.IsCurrent(cluster, r))) return cluster;
        return cluster with { Rollout = cluster.Rollout with { FailedAttempts = 0, RetryAt = null } };
    }
}
