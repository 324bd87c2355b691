using System.Collections.Concurrent;
using Shoal.Contracts;
using Shoal.Core.Autoscaling;

namespace Shoal.ControlPlane.Autoscaling;

/// <summary>
/// The edges' latest <see cref="DemandReport"/>s, one per edge, for the autoscaler. A report stands
/// until the same edge sends the next; an edge silent for <see cref="ExpireAfter"/> or disconnected
/// has none (edges report every second while they have demand, and once more when it drops to none,
/// so silence means no demand). Replicas' first-served times (the end of a cold start) are kept,
/// earliest over edges, until the replica is forgotten.
/// </summary>
public sealed class DemandBook
{
    /// <summary>A report older than this no longer counts.</summary>
    public static readonly TimeSpan ExpireAfter = TimeSpan.FromSeconds(3);

    /// <summary>Most first-served times kept (replicas come and go; the oldest go first).</summary>
    public const int MaxFirstServed = 10_000;

    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, (DemandReport Report, DateTimeOffset At)> _byEdge = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _firstServed = new(StringComparer.Ordinal);

    public DemandBook(TimeProvider time) => _time = time;

    /// <summary>Raised when an edge holds a request for a cluster with no ready replica: the autoscaler runs at once.</summary>
    public event Action? WakeRequested;

    /// <summary>Takes <paramref name="edge"/>'s latest report (it replaces the previous one).</summary>
    public void Report(string edge, DemandReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        _byEdge[edge] = (report, _time.GetUtcNow());
        if (report.FirstServed is { Count: > 0 } served)
        {
            foreach (var (replica, at) in served)
            {
                _firstServed.AddOrUpdate(replica, at, (_, known) => at < known ? at : known);
            }
            if (_firstServed.Count > MaxFirstServed)
            {
                foreach (var old in _firstServed.OrderBy(kv => kv.Value).Take(_firstServed.Count - MaxFirstServed).ToList()) _firstServed.TryRemove(old.Key, out _);
            }
        }
        if (report.Wake) WakeRequested?.Invoke();
    }

    /// <summary>Forgets an edge (it disconnected).</summary>
    public void Remove(string edge) => _byEdge.TryRemove(edge, out _);

    /// <summary>Edges with a current report.</summary>
    public int Edges => _byEdge.Count(kv => _time.GetUtcNow() - kv.Value.At <= ExpireAfter);

    /// <summary>Each cluster's demand summed over the edges whose report is current; expired reports are dropped.</summary>
    public IReadOnlyDictionary<string, EdgeDemandSum> Sum()
    {
        var now = _time.GetUtcNow();
        var sums = new Dictionary<string, EdgeDemandSum>(StringComparer.Ordinal);
        foreach (var (edge, (report, at)) in _byEdge)
        {
            if (now - at > ExpireAfter)
            {
                _byEdge.TryRemove(new KeyValuePair<string, (DemandReport, DateTimeOffset)>(edge, (report, at)));
                continue;
            }
            foreach (var (cluster, d) in report.Clusters)
            {
                if (d is null) continue;
                var known = sums.GetValueOrDefault(cluster);
                // Bad figures from an edge count as none rather than poisoning the sum.
                var arrivals = double.IsFinite(d.Arrivals) && d.Arrivals > 0 ? d.Arrivals : 0;
                sums[cluster] = new EdgeDemandSum(known.InFlight + Math.Max(0, d.InFlight), known.Held + Math.Max(0, d.Held), known.Arrivals + arrivals);
            }
        }
        return sums;
    }

    /// <summary>When the replica first finished a response through any edge; null when it has not yet.</summary>
    public DateTimeOffset? FirstServed(string replicaId) => _firstServed.TryGetValue(replicaId, out var at) ? at : null;
}
