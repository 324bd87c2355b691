using System.Diagnostics.Metrics;

namespace Shoal.ControlPlane.Agents;

/// <summary>
/// The agent gateway's instruments on <see cref="MeterName"/>: how long the server takes to handle a heartbeat
/// (the state update, lock wait included), and sessions closed for missed heartbeats. Read with
/// <c>dotnet-counters monitor --counters Shoal.ControlPlane</c> or any System.Diagnostics.Metrics listener.
/// </summary>
internal static class AgentGatewayMetrics
{
    public const string MeterName = "Shoal.ControlPlane";

    private static readonly Meter s_meter = new(MeterName);

    public static readonly Histogram<double> HeartbeatDuration = s_meter.CreateHistogram<double>(
        "shoal.agent.heartbeat.duration", "ms", "Time the server takes to handle one agent heartbeat");

    public static readonly Counter<long> StaleClosed = s_meter.CreateCounter<long>(
        "shoal.agent.stale_closed", "{session}", "Agent sessions closed because heartbeats stopped");
}
