using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Model;
using Shoal.Core.Security;

namespace Shoal.Core.Reconciliation;

/// <summary>
/// One cluster's share of a reconcile pass: finished drains, a failing update rolled back,
/// replacements surge-first, the replica count met (surplus drained), a finished update completed.
/// </summary>
internal static class ClusterReconciler
{
    public static void Reconcile(ReconcileInput input, ReconcilePlan plan, ClusterRecord cluster, List<ReplicaRecord> replicas)
    {
        if (!Settled(input, cluster, replicas)) ReconcileFully(input, plan, cluster, replicas);
    }

    /// <summary>The whole of a cluster's share of the pass, settled or not (tests check <see cref="Settled"/> against it).</summary>
    internal static void ReconcileFully(ReconcileInput input, ReconcilePlan plan, ClusterRecord cluster, List<ReplicaRecord> replicas)
    {
        var now = plan.Now;
        var original = cluster;

        // Drains that are over: the replica goes (its agent stops it with the next assignment set).
        foreach (var r in replicas.Where(r => r.DrainingSince is not null).ToList())
        {
            if (DrainOutcome(input, cluster, r) is not { } outcome) continue;
            plan.Remove(r);
            replicas.Remove(r);
            if (r.NodeId is { } warmNode) cluster = Replacements.Warm(cluster, warmNode, now, input.Options.WarmFor);
            plan.Events.Add(Reconciler.Event(input, cluster.Id, now, ClusterEventTypes.Drained, $"drained {outcome}: stopped", r.Id, r.NodeId));
        }

        cluster = Rollouts.Check(input, plan, cluster, replicas);
        if (cluster.Rollout.Failure is not null)
        {
            GiveUp(input, plan, cluster, replicas);
            cluster = PruneGenerations(cluster, replicas, now);
            if (!ReferenceEquals(cluster, original)) plan.Clusters[cluster.Id] = cluster;
            return;
        }
        cluster = Attempts.Worked(cluster, replicas);

        var live = replicas.Where(r => r.DrainingSince is null).ToList();
        var reasons = new Dictionary<string, Replacement?>(StringComparer.Ordinal);
        foreach (var r in live)
        {
            var reason = Replacements.ReasonFor(input, cluster, r);
            reasons[r.Id] = reason;
            if (reason is { StartsFlappingMove: true }) plan.StartedLeavingFlapping.Add(r.Id);
            else if (input.LeavingFlappingNodes.Contains(r.Id) && (r.NodeId is null || !input.LinkOf(r.NodeId).Reliability.Flapping)) plan.StoppedLeavingFlapping.Add(r.Id);
        }

        // To be replaced but not serving: nothing to drain and nothing lost, so it goes at once.
        foreach (var r in live.Where(r => reasons[r.Id] is not null && !input.IsRoutable(r)).ToList())
        {
            var why = reasons[r.Id]!;
            plan.Remove(r);
            live.Remove(r);
            cluster = Replacements.Avoid(cluster, why, now, input.Options.CrashLoopAvoidFor);
            var attempt = why.Failed && r.ReadyAt is null ? Attempts.Failed(input, cluster, why) : null;
            plan.Events.Add(Reconciler.Event(input, cluster.Id, now, ClusterEventTypes.Replaced,
                $"replaced: {why.Message}; removed at once (not serving){attempt?.Note}", r.Id, r.NodeId));
            if (attempt is not null) cluster = attempt.Cluster;
            if (cluster.Rollout.Failure is { } failure)
            {
                plan.Events.Add(Reconciler.Event(input, cluster.Id, now, ClusterEventTypes.ClusterFailed, $"failed: {failure}"));
                GiveUp(input, plan, cluster, replicas);
                cluster = PruneGenerations(cluster, replicas, now);
                plan.Clusters[cluster.Id] = cluster;
                return;
            }
        }

        var desired = cluster.Spec.Replicas;
        var outdated = live.Where(r => reasons[r.Id] is not null).OrderBy(r => r.CreatedAt).ThenBy(r => r.Id, StringComparer.Ordinal).ToList();
        var good = live.Where(r => reasons[r.Id] is null).ToList();
        var ready = live.Count(input.IsRoutable);

        // Serving replicas to be replaced drain one by one, each only while the rest keep the desired ready count.
        var draining = replicas.Count(r => r.DrainingSince is not null);
        while (outdated.Count > 0 && ready > desired)
        {
            draining++;
            var r = outdated[0];
            outdated.RemoveAt(0);
            live.Remove(r);
            ready--;
            cluster = Replacements.Avoid(cluster, reasons[r.Id]!, now, input.Options.CrashLoopAvoidFor);
            StartDrain(input, plan, cluster, r, reasons[r.Id]!.Message);
        }

        // More than wanted (scale down; one extra is allowed while replacing): the least useful go,
        // at once when not serving, drained when serving.
        var target = desired + (outdated.Count > 0 ? 1 : 0);
        if (live.Count > target)
        {
            var views = good.Select(r => new Clusters.ReplicaView(r.Id, r.NodeId, r.State, r.CreatedAt)).ToList();
            foreach (var id in ReplicaPlanner.ChooseForRemoval(views, live.Count - target))
            {
                var r = plan.Replicas[id];
                live.Remove(r);
                good.Remove(r);
                if (input.IsRoutable(r))
                {
                    draining++;
                    StartDrain(input, plan, cluster, r, "the cluster scaled down");
                }
                else
                {
                    plan.Remove(r);
                    plan.Events.Add(Reconciler.Event(input, cluster.Id, now, ClusterEventTypes.Removed, "removed: the cluster scaled down", r.Id, r.NodeId));
                }
            }
        }

        // Missing replicas of the current generation: up to the desired count; while replacing, one
        // extra, draining ones included (a draining replica still holds its GPU).
        var room = outdated.Count > 0 ? target - live.Count - draining : desired - live.Count;
        // After a failed attempt the next one waits its back-off.
        if (cluster.Rollout.RetryAt is { } retryAt && retryAt > now) room = 0;
        var create = Math.Min(desired - good.Count, room);
        for (var i = 0; i < create; i++)
        {
            plan.Add(new ReplicaRecord
            {
                Id = $"{cluster.Name}-{Secrets.RandomId(6)}",
                ClusterId = cluster.Id,
                Generation = cluster.Generation,
                State = ReplicaState.Pending,
                CreatedAt = now,
                UpdatedAt = now,
            });
        }

        if (cluster.Rollout.State == RolloutStates.Progressing && outdated.Count == 0 && create <= 0
            && good.Count == desired && good.All(input.IsRoutable) && draining == 0)
        {
            var took = cluster.Rollout.StartedAt is { } started ? $" in {Generations.Seconds(now - started)} s" : "";
            cluster = cluster with
            {
                Rollout = cluster.Rollout with { State = RolloutStates.Complete, FinishedAt = now, StableGeneration = cluster.Generation },
            };
            plan.Events.Add(Reconciler.Event(input, cluster.Id, now, ClusterEventTypes.UpdateCompleted,
                $"update to generation {cluster.Generation} complete{took}: {good.Count} replicas ready"));
        }

        cluster = PruneGenerations(cluster, replicas, now);
        if (!ReferenceEquals(cluster, original)) plan.Clusters[cluster.Id] = cluster;
    }

    /// <summary>
    /// A cluster the rest of <see cref="Reconcile"/> would leave as it is, told without allocating: no
    /// update in progress, nothing failed or backing off, no earlier generation kept, no avoided node
    /// to expire, as many replicas as wanted, each of the current generation, not draining, not
    /// restarting, not on a draining or flapping node. Most clusters are like this in most passes (a
    /// deploy burst's pass sees hundreds settled and a few new), and the full path allocates per replica.
    /// When in doubt it says no, and the full path decides.
    /// </summary>
    internal static bool Settled(ReconcileInput input, ClusterRecord cluster, List<ReplicaRecord> replicas)
    {
        var rollout = cluster.Rollout;
        if (rollout.State == RolloutStates.Progressing || rollout.Failure is not null || rollout.FailedAttempts != 0 || rollout.RetryAt is not null
            || rollout.Generations.Count != 0 || replicas.Count != cluster.Spec.Replicas)
        {
            return false;
        }
        foreach (var until in rollout.AvoidNodes.Values)
        {
            if (until <= input.Now) return false;
        }
        foreach (var r in replicas)
        {
            if (r.DrainingSince is not null || r.Generation != cluster.Generation || input.RestartTimes.ContainsKey(r.Id) || input.LeavingFlappingNodes.Contains(r.Id)) return false;
            if (r.NodeId is not { } nodeId) continue;
            if (input.Nodes.TryGetValue(nodeId, out var node) && node.Draining) return false;
            if (input.LinkOf(nodeId).Reliability.Flapping) return false;
        }
        return true;
    }

    // A failed cluster runs nothing: its replicas (none serves) go at once, and free their GPUs.
    private static void GiveUp(ReconcileInput input, ReconcilePlan plan, ClusterRecord cluster, List<ReplicaRecord> replicas)
    {
        foreach (var r in replicas.Where(r => r.DrainingSince is null && plan.Replicas.ContainsKey(r.Id)).ToList())
        {
            plan.Remove(r);
            replicas.Remove(r);
            plan.Events.Add(Reconciler.Event(input, cluster.Id, plan.Now, ClusterEventTypes.Removed, "removed: the cluster failed", r.Id, r.NodeId));
        }
    }

    // Earlier generations' specs are kept only while a replica runs them, or to roll back to.
    // (Replicas removed in this pass still count: their generation goes with the next pass.)
    private static ClusterRecord PruneGenerations(ClusterRecord cluster, List<ReplicaRecord> replicas, DateTimeOffset now)
    {
        var rollout = cluster.Rollout;
        var expired = rollout.AvoidNodes.Any(kv => kv.Value <= now);
        if (rollout.Generations.Count == 0 && !expired) return cluster;
        var used = replicas.Select(r => r.Generation).ToHashSet();
        var keep = rollout.Generations.Where(kv => kv.Key != cluster.Generation && (used.Contains(kv.Key) || kv.Key == rollout.StableGeneration)).ToList();
        if (keep.Count == rollout.Generations.Count && !expired) return cluster;
        return cluster with
        {
            Rollout = rollout with
            {
                Generations = keep.ToDictionary(kv => kv.Key, kv => kv.Value),
                AvoidNodes = rollout.AvoidNodes.Where(kv => kv.Value > now).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal),
            },
        };
    }

    private static void StartDrain(ReconcileInput input, ReconcilePlan plan, ClusterRecord cluster, ReplicaRecord r, string reason)
    {
        var now = plan.Now;
        plan.Replicas[r.Id] = r with { DrainingSince = now, DrainReason = reason, UpdatedAt = now };
        plan.Routes = true;
        plan.Events.Add(Reconciler.Event(input, cluster.Id, now, ClusterEventTypes.Draining,
            $"draining ({reason}): out of routing, stops once its requests in flight are done (at most {cluster.Spec.DrainTimeoutSeconds} s)",
            r.Id, r.NodeId));
    }

    /// <summary>
    /// How a drain ended ("after 2.1 s: no request in flight"), or null while it goes on. Over when
    /// the replica no longer serves; when a load report taken after the edges dropped it shows
    /// nothing running or waiting; or when the drain timeout has passed (replicas without metrics
    /// always wait for it).
    /// </summary>
    private static string? DrainOutcome(ReconcileInput input, ClusterRecord cluster, ReplicaRecord r)
    {
        var now = input.Now;
        var since = r.DrainingSince!.Value;
        var waited = Generations.Seconds(now - since);
        if (!input.Serving(r)) return $"after {waited} s: it was not serving any more";
        var settle = TimeSpan.FromMilliseconds(Generations.SpecFor(cluster, r.Generation).Health.IntervalMs) + input.Options.DrainSettle;
        var load = input.Loads.GetValueOrDefault(r.Id);
        var fresh = input.LoadsAt.TryGetValue(r.Id, out var at) && at >= since + settle;
        if (fresh && load is not null && load.Running + load.Waiting <= 0) return $"after {waited} s: no request in flight";
        var timeout = TimeSpan.FromSeconds(cluster.Spec.DrainTimeoutSeconds);
        if (now - since < timeout) return null;
        return load is null
            ? $"after the drain timeout ({Generations.Seconds(timeout)} s): the replica reports no load metrics"
            : string.Create(CultureInfo.InvariantCulture, $"after the drain timeout ({Generations.Seconds(timeout)} s) with {load.Running + load.Waiting:0} requests still in flight");
    }
}
