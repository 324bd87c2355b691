using Shoal.Contracts;
using Shoal.Core.Autoscaling;
using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.State;

/// <summary>What the autoscaler last decided for a cluster and the last change it made.</summary>
public sealed record AutoscaleStatus(AutoscaleDecision Decision, DateTimeOffset DecidedAt)
{
    public string? LastChange { get; init; }
    public DateTimeOffset? LastChangeAt { get; init; }
}

/// <summary>
/// The autoscaler's pass (pure rule in <see cref="Autoscaler"/>): each autoscaled cluster's figures
/// are read under the lock, and the counts that change commit together, with their events, then
/// apply, exactly like a user's scale; the reconciler then adds replicas or drains the surplus.
/// Nothing is written when nothing changes. Cold starts of each cluster's recent replicas are
/// gathered on the same pass.
/// </summary>
public sealed partial class ControlPlaneState
{
    /// <summary>How many recent replicas' cold starts are kept per cluster.</summary>
    public const int ColdStartsKept = 50;

    private readonly Dictionary<string, AutoscaleHistory> _autoscaleHistory = new(StringComparer.Ordinal);
    private readonly Dictionary<string, AutoscaleStatus> _autoscaleStatus = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<string, ColdStartSample>> _coldStarts = new(StringComparer.Ordinal);

    /// <summary>A replica's figure older than this is missing (its <c>/metrics</c> stopped answering).</summary>
    private TimeSpan LoadFreshFor => _options.HeartbeatInterval * (_options.MissedHeartbeats + 1);

    /// <summary>
    /// One autoscaler pass over every autoscaled cluster with <paramref name="demand"/> (per cluster
    /// name, summed over edges). Returns how many clusters changed their replica count.
    /// </summary>
    /// <param name="firstServed">When a replica first served a request through an edge (null: not yet).</param>
    public async Task<int> AutoscaleAsync(IReadOnlyDictionary<string, EdgeDemandSum> demand, Func<string, DateTimeOffset?> firstServed, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(demand);
        ArgumentNullException.ThrowIfNull(firstServed);
        var now = _time.GetUtcNow();
        var changed = new List<(ClusterRecord Cluster, string Message)>();
        await _gate.WaitAsync(ct);
        try
        {
            var byCluster = _replicas.Values.ToLookup(r => r.ClusterId, StringComparer.Ordinal);
            GatherColdStartsLocked(byCluster, firstServed);
            foreach (var id in _autoscaleHistory.Keys.Where(id => _clustersById.GetValueOrDefault(id)?.Spec.Autoscale is null).ToList())
            {
                _autoscaleHistory.Remove(id);
                _autoscaleStatus.Remove(id);
            }

            var changes = new StoreChanges();
            foreach (var cluster in _clustersById.Values)
            {
                if (cluster.Spec.Autoscale is not { } settings || cluster.Rollout.Failure is not null) continue;
                var signals = new List<ReplicaSignal>();
                foreach (var r in byCluster[cluster.Id])
                {
                    if (!IsRoutable(r)) continue;
                    var fresh = _loads.TryGetValue(r.Id, out var load) && _loadsAt.TryGetValue(r.Id, out var at) && now - at <= LoadFreshFor;
                    signals.Add(fresh ? new ReplicaSignal(load!.Waiting, load.Running) : ReplicaSignal.Missing);
                }
                if (!_autoscaleHistory.TryGetValue(cluster.Id, out var history)) _autoscaleHistory[cluster.Id] = history = new AutoscaleHistory();
                var current = cluster.Spec.Replicas;
                var decision = Autoscaler.Decide(new AutoscaleInput
                {
                    Settings = settings,
                    Now = now,
                    Current = current,
                    Ready = signals.Count,
                    Replicas = signals,
                    Demand = demand.GetValueOrDefault(cluster.Name),
                }, history);
                var previous = _autoscaleStatus.GetValueOrDefault(cluster.Id);
                var status = new AutoscaleStatus(decision, now) { LastChange = previous?.LastChange, LastChangeAt = previous?.LastChangeAt };
                if (decision.Desired != current)
                {
                    var message = Autoscaler.Describe(current, decision);
                    var updated = cluster with { Spec = cluster.Spec with { Replicas = decision.Desired }, UpdatedAt = now };
                    changes.UpsertClusters.Add(updated);
                    changes.AppendEvents.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.Scaled, message));
                    changed.Add((updated, message));
                    status = status with { LastChange = message, LastChangeAt = now };
                }
                _autoscaleStatus[cluster.Id] = status;
            }
            if (changed.Count == 0)
            {
                MetricsSnapshot = MetricsLocked();
                return 0;
            }
            await CommitLockedAsync(changes, ct);
            foreach (var (c, _) in changed) _clustersById[c.Id] = c;
            MetricsSnapshot = MetricsLocked();
        }
        finally
        {
            _gate.Release();
        }
        foreach (var (c, message) in changed) LogAutoscaled(_logger, c.Name, message);
        ReconcileNeeded?.Invoke();
        RoutesChanged?.Invoke();
        return changed.Count;
    }

    /// <summary>Each cluster's count, autoscaling and cold starts as of the last autoscaler pass, for metrics (read without the lock).</summary>
    public IReadOnlyList<ClusterMetrics> MetricsSnapshot { get; private set; } = [];

    private List<ClusterMetrics> MetricsLocked() =>
        [.. _clustersById.Values.OrderBy(c => c.Name, StringComparer.Ordinal).Select(c => new ClusterMetrics(
            c.Name, c.Spec.Replicas, c.Spec.Autoscale, AutoscaleStatusLocked(c.Id)?.Decision, ColdStartLocked(c.Id)))];

    /// <summary>The autoscaler's last decision for a cluster; null before its first pass or with autoscaling off. Caller holds the lock.</summary>
    private AutoscaleStatus? AutoscaleStatusLocked(string clusterId) => _autoscaleStatus.GetValueOrDefault(clusterId);

    // Each replica's cold-start parts as far as they are known; replicas that are gone stay until pushed out by newer ones.
    private void GatherColdStartsLocked(ILookup<string, ReplicaRecord> byCluster, Func<string, DateTimeOffset?> firstServed)
    {
        foreach (var id in _coldStarts.Keys.Where(id => !_clustersById.ContainsKey(id)).ToList()) _coldStarts.Remove(id);
        foreach (var cluster in _clustersById.Values)
        {
            if (!_coldStarts.TryGetValue(cluster.Id, out var samples))
            {
                if (!byCluster[cluster.Id].Any()) continue;
                _coldStarts[cluster.Id] = samples = new Dictionary<string, ColdStartSample>(StringComparer.Ordinal);
            }
            foreach (var r in byCluster[cluster.Id])
            {
                // Worked out again only when the replica or its first-served time changed: this runs every second.
                var known = samples.GetValueOrDefault(r.Id);
                var served = firstServed(r.Id) ?? known?.FirstServedAt;
                if (known is not null && known.UpdatedAt == r.UpdatedAt && known.FirstServedAt == served) continue;
                samples[r.Id] = ColdStartSample.Of(r, served);
            }
            if (samples.Count > ColdStartsKept)
            {
                foreach (var old in samples.Values.OrderBy(s => s.CreatedAt).Take(samples.Count - ColdStartsKept).ToList()) samples.Remove(old.ReplicaId);
            }
        }
    }

    /// <summary>The cluster's cold starts in four parts (p50/p90/max); null when none is known. Caller holds the lock.</summary>
    private ColdStartDto? ColdStartLocked(string clusterId)
    {
        if (!_coldStarts.TryGetValue(clusterId, out var samples) || samples.Count == 0) return null;
        var list = samples.Values.ToList();
        var dto = new ColdStartDto
        {
            NodeWait = Summarize(list.Select(s => s.NodeWait)),
            ImagePull = Summarize(list.Select(s => s.ImagePull)),
            Start = Summarize(list.Select(s => s.Start)),
            WarmUp = Summarize(list.Select(s => s.WarmUp)),
        };
        return dto.NodeWait is null && dto.ImagePull is null && dto.Start is null && dto.WarmUp is null ? null : dto;
    }

    /// <summary>Every cluster's cold-start parts, for metrics: cluster name → parts.</summary>
    public async Task<IReadOnlyList<(string Cluster, ColdStartDto ColdStart)>> ColdStartsAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            var list = new List<(string, ColdStartDto)>();
            foreach (var c in _clustersById.Values.OrderBy(c => c.Name, StringComparer.Ordinal))
            {
                if (ColdStartLocked(c.Id) is { } dto) list.Add((c.Name, dto));
            }
            return list;
        }
        finally
        {
            _gate.Release();
        }
    }

    internal static LatencySummary? Summarize(IEnumerable<TimeSpan?> parts)
    {
        var ms = parts.Where(p => p is { } t && t >= TimeSpan.Zero).Select(p => p!.Value.TotalMilliseconds).Order().ToArray();
        if (ms.Length == 0) return null;
        // Nearest rank: the smallest value with at least p of them at or below it.
        double Rank(double p) => ms[Math.Clamp((int)Math.Ceiling(p * ms.Length) - 1, 0, ms.Length - 1)];
        return new LatencySummary { Count = ms.Length, P50Ms = Rank(0.5), P90Ms = Rank(0.9), MaxMs = ms[^1] };
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {Name} {Change}")]
    private static partial void LogAutoscaled(ILogger logger, string name, string change);
}

/// <summary>One cluster's figures for metrics.</summary>
public sealed record ClusterMetrics(string Cluster, int Replicas, AutoscaleSpec? Autoscale, AutoscaleDecision? Decision, ColdStartDto? ColdStart);

/// <summary>
/// One replica's cold start in four parts, each null until known: waiting for a node (created →
/// placed), image pull (placed → pulled), start until the health check passes (started → ready),
/// warm-up until the first request is served (ready → first response through an edge).
/// </summary>
internal sealed record ColdStartSample(string ReplicaId, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, TimeSpan? NodeWait, TimeSpan? ImagePull, TimeSpan? Start, TimeSpan? WarmUp, DateTimeOffset? FirstServedAt)
{
    public static ColdStartSample Of(ReplicaRecord r, DateTimeOffset? firstServed) => new(
        r.Id,
        r.CreatedAt,
        r.UpdatedAt,
        r.AssignedAt - r.CreatedAt,
        r.PulledAt - r.AssignedAt,
        r.ReadyAt - r.StartedAt,
        firstServed - r.ReadyAt,
        firstServed);
}
