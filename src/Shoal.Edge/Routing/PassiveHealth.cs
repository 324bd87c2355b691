namespace Shoal.Edge.Routing;

/// <summary>
/// Passive health: a replica that fails <see cref="EdgeOptions.EjectionThreshold"/> times in a row
/// (a refused connection counts as enough at once, and so does the first failure after an ejection)
/// is ejected from routing for a back-off that starts at <see cref="EdgeOptions.BaseEjection"/>,
/// doubles with every ejection in a row up to <see cref="EdgeOptions.MaxEjection"/>, and resets on a success.
/// </summary>
public sealed class PassiveHealth
{
    private readonly TimeProvider _time;
    private readonly RoutingSignal _signal;
    private readonly int _threshold;
    private readonly TimeSpan _base;
    private readonly TimeSpan _max;

    public PassiveHealth(EdgeOptions options, TimeProvider time, RoutingSignal signal)
    {
        _time = time;
        _signal = signal;
        _threshold = options.EjectionThreshold;
        _base = options.BaseEjection;
        _max = options.MaxEjection;
    }

    public bool IsEjected(EdgeReplica replica)
    {
        var until = Volatile.Read(ref replica._ejectedUntil);
        return until != 0 && _time.GetTimestamp() < until;
    }

    /// <summary>Time left of the replica's ejection, zero when it is routable.</summary>
    public TimeSpan EjectedFor(EdgeReplica replica)
    {
        var until = Volatile.Read(ref replica._ejectedUntil);
        if (until == 0) return TimeSpan.Zero;
        var left = _time.GetElapsedTime(_time.GetTimestamp(), until);
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    public void ReportSuccess(EdgeReplica replica)
    {
        // Read first: writing shared fields on every success would bounce the cache line between cores.
        if (Volatile.Read(ref replica._consecutiveFailures) != 0) Volatile.Write(ref replica._consecutiveFailures, 0);
        if (Volatile.Read(ref replica._ejectionLevel) != 0) Volatile.Write(ref replica._ejectionLevel, 0);
    }

    /// <summary>Counts a failure; returns true when it ejected the replica.</summary>
    public bool ReportFailure(EdgeReplica replica, bool connectionRefused)
    {
        var failures = Interlocked.Increment(ref replica._consecutiveFailures);
        var probation = Volatile.Read(ref replica._ejectionLevel) > 0;
        if (!connectionRefused && !probation && failures < _threshold) return false;

        TimeSpan period;
        lock (replica)
        {
            var now = _time.GetTimestamp();
            var until = replica._ejectedUntil;
            if (until != 0 && now < until) return false; // already out; failures of requests sent before it count once
            var level = Math.Min(replica._ejectionLevel, 30);
            var ticks = Math.Min(_base.Ticks << Math.Min(level, 20), _max.Ticks);
            period = TimeSpan.FromTicks(ticks);
            replica._ejectionLevel = level + 1;
            Volatile.Write(ref replica._consecutiveFailures, 0);
            Volatile.Write(ref replica._ejectedUntil, now + (long)(period.TotalSeconds * _time.TimestampFrequency));
            replica._ejections++;
        }
        _ = WakeAfterAsync(period);
        return true;
    }

    private async Task WakeAfterAsync(TimeSpan period)
    {
        await Task.Delay(period, _time);
        _signal.Fire();
    }
}
