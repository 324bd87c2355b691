using System.Globalization;
using Shoal.Contracts;
using Shoal.Core.Clusters;
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
                        // A new spec gets fresh attempts: a failed cluster tries again.
                        FailedAttempts = 0,
                        RetryAt = null,
                        Failure = null,
                        FailedAt = null,
                    },
                };
                changes.AppendEvents.Add(NewEventLocked(id, now, ClusterEventTypes.UpdateStarted,
                    $"update to generation {generation} started ({what}): replicas are replaced one at a time", actor: actor));
            }
            else
            {
                updated = cluster with { Spec = spec, UpdatedAt = now };
            }
            if (spec.Autoscale != cluster.Spec.Autoscale)
            {
                changes.AppendEvents.Add(NewEventLocked(id, now, ClusterEventTypes.Autoscale, DescribeAutoscale(spec.Autoscale), actor: actor));
            }
            if (spec.Replicas != cluster.Spec.Replicas)
            {
                changes.AppendEvents.Add(NewEventLocked(id, now, ClusterEventTypes.Scaled, $"scaled from {cluster.Spec.Replicas} to {spec.Replicas} replicas", actor: actor));
            }
            changes.UpsertClusters.Add(updated);
            await CommitLockedAsync(changes, ct);
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
        && a.FirstByteTimeoutSeconds == b.FirstByteTimeoutSeconds && a.DrainTimeoutSeconds == b.DrainTimeoutSeconds && a.ProgressDeadlineSeconds == b.ProgressDeadlineSeconds
        && a.MaxHeld == b.MaxHeld && a.Autoscale == b.Autoscale && a.Price == b.Price
        && (a.Models ?? []).AsSpan().SequenceEqual(b.Models ?? []);

    /// <summary>"autoscaling on: 1..5 replicas, target 2 waiting per replica, scale down after 5m" or "autoscaling off".</summary>
    internal static string DescribeAutoscale(AutoscaleSpec? a)
    {
        if (a is null) return "autoscaling off: the replica count is fixed";
        var targets = new List<string>();
        if (a.TargetWaiting > 0) targets.Add(string.Create(CultureInfo.InvariantCulture, $"{a.TargetWaiting:0.##} waiting"));
        if (a.TargetConcurrency > 0) targets.Add(string.Create(CultureInfo.InvariantCulture, $"{a.TargetConcurrency:0.##} in flight + held"));
        var window = Shoal.Core.Autoscaling.Autoscaler.Format(TimeSpan.FromSeconds(a.ScaleDownWindowSeconds));
        var zero = a.ScaleToZeroAfterSeconds > 0 ? ", to zero after " + Shoal.Core.Autoscaling.Autoscaler.Format(TimeSpan.FromSeconds(a.ScaleToZeroAfterSeconds)) + " idle" : "";
        return string.Create(CultureInfo.InvariantCulture, $"autoscaling on: {a.Min}..{a.Max} replicas, target {string.Join(" and ", targets)} per replica, scale-down window {window}{zero}");
    }

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
}
