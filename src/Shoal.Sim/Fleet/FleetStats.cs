using System.Text.Json;
using System.Text.Json.Serialization;

namespace Shoal.Sim.Fleet;

/// <summary>
/// One stats line of the fleet simulator. Counters are totals since the start; <c>*Window*</c>
/// figures cover the time since the previous line. Latencies are in milliseconds, null when nothing was measured.
/// </summary>
public sealed record FleetStats
{
    public DateTimeOffset Time { get; init; }
    public double ElapsedSeconds { get; init; }
    public int Nodes { get; init; }
    /// <summary>Nodes with a session (welcome received) now.</summary>
    public int Connected { get; init; }
    /// <summary>Nodes that registered with the provisioning token in this run.</summary>
    public long Registered { get; init; }
    public long Connects { get; init; }
    public long ConnectFailures { get; init; }
    /// <summary>Sessions the server ended (or that broke) that the simulator did not end itself.</summary>
    public long SessionsLost { get; init; }
    /// <summary>WebSocket connect (TCP + upgrade) p99.</summary>
    public double? ConnectP99Ms { get; init; }
    /// <summary>Hello sent to welcome received, p50 and p99.</summary>
    public double? HelloP50Ms { get; init; }
    public double? HelloP99Ms { get; init; }
    public long HeartbeatsSent { get; init; }
    /// <summary>Heartbeats sent in the last window, per second.</summary>
    public double HeartbeatsPerSecond { get; init; }
    /// <summary>
    /// How late heartbeats left this process (due time to the send completing), p99 over the last window:
    /// the simulator's own share of a heartbeat's delay. The server does not answer heartbeats, so no round trip is measured.
    /// </summary>
    public double? HeartbeatLateP99Ms { get; init; }
    public long AssignmentsReceived { get; init; }
    public long AcksSent { get; init; }
    /// <summary>Replicas the nodes hold now, and of them ready.</summary>
    public int Replicas { get; init; }
    public int ReplicasReady { get; init; }
    public long Killed { get; init; }
    public long Silenced { get; init; }
    public long Churned { get; init; }
    /// <summary>Nodes churned away that have not returned yet.</summary>
    public int Away { get; init; }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(FleetStats))]
[JsonSerializable(typeof(FleetCredential))]
internal sealed partial class FleetJsonContext : JsonSerializerContext;
