using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Security;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.State;

/// <summary>The outcome of <see cref="ControlPlaneState.UpdateClusterAsync(string, UpdateClusterRequest, CancellationToken)"/>: the cluster, or why not.</summary>
public sealed record ClusterUpdateOutcome(ClusterRecord? Cluster, string? Error)
{
    public bool NotFound => Cluster is null && Error is null;
}

/// <summary>
/// Updates and rollouts. A change of what replicas run (image, env, args, port, health) makes a new
/// generation; replicas of older generations keep their own spec (kept in the cluster's
/// <see cref="ClusterRollout.Generations"/>) until they are replaced one at a time: one new replica
/// (max surge 1), and when it is ready one old one drains (max unavailable 0). Draining replicas
/// are out of routing and stop when their agent reports no request in flight, or after the drain
/// timeout. A new replica that crash-loops, cannot start, or is not ready by the progress deadline
/// rolls the cluster back to the last complete generation.
/// </summary>
public sealed partial class ControlPlaneState
{
    /// <summary>
    /// Applies <paramref name="update"/> to a cluster: a new generation and a rolling update when what
    /// replicas run changes, the settings alone otherwise.
    /// </summary>
    public Task<ClusterUpdateOutcome> UpdateClusterAsync(string name, UpdateClusterRequest update, CancellationToken ct) =>
        UpdateClusterAsync(name, update, null, null, ct);

    /// <inheritdoc cref="UpdateClusterAsync(string, UpdateClusterRequest, CancellationToken)"/>
    /// <param name="processImages">The images that run as local processes, whose env and args are held to a stricter rule.</param>
    /// <param name="actor">the API key that asked (<c>id (name)</c>), recorded in the events.</param>
    public async Task<ClusterUpdateOutcome> UpdateClusterAsync(string name, UpdateClusterRequest update, ProcessImagePolicy? processImages, string? actor, CancellationToken ct)
    {
        var now = _time.GetUtcNow();
        ClusterRecord updated;
        bool newGeneration;
        await _gate.WaitAsync(ct);
        try
        {
            if (!_clusterIdsByName.TryGetValue(name, out var id)) return new ClusterUpdateOutcome(null, null);
            var cluster = _clustersById[id];
            var validated = ClusterSpecValidator.ApplyUpdate(cluster.Spec, update, processImages);
            if (!validated.IsValid) return new ClusterUpdateOutcome(null, validated.Message);
            var spec = validated.Value!;
            if (spec == cluster.Spec || (ClusterSpec.SameRuntime(spec, cluster.Spec) && SameSettings(spec, cluster.Spec)))
            {
                return new ClusterUpdateOutcome(cluster, null);
            }

            var changes = new StoreChanges();
            newGeneration = !ClusterSpec.SameRuntime(spec, cluster.Spec);
            if (newGeneration)
            {
                var rollout = cluster.Rollout;
                var generations = new Dictionary<long, GenerationSpec>(rollout.Generations)
                {
                    [cluster.Generation] = new GenerationSpec(cluster.Spec, cluster.ImageDigest),
                };
                var what = DescribeChange(cluster.Spec, spec);
                var generation = cluster.Generation + 1;
                updated = cluster with
                {
                    Spec = spec,
                    Generation = generation,
                    // Same image and credentials: the same bits, so the pin holds; a new image is pinned anew.
                    ImageDigest = spec.Image == cluster.Spec.Image && spec.RegistryAuth == cluster.Spec.RegistryAuth ? cluster.ImageDigest : null,
                    UpdatedAt = now,
                    Rollout = rollout with
                    {
                        State = RolloutStates.Progressing,
                        Reason = what,
                        StartedAt = now,
                        FinishedAt = null,
                        // While an update is still progressing, the one before it never completed: keep the last that did.
                        StableGeneration = rollout.State == RolloutStates.Progressing ? rollout.StableGeneration : cluster.Generation,
                        Generations = generations,
                    },
                };
                changes.AppendEvents.Add(NewEventLocked(id, now, ClusterEventTypes.UpdateStarted,
                    $"update to generation {generation} started ({what}): replicas are replaced one at a time", actor: actor));
            }
            else
            {
                updated = cluster with { Spec = spec, UpdatedAt = now };
            }
            if (spec.Replicas != cluster.Spec.Replicas)
            {
                changes.AppendEvents.Add(NewEventLocked(id, now, ClusterEventTypes.Scaled, $"scaled from {cluster.Spec.Replicas} to {spec.Replicas} replicas", actor: actor));
            }
            changes.UpsertClusters.Add(updated);
            await _store.CommitAsync(changes, ct);
            _clustersById[id] = updated;
        }
        finally
        {
            _gate.Release();
        }
        if (newGeneration) LogClusterUpdated(_logger, name, updated.Generation, updated.Rollout.Reason ?? "");
        else LogClusterScaled(_logger, name, updated.Spec.Replicas);
        ReconcileNeeded?.Invoke();
        RoutesChanged?.Invoke();
        return new ClusterUpdateOutcome(updated, null);
    }

    private static bool SameSettings(ClusterSpec a, ClusterSpec b) =>
        a.Replicas == b.Replicas && a.Routing == b.Routing && a.Public == b.Public && a.QueueTimeoutSeconds == b.QueueTimeoutSeconds
        && a.DrainTimeoutSeconds == b.DrainTimeoutSeconds && a.ProgressDeadlineSeconds == b.ProgressDeadlineSeconds;

    /// <summary>"image shoal/sim → shoal/sim2, env +A -B, args": what an update changes in what replicas run.</summary>
    internal static string DescribeChange(ClusterSpec from, ClusterSpec to)
    {
        var parts = new List<string>();
        if (from.Image != to.Image) parts.Add($"image {from.Image} → {to.Image}");
        // Names only: a value (secret or not) never goes into an event or a log line.
        var fromEnv = from.ReplicaEnv();
        var toEnv = to.ReplicaEnv();
        var set = toEnv.Where(kv => !fromEnv.TryGetValue(kv.Key, out var v) || v != kv.Value || from.SecretEnv.ContainsKey(kv.Key) != to.SecretEnv.ContainsKey(kv.Key)).Select(kv => "+" + kv.Key);
        var unset = fromEnv.Keys.Where(k => !toEnv.ContainsKey(k)).Select(k => "-" + k);
        var env = set.Concat(unset).Order(StringComparer.Ordinal).ToList();
        if (env.Count > 0) parts.Add("env " + string.Join(' ', env));
        if (!from.Args.AsSpan().SequenceEqual(to.Args)) parts.Add("args");
        if (from.Port != to.Port) parts.Add(string.Create(CultureInfo.InvariantCulture, $"port {from.Port} → {to.Port}"));
        if (from.Health != to.Health) parts.Add("health check");
        if (from.Gpu != to.Gpu || from.GpuCount != to.GpuCount) parts.Add("gpu");
        if (from.RegistryAuth != to.RegistryAuth) parts.Add("registry credentials");
        return parts.Count == 0 ? "no change" : string.Join(", ", parts);
    }

    /// <summary>The spec replicas of <paramref name="generation"/> run: the current one, or an earlier one kept for them.</summary>
    private static ClusterSpec SpecFor(ClusterRecord cluster, long generation) =>
        generation != cluster.Generation && cluster.Rollout.Generations.TryGetValue(generation, out var g) ? g.Spec : cluster.Spec;

    private static string? DigestFor(ClusterRecord cluster, long generation) =>
        generation != cluster.Generation && cluster.Rollout.Generations.TryGetValue(generation, out var g) ? g.ImageDigest : cluster.ImageDigest;

    /// <summary>
    /// The replica runs what the cluster wants now: it is of the current generation, or of one
    /// whose spec runs the same (after a rollback the old replicas are current again).
    /// </summary>
    private static bool IsCurrent(ClusterRecord cluster, ReplicaRecord r) =>
        r.Generation == cluster.Generation
        || !cluster.Rollout.Generations.TryGetValue(r.Generation, out var g)
        || ClusterSpec.SameRuntime(g.Spec, cluster.Spec);

    /// <summary>One cluster's share of a reconcile pass. Caller holds the lock.</summary>
    private void ReconcileClusterLocked(ReconcilePass pass, ClusterRecord cluster, List<ReplicaRecord> replicas)
    {
        var now = pass.Now;
        var original = cluster;

        // Drains that are over: the replica goes (its agent stops it with the next assignment set).
        foreach (var r in replicas.Where(r => r.DrainingSince is not null).ToList())
        {
            if (DrainOutcomeLocked(cluster, r, now) is not { } outcome) continue;
            pass.Remove(r);
            replicas.Remove(r);
            pass.Events.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.Drained, $"drained {outcome}: stopped", r.Id, r.NodeId));
        }

        cluster = CheckRolloutLocked(pass, cluster, replicas);

        var live = replicas.Where(r => r.DrainingSince is null).ToList();
        var reasons = new Dictionary<string, Replacement?>(StringComparer.Ordinal);
        foreach (var r in live) reasons[r.Id] = ReplacementReasonLocked(cluster, r, now);

        // To be replaced but not serving: nothing to drain and nothing lost, so it goes at once.
        foreach (var r in live.Where(r => reasons[r.Id] is not null && !IsRoutable(r)).ToList())
        {
            var why = reasons[r.Id]!;
            pass.Remove(r);
            live.Remove(r);
            cluster = AvoidLocked(cluster, why, now);
            pass.Events.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.Replaced,
                $"replaced: {why.Message}; removed at once (not serving)", r.Id, r.NodeId));
        }

        var desired = cluster.Spec.Replicas;
        var outdated = live.Where(r => reasons[r.Id] is not null).OrderBy(r => r.CreatedAt).ThenBy(r => r.Id, StringComparer.Ordinal).ToList();
        var good = live.Where(r => reasons[r.Id] is null).ToList();
        var ready = live.Count(IsRoutable);

        // Serving replicas to be replaced drain one by one, each only while the rest keep the desired ready count.
        var draining = replicas.Count(r => r.DrainingSince is not null);
        while (outdated.Count > 0 && ready > desired)
        {
            draining++;
            var r = outdated[0];
            outdated.RemoveAt(0);
            live.Remove(r);
            ready--;
            cluster = AvoidLocked(cluster, reasons[r.Id]!, now);
            StartDrainLocked(pass, cluster, r, reasons[r.Id]!.Message);
        }

        // More than wanted (scale down; one extra is allowed while replacing): the least useful go,
        // at once when not serving, drained when serving.
        var target = desired + (outdated.Count > 0 ? 1 : 0);
        if (live.Count > target)
        {
            var views = good.Select(r => new Core.Clusters.ReplicaView(r.Id, r.NodeId, r.State, r.CreatedAt)).ToList();
            foreach (var id in ReplicaPlanner.ChooseForRemoval(views, live.Count - target))
            {
                var r = pass.Replicas[id];
                live.Remove(r);
                good.Remove(r);
                if (IsRoutable(r))
                {
                    draining++;
                    StartDrainLocked(pass, cluster, r, "the cluster scaled down");
                }
                else
                {
                    pass.Remove(r);
                    pass.Events.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.Removed, "removed: the cluster scaled down", r.Id, r.NodeId));
                }
            }
        }

        // Missing replicas of the current generation: up to the desired count; while replacing, one
        // extra, draining ones included (a draining replica still holds its GPU).
        var room = outdated.Count > 0 ? target - live.Count - draining : desired - live.Count;
        var create = Math.Min(desired - good.Count, room);
        for (var i = 0; i < create; i++)
        {
            pass.Add(new ReplicaRecord
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
            && good.Count == desired && good.All(IsRoutable) && draining == 0)
        {
            var took = cluster.Rollout.StartedAt is { } started ? $" in {Seconds(now - started)} s" : "";
            cluster = cluster with
            {
                Rollout = cluster.Rollout with { State = RolloutStates.Complete, FinishedAt = now, StableGeneration = cluster.Generation },
            };
            pass.Events.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.UpdateCompleted,
                $"update to generation {cluster.Generation} complete{took}: {good.Count} replicas ready"));
        }

        cluster = PruneGenerations(cluster, replicas, now);
        if (!ReferenceEquals(cluster, original)) pass.Clusters[cluster.Id] = cluster;
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

    private void StartDrainLocked(ReconcilePass pass, ClusterRecord cluster, ReplicaRecord r, string reason)
    {
        var now = pass.Now;
        pass.Replicas[r.Id] = r with { DrainingSince = now, DrainReason = reason, UpdatedAt = now };
        pass.Routes = true;
        pass.Events.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.Draining,
            $"draining ({reason}): out of routing, stops once its requests in flight are done (at most {cluster.Spec.DrainTimeoutSeconds} s)",
            r.Id, r.NodeId));
    }

    /// <summary>
    /// How a drain ended ("after 2.1 s: no request in flight"), or null while it goes on. Over when
    /// the replica no longer serves; when a load report taken after the edges dropped it shows
    /// nothing running or waiting; or when the drain timeout has passed (replicas without metrics
    /// always wait for it).
    /// </summary>
    private string? DrainOutcomeLocked(ClusterRecord cluster, ReplicaRecord r, DateTimeOffset now)
    {
        var since = r.DrainingSince!.Value;
        var waited = Seconds(now - since);
        if (!IsServing(r)) return $"after {waited} s: it was not serving any more";
        var settle = TimeSpan.FromMilliseconds(SpecFor(cluster, r.Generation).Health.IntervalMs) + _options.DrainSettle;
        var load = _loads.GetValueOrDefault(r.Id);
        var fresh = _loadsAt.TryGetValue(r.Id, out var at) && at >= since + settle;
        if (fresh && load is not null && load.Running + load.Waiting <= 0) return $"after {waited} s: no request in flight";
        var timeout = TimeSpan.FromSeconds(cluster.Spec.DrainTimeoutSeconds);
        if (now - since < timeout) return null;
        return load is null
            ? $"after the drain timeout ({Seconds(timeout)} s): the replica reports no load metrics"
            : string.Create(CultureInfo.InvariantCulture, $"after the drain timeout ({Seconds(timeout)} s) with {load.Running + load.Waiting:0} requests still in flight");
    }

    /// <summary>While an update progresses: a new replica that fails makes the cluster go back to the last complete generation.</summary>
    private ClusterRecord CheckRolloutLocked(ReconcilePass pass, ClusterRecord cluster, List<ReplicaRecord> replicas)
    {
        if (cluster.Rollout.State != RolloutStates.Progressing) return cluster;
        var failure = replicas
            .Where(r => r.DrainingSince is null && r.Generation == cluster.Generation)
            .OrderBy(r => r.CreatedAt)
            .Select(r => RolloutFailure(cluster, r, pass.Now))
            .FirstOrDefault(f => f is not null);
        return failure is null ? cluster : RollBackLocked(pass, cluster, failure);
    }

    /// <summary>Why a new replica of an update shows the update is broken, or null.</summary>
    private string? RolloutFailure(ClusterRecord cluster, ReplicaRecord r, DateTimeOffset now)
    {
        var on = r.NodeId is { } n && _nodes.TryGetValue(n, out var node) ? $" on {node.Name}" : "";
        var last = r.Reason ?? (r.ExitCode is { } code ? $"exited with code {code.ToString(CultureInfo.InvariantCulture)}" : null);
        if (r.Restarts >= _options.RolloutFailureRestarts)
        {
            return string.Create(CultureInfo.InvariantCulture, $"new replica {r.Id}{on} restarted {r.Restarts} times") + (last is null ? "" : $" (last: {last})");
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
        if (r.ReadyAt is null && now - r.CreatedAt >= deadline)
        {
            return $"new replica {r.Id}{on} not ready {Seconds(deadline)} s after it was created ({r.State.ToWire()}" + (r.Reason is null ? ")" : $": {r.Reason})");
        }
        return null;
    }

    private ClusterRecord RollBackLocked(ReconcilePass pass, ClusterRecord cluster, string failure)
    {
        var now = pass.Now;
        var rollout = cluster.Rollout;
        if (!rollout.Generations.TryGetValue(rollout.StableGeneration, out var stable) || ClusterSpec.SameRuntime(stable.Spec, cluster.Spec))
        {
            // Nothing different to go back to (the update restored the last complete spec): say why and stop progressing.
            pass.Events.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.RolledBack, $"update failed, nothing earlier to roll back to: {failure}"));
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
            DrainTimeoutSeconds = cluster.Spec.DrainTimeoutSeconds,
            ProgressDeadlineSeconds = cluster.Spec.ProgressDeadlineSeconds,
        };
        pass.Events.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.RolledBack,
            $"rolled back to generation {rollout.StableGeneration} (as generation {generation}): {failure}"));
        LogRolledBack(_logger, cluster.Name, rollout.StableGeneration, failure);
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
