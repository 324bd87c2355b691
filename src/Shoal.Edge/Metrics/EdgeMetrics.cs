using System.Globalization;
using System.Text;
using Shoal.Core.Metrics;
using Shoal.Edge.Connections;
using Shoal.Edge.Routing;

namespace Shoal.Edge.Metrics;

/// <summary>
/// Renders the edge's counters in the Prometheus text format (version 0.0.4). The counters
/// themselves live in <see cref="ClusterState"/> and <see cref="EdgeReplica"/> and are updated
/// with interlocked operations on the request path; rendering only reads them.
/// </summary>
public sealed class EdgeMetrics
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";
    private static readonly string[] s_classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

    private readonly EdgeRouter _router;
    private readonly PassiveHealth _health;
    private readonly EdgeConnectionLimiter _connections;
    private readonly IMetricsSource[] _sources;
    private long _unknownCluster;
    private long _unauthorized;

    public EdgeMetrics(EdgeRouter router, PassiveHealth health, EdgeConnectionLimiter connections, IEnumerable<IMetricsSource>? sources = null)
    {
        _sources = sources?.ToArray() ?? [];
        _router = router;
        _health = health;
        _connections = connections;
    }

    internal void CountUnknownCluster() => Interlocked.Increment(ref _unknownCluster);

    internal void CountUnauthorized() => Interlocked.Increment(ref _unauthorized);

    public string Render()
    {
        var clusters = _router.Clusters.ToArray();
        Array.Sort(clusters, static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        var replicas = _router.Replicas.ToArray();
        Array.Sort(replicas, static (a, b) => string.CompareOrdinal(a.Cluster, b.Cluster) is var c and not 0 ? c : string.CompareOrdinal(a.ReplicaId, b.ReplicaId));
        var sb = new StringBuilder(4096);

        Header(sb, "shoal_edge_requests_total", "counter", "Responses the edge sent for cluster requests, by status class.");
        foreach (var c in clusters)
        {
            for (var k = 1; k <= 5; k++)
            {
                var n = c.Responses(k);
                if (n > 0) Line(sb, "shoal_edge_requests_total", c.Name, null, "code", s_classes[k - 1], n);
            }
        }
        Header(sb, "shoal_edge_connections", "gauge", "Connections the edge holds now (HTTP, tunnels, undecided).");
        sb.Append("shoal_edge_connections ").Append(_connections.Open).Append('\n');
        Header(sb, "shoal_edge_connections_max", "gauge", "Most connections the edge holds at once.");
        sb.Append("shoal_edge_connections_max ").Append(_connections.MaxConnections).Append('\n');
        Header(sb, "shoal_edge_connections_refused_total", "counter", "Connections closed on arrival, by the limit they met.");
        sb.Append("shoal_edge_connections_refused_total{limit=\"total\"} ").Append(_connections.RefusedAtLimit).Append('\n');
        sb.Append("shoal_edge_connections_refused_total{limit=\"address\"} ").Append(_connections.RefusedPerAddress).Append('\n');
        sb.Append("shoal_edge_connections_refused_total{limit=\"files\"} ").Append(_connections.RefusedForFiles).Append('\n');
        Header(sb, "shoal_edge_unknown_cluster_total", "counter", "Requests for no cluster or an unknown one (404).");
        sb.Append("shoal_edge_unknown_cluster_total ").Append(Interlocked.Read(ref _unknownCluster)).Append('\n');
        Header(sb, "shoal_edge_unauthorized_total", "counter", "Requests refused for a missing, unknown or expired endpoint key (401).");
        sb.Append("shoal_edge_unauthorized_total ").Append(Interlocked.Read(ref _unauthorized)).Append('\n');

        HistogramFamily(sb, "shoal_edge_request_duration_seconds", "Time from arrival until the response was complete, streams included.", clusters, static c => c.Duration);
        HistogramFamily(sb, "shoal_edge_time_to_first_byte_seconds", "Time from arrival until a replica's response headers (first token of a stream), holding and retries included.", clusters, static c => c.TimeToFirstByte);

        Header(sb, "shoal_edge_retries_total", "counter", "Attempts repeated on another replica after a failure before the first response byte.");
        foreach (var c in clusters) Line(sb, "shoal_edge_retries_total", c.Name, null, null, null, c.Retries);
        Header(sb, "shoal_edge_attempts_cut_total", "counter", "Attempts cut before any response: no headers within the first-byte timeout, or the replica left routing (unhealthy, removed).");
        foreach (var c in clusters)
        {
            Line(sb, "shoal_edge_attempts_cut_total", c.Name, null, "reason", "first-byte-timeout", c.FirstByteTimeouts);
            Line(sb, "shoal_edge_attempts_cut_total", c.Name, null, "reason", "left-routing", c.DepartedCuts);
        }
        Header(sb, "shoal_edge_held_requests_total", "counter", "Requests that had to wait for a ready replica.");
        foreach (var c in clusters) Line(sb, "shoal_edge_held_requests_total", c.Name, null, null, null, c.Held);
        Header(sb, "shoal_edge_hold_timeouts_total", "counter", "Held requests answered 503 after the queue timeout.");
        foreach (var c in clusters) Line(sb, "shoal_edge_hold_timeouts_total", c.Name, null, null, null, c.HoldTimeouts);
        Header(sb, "shoal_edge_holding_requests", "gauge", "Requests waiting for a ready replica now.");
        foreach (var c in clusters) Line(sb, "shoal_edge_holding_requests", c.Name, null, null, null, c.Queue.Count);
        Header(sb, "shoal_edge_hold_refused_total", "counter", "Requests answered 503 at once because the cluster's hold queue was full.");
        foreach (var c in clusters) Line(sb, "shoal_edge_hold_refused_total", c.Name, null, null, null, c.HoldRefused);
        Header(sb, "shoal_edge_hold_released_total", "counter", "Held requests handed on, oldest first, when a replica could take them.");
        foreach (var c in clusters) Line(sb, "shoal_edge_hold_released_total", c.Name, null, null, null, c.Released);

        Header(sb, "shoal_edge_upstream_attempts_total", "counter", "Attempts sent to a replica, by outcome (status class, or error when no response came).");
        foreach (var r in replicas)
        {
            for (var k = 0; k < EdgeReplica.OutcomeCount; k++)
            {
                var n = Interlocked.Read(ref r._outcomes[k]);
                if (n > 0) Line(sb, "shoal_edge_upstream_attempts_total", r.Cluster, r.ReplicaId, "outcome", s_classes[k], n);
            }
        }
        Header(sb, "shoal_edge_ejections_total", "counter", "Times a replica was ejected by passive health checks.");
        foreach (var r in replicas) Line(sb, "shoal_edge_ejections_total", r.Cluster, r.ReplicaId, null, null, r.Ejections);
        Header(sb, "shoal_edge_replica_ejected", "gauge", "1 while a replica is ejected.");
        foreach (var r in replicas) Line(sb, "shoal_edge_replica_ejected", r.Cluster, r.ReplicaId, null, null, _health.IsEjected(r) ? 1 : 0);
        Header(sb, "shoal_edge_replica_in_flight", "gauge", "Requests the edge is forwarding to a replica now.");
        foreach (var r in replicas) Line(sb, "shoal_edge_replica_in_flight", r.Cluster, r.ReplicaId, null, null, r.InFlight);
        foreach (var source in _sources) source.Render(sb);
        return sb.ToString();
    }

    private static void HistogramFamily(StringBuilder sb, string name, string help, ClusterState[] clusters, Func<ClusterState, Histogram> pick)
    {
        Header(sb, name, "histogram", help);
        foreach (var c in clusters)
        {
            var h = pick(c);
            long cumulative = 0;
            for (var i = 0; i <= Histogram.Bounds.Length; i++)
            {
                cumulative += h.BucketCount(i);
                var le = i < Histogram.Bounds.Length ? Histogram.Bounds[i].ToString(CultureInfo.InvariantCulture) : "+Inf";
                Line(sb, name + "_bucket", c.Name, null, "le", le, cumulative);
            }
            Line(sb, name + "_sum", c.Name, null, null, null, h.SumSeconds);
            Line(sb, name + "_count", c.Name, null, null, null, cumulative);
        }
    }

    private static void Header(StringBuilder sb, string name, string type, string help) =>
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    private static void Line(StringBuilder sb, string name, string cluster, string? replica, string? label, string? value, double number)
    {
        sb.Append(name).Append("{cluster=\"");
        Escape(sb, cluster);
        if (replica is not null)
        {
            sb.Append("\",replica=\"");
            Escape(sb, replica);
        }
        if (label is not null) sb.Append("\",").Append(label).Append("=\"").Append(value);
        sb.Append("\"} ").Append(number.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }

    private static void Escape(StringBuilder sb, string value)
    {
        foreach (var ch in value)
        {
            switch (ch)
            {
                case '\\': sb.Append(@"\\"); break;
                case '"': sb.Append("\\\""); break;
                case '\n': sb.Append(@"\n"); break;
                default: sb.Append(ch); break;
            }
        }
    }
}
