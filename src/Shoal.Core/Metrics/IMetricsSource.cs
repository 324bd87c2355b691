using System.Text;

namespace Shoal.Core.Metrics;

/// <summary>
/// More metric families for the edge's <c>/metrics</c>, in the Prometheus text format: the edge
/// inside <c>shoal server</c> gets the control plane's (autoscaling, cold starts) this way.
/// Implementations only read a snapshot: rendering must not wait.
/// </summary>
public interface IMetricsSource
{
    void Render(StringBuilder sb);
}
