using Shoal.Contracts;

namespace Shoal.Core.Autoscaling;

/// <summary>
/// Where an edge's <see cref="DemandReport"/>s go: the control plane's autoscaler. A standalone edge
/// sends them on its control stream; an edge inside <c>shoal server</c> hands them over in process.
/// Reports must not block the request path: implementations queue or drop, never wait.
/// </summary>
public interface IEdgeDemandSink
{
    /// <summary>Takes the edge's latest report (each replaces the previous one from the same edge).</summary>
    void Report(DemandReport report);
}
