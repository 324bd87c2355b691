using Shoal.Contracts;
using Shoal.Core.Scheduling;

namespace Shoal.ControlPlane.State;

/// <summary>
/// What the control plane knows of one node's link, in memory only: its agent's session, when it
/// was last heard from, since when it is gone, its recent disconnects. Session changes happen under
/// the state's lock; a heartbeat touches <see cref="LastSeen"/> and reads <see cref="Applied"/>
/// without it, so a heartbeat that changes nothing costs no lock and no store write.
/// </summary>
internal sealed class NodeLiveness
{
    private long _lastSeenTicks;
    private volatile object? _session;
    private volatile AppliedHeartbeat? _applied;

    /// <summary>The agent's current session; null while disconnected.</summary>
    public object? Session
    {
        get => _session;
        set
        {
            _session = value;
            _applied = null;
        }
    }

    /// <summary>When the agent was last heard from (hello, heartbeat); read and written without the lock.</summary>
    public DateTimeOffset LastSeen
    {
        get
        {
            var ticks = Interlocked.Read(ref _lastSeenTicks);
            return ticks == 0 ? default : new DateTimeOffset(ticks, TimeSpan.Zero);
        }
        set => Interlocked.Exchange(ref _lastSeenTicks, value.UtcTicks);
    }

    public DateTimeOffset? DisconnectedSince { get; set; }
    /// <summary>The grace of this disconnect when not the usual one (after a server start).</summary>
    public TimeSpan? Grace { get; set; }
    /// <summary>The node's agent asked to be reached over its tunnels.</summary>
    public bool Tunnel { get; set; }
    /// <summary>Why edges may not connect to the address this direct-mode node reported; null when they may (or it uses tunnels).</summary>
    public string? AddressRefused { get; set; }
    /// <summary>When the current session began; null while disconnected.</summary>
    public DateTimeOffset? ConnectedSince { get; set; }
    /// <summary>When the node lost its connection, within <see cref="NodeReliability.Window"/> (kept in memory only).</summary>
    public Queue<DateTimeOffset> RecentDisconnects { get; } = new();

    /// <summary>
    /// What the last report the state took in under its lock said (null: none yet, or the model
    /// changed under it). A heartbeat saying the same, loads aside, needs no lock.
    /// </summary>
    public AppliedHeartbeat? Applied
    {
        get => _applied;
        set => _applied = value;
    }
}

/// <summary>A report the state applied: the revision the agent had, the images it had, and its replicas' observed state.</summary>
/// <param name="Owned">Replica ids of the report that are this node's (their load is taken in).</param>
internal sealed record AppliedHeartbeat(long AppliedRevision, string[] Images, ReplicaReport[] Reports, IReadOnlySet<string> Owned)
{
    /// <summary>The heartbeat says what was applied already, loads aside.</summary>
    public bool SameAs(HeartbeatMessage heartbeat)
    {
        if (heartbeat.AppliedRevision != AppliedRevision) return false;
        if (heartbeat.Images is { } images && !images.AsSpan().SequenceEqual(Images)) return false;
        var reports = heartbeat.Replicas;
        if (reports.Length != Reports.Length) return false;
        for (var i = 0; i < reports.Length; i++)
        {
            if (!SameObserved(reports[i], Reports[i])) return false;
        }
        return true;
    }

    private static bool SameObserved(ReplicaReport a, ReplicaReport b) =>
        a.ReplicaId == b.ReplicaId && a.State == b.State && a.Reason == b.Reason && a.Healthy == b.Healthy
        && a.HostPort == b.HostPort && a.Restarts == b.Restarts && a.ExitCode == b.ExitCode
        && a.PulledAt == b.PulledAt && a.StartedAt == b.StartedAt && a.ReadyAt == b.ReadyAt
        && a.PullProgress == b.PullProgress && a.ImageDigest == b.ImageDigest
        && (a.Models ?? []).AsSpan().SequenceEqual(b.Models ?? []);
}
