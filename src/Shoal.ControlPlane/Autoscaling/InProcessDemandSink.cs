using Shoal.Contracts;
using Shoal.Core.Autoscaling;

namespace Shoal.ControlPlane.Autoscaling;

/// <summary>The edge inside <c>shoal server</c> hands its demand reports straight to the server's <see cref="DemandBook"/>.</summary>
public sealed class InProcessDemandSink(DemandBook book) : IEdgeDemandSink
{
    /// <summary>The name the in-process edge has in the book.</summary>
    public const string EdgeName = "in-process";

    public void Report(DemandReport report) => book.Report(EdgeName, report);
}
