using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Model;

namespace Shoal.Core.Reconciliation;

/// <summary>While an update progresses: a new replica that fails makes the cluster go back to the last complete generation.</summary>
internal static class Rollouts
{
    public static ClusterRecord Check(ReconcileInput input, ReconcilePlan plan, ClusterRecord cluster, List<ReplicaRecord> replicas)
    {
        if (cluster.Rollout.State != RolloutStates.Progressing) return cluster;
        var failure = replicas
            .Where(r => r.DrainingSince is null && r.Generation == cluster.Generation)
            .OrderBy(r => r.CreatedAt)
            .Select(r => Failure(input, cluster, r))
            .FirstOrDefault(f => f is not null);
        return failure is null ? cluster : RollBack(input, plan, cluster, failure);
    }

    /// <summary>Why a new replica of an update shows the update is broken, or null.</summary>
    private static string? Failure(ReconcileInput input, ClusterRecord cluster, ReplicaRecord r)
    {
        var on = r.NodeId is { } n && input.Nodes.TryGetValue(n, out var node) ? $" on {node.Name}" : "";
        var last = r.Reason ?? (r.ExitCode is { } code ? $"exited with code {code.ToString(CultureInfo.InvariantCulture)}" : null);
        if (r.Restarts >= input.Options.RolloutFailureRestarts)
        {
            // The agent clears the reason while it tries again: the last failure says why.
            var why = r.LastFailure ?? last;
            return string.Create(CultureInfo.InvariantCulture, $"new replica {r.Id}{on} restarted {r.Restarts} times") + (why is null ? "" : $" (last: {why})");
        }
        if (r.State == ReplicaState.Failed && r.PulledAt is null)
        {
            // Failed before its image was there: the pull failed, or no runtime of the node may run it.
            return $"new replica {r.Id}{on} could not get its image: {last ?? "failed"}";
        }
        if (r.State == ReplicaState.Failed && last is not null && !last.Contains("; restarting in", StringComparison.Ordinal) && !last.Contains("; retrying in", StringComparison.Ordinal))
        {
            // The agent gave up on it (a permanent error): no restart is coming.
            return $"new replica {r.Id}{on} failed: {last}";
        }
        var deadline = TimeSpan.FromSeconds(cluster.Spec.ProgressDeadlineSeconds);
        if (r.ReadyAt is null && input.Now - r.CreatedAt >= deadline)
        {
            return $"new replica {r.Id}{on} not ready {Generations.Seconds(deadline)} s after it was created ({r.State.ToWire()}" + (r.Reason is null ? ")" : $": {r.Reason})");
        }
        return null;
    }

    private static ClusterRecord RollBack(ReconcileInput input, ReconcilePlan plan, ClusterRecord cluster, string failure)
    {
        var now = plan.Now;
        var rollout = cluster.Rollout;
        if (!rollout.Generations.TryGetValue(rollout.StableGeneration, out var stable) || ClusterSpec.SameRuntime(stable.Spec, cluster.Spec))
        {
            // Nothing different to go back to (the update restored the last complete spec): say why and stop progressing.
            plan.Events.Add(Reconciler.Event(input, cluster.Id, now, ClusterEventTypes.RolledBack, $"update failed, nothing earlier to roll back to: {failure}"));
            return cluster with { Rollout = rollout with { State = RolloutStates.RolledBack, Reason = failure, FinishedAt = now } };
        }
        var generations = new Dictionary<long, GenerationSpec>(rollout.Generations)
        {
            [cluster.Generation] = new GenerationSpec(cluster.Spec, cluster.ImageDigest),
        };
        var generation = cluster.Generation + 1;
        // What replicas run comes back; the count and settings stay as they are now.
        var spec = stable.Spec with
        {
            Replicas = cluster.Spec.Replicas,
            Routing = cluster.Spec.Routing,
            QueueTimeoutSeconds = cluster.Spec.QueueTimeoutSeconds,
            FirstByteTimeoutSeconds = cluster.Spec.FirstByteTimeoutSeconds,
            DrainTimeoutSeconds = cluster.Spec.DrainTimeoutSeconds,
            ProgressDeadlineSeconds = cluster.Spec.ProgressDeadlineSeconds,
            MaxHeld = cluster.Spec.MaxHeld,
            Autoscale = cluster.Spec.Autoscale,
            Models = cluster.Spec.Models,
            Price = cluster.Spec.Price,
        };
        plan.Events.Add(Reconciler.Event(input, cluster.Id, now, ClusterEventTypes.RolledBack,
            $"rolled back to generation {rollout.StableGeneration} (as generation {generation}): {failure}"));
        plan.RolledBack.Add((cluster.Name, rollout.StableGeneration, failure));
        return cluster with
        {
            Spec = spec,
            Generation = generation,
            ImageDigest = stable.ImageDigest,
            UpdatedAt = now,
            Rollout = rollout with
            {
                State = RolloutStates.RolledBack,
                Reason = failure,
                FinishedAt = now,
                StableGeneration = generation,
                Generations = generations,
            },
        };
    }
}
