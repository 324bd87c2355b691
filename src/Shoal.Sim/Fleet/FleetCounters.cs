namespace Shoal.Sim.Fleet;

/// <summary>The fleet's counters, updated with interlocked operations by the nodes.</summary>
internal sealed class FleetCounters
{
    private long _connects;
    private long _connectFailures;
    private long _sessionsLost;
    private long _heartbeats;
    private long _assignments;
    private long _acks;
    private long _registered;

    public LatencyRecorder ConnectTimes { get; } = new();
    public LatencyRecorder HelloTimes { get; } = new();
    /// <summary>Heartbeat lateness in the current stats window.</summary>
    public LatencyRecorder HeartbeatLate { get; } = new();

    public long Connects => Interlocked.Read(ref _connects);
    public long ConnectFailures => Interlocked.Read(ref _connectFailures);
    public long SessionsLost => Interlocked.Read(ref _sessionsLost);
    public long Heartbeats => Interlocked.Read(ref _heartbeats);
    public long Assignments => Interlocked.Read(ref _assignments);
    public long Acks => Interlocked.Read(ref _acks);
    public long Registrations => Interlocked.Read(ref _registered);

    public void CountConnect() => Interlocked.Increment(ref _connects);
    public void CountConnectFailure() => Interlocked.Increment(ref _connectFailures);
    public void CountSessionLost() => Interlocked.Increment(ref _sessionsLost);
    public void CountAssignments() => Interlocked.Increment(ref _assignments);
    public void CountAck() => Interlocked.Increment(ref _acks);
    public void CountRegistered() => Interlocked.Increment(ref _registered);

    public void Heartbeat(double lateMs)
    {
        Interlocked.Increment(ref _heartbeats);
        HeartbeatLate.Add(lateMs);
    }
}
