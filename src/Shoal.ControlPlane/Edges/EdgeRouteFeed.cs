using Shoal.Contracts;
using Shoal.Core.Routing;

namespace Shoal.ControlPlane.Edges;

/// <summary>What an edge's stream should do about routes now: send a message, or look again after a wait.</summary>
public readonly record struct RouteFeedStep(EdgeMessage? Message, TimeSpan? Wait)
{
    public static readonly RouteFeedStep Nothing = new(null, null);
}

/// <summary>
/// Decides what one edge is sent of the route tables the control plane builds: the whole table
/// first (and again when the edge asks to resync), then, to an edge that speaks deltas, the
/// difference between the table it has and the newest one. Replica and node changes go at once;
/// a difference of load figures alone waits until <see cref="LoadInterval"/> has passed since the
/// last load figures went, so a fleet's heartbeats reach an edge at most that often. The edge
/// always gets the newest table, never a queue of old ones. Not thread-safe except <see cref="RequestResync"/>.
/// </summary>
public sealed class EdgeRouteFeed(bool deltas, TimeSpan loadInterval)
{
    /// <summary>How often an edge gets load figures at most.</summary>
    public static readonly TimeSpan DefaultLoadInterval = TimeSpan.FromMilliseconds(250);

    private RouteTable? _sent;
    private RouteTable? _unchanged;
    private DateTimeOffset _loadSentAt = DateTimeOffset.MinValue;
    private int _resync;

    public TimeSpan LoadInterval => loadInterval;

    /// <summary>Whole tables sent (on connect and on resync, or every table to an edge without deltas).</summary>
    public int TablesSent { get; private set; }

    /// <summary>Deltas sent.</summary>
    public int DeltasSent { get; private set; }

    /// <summary>The edge asked for the whole table (thread-safe; the caller then wakes the writer).</summary>
    public void RequestResync() => Volatile.Write(ref _resync, 1);

    /// <summary>What to send of <paramref name="current"/> at <paramref name="now"/>; the step is taken as sent.</summary>
    public RouteFeedStep Next(RouteTable current, DateTimeOffset now)
    {
        if (Interlocked.Exchange(ref _resync, 0) == 1 || _sent is null) return Whole(current);
        if (!deltas) return ReferenceEquals(current, _sent) ? RouteFeedStep.Nothing : Whole(current);
        if (ReferenceEquals(current, _sent) || ReferenceEquals(current, _unchanged)) return RouteFeedStep.Nothing;
        var delta = RouteDeltas.Diff(_sent, current);
        if (RouteDeltas.IsEmpty(delta))
        {
            // Same content under a newer version: nothing to send; the next delta is still based on what the edge has.
            _unchanged = current;
            return RouteFeedStep.Nothing;
        }
        if (RouteDeltas.IsLoadOnly(delta) && now < _loadSentAt + loadInterval) return new RouteFeedStep(null, _loadSentAt + loadInterval - now);
        if (RouteDeltas.HasLoad(delta)) _loadSentAt = now;
        _sent = current;
        _unchanged = null;
        DeltasSent++;
        return new RouteFeedStep(new RouteDeltaMessage { Delta = delta }, null);
    }

    private RouteFeedStep Whole(RouteTable current)
    {
        _sent = current;
        _unchanged = null;
        TablesSent++;
        return new RouteFeedStep(new RoutesMessage { Table = current }, null);
    }
}
