using System.Globalization;
using System.Text;
using Shoal.Contracts;
using Shoal.ControlPlane.State;
using Shoal.Core.Metrics;

namespace Shoal.ControlPlane.Autoscaling;

/// <summary>
/// The control plane's autoscaling and cold-start figures on the server's <c>/metrics</c> (the
/// in-process edge's), from the snapshot the autoscaler's pass leaves each second.
/// </summary>
public sealed class ControlPlaneMetrics(ControlPlaneState state) : IMetricsSource
{
    public void Render(StringBuilder sb)
    {
        ArgumentNullException.ThrowIfNull(sb);
        var clusters = state.MetricsSnapshot;
        Header(sb, "shoal_cluster_replicas_desired", "gauge", "Replicas a cluster should run (its spec; the autoscaler's when autoscaling).");
        foreach (var c in clusters) Line(sb, "shoal_cluster_replicas_desired", c.Cluster, null, c.Replicas);
        Header(sb, "shoal_autoscale_recommended_replicas", "gauge", "Replicas the autoscaler's signals ask for now, before the window and bounds.");
        foreach (var c in clusters)
        {
            if (c.Decision is { } d) Line(sb, "shoal_autoscale_recommended_replicas", c.Cluster, null, d.Recommended);
        }
        Header(sb, "shoal_autoscale_waiting", "gauge", "Requests waiting at a cluster's replicas plus held at the edges, as the autoscaler saw them.");
        foreach (var c in clusters)
        {
            if (c.Decision is { } d) Line(sb, "shoal_autoscale_waiting", c.Cluster, null, d.Waiting);
        }
        Header(sb, "shoal_autoscale_panic", "gauge", "1 while the autoscaler is in panic mode for a cluster (no scale-down).");
        foreach (var c in clusters)
        {
            if (c.Decision is { } d) Line(sb, "shoal_autoscale_panic", c.Cluster, null, d.Panic ? 1 : 0);
        }
        Header(sb, "shoal_cluster_cold_start_seconds", "gauge",
            "Cold starts of a cluster's recent replicas by part (node_wait, image_pull, start, warm_up) and statistic (p50, p90, max).");
        foreach (var c in clusters)
        {
            if (c.ColdStart is not { } cold) continue;
            Part(sb, c.Cluster, "node_wait", cold.NodeWait);
            Part(sb, c.Cluster, "image_pull", cold.ImagePull);
            Part(sb, c.Cluster, "start", cold.Start);
            Part(sb, c.Cluster, "warm_up", cold.WarmUp);
        }
    }

    private static void Part(StringBuilder sb, string cluster, string part, LatencySummary? s)
    {
        if (s is null) return;
        Line(sb, "shoal_cluster_cold_start_seconds", cluster, $"part=\"{part}\",stat=\"p50\"", s.P50Ms / 1000);
        Line(sb, "shoal_cluster_cold_start_seconds", cluster, $"part=\"{part}\",stat=\"p90\"", s.P90Ms / 1000);
        Line(sb, "shoal_cluster_cold_start_seconds", cluster, $"part=\"{part}\",stat=\"max\"", s.MaxMs / 1000);
    }

    private static void Header(StringBuilder sb, string name, string type, string help) =>
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    // Cluster names are DNS labels: nothing to escape.
    private static void Line(StringBuilder sb, string name, string cluster, string? labels, double value) =>
        sb.Append(name).Append("{cluster=\"").Append(cluster).Append('"').Append(labels is null ? "" : "," + labels).Append("} ")
          .Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
}
