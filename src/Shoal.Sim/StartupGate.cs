namespace Shoal.Sim;

/// <summary>
/// Stands for model load: not ready until the startup delay has passed on the given clock and the
/// warm-up (if one was given, see <see cref="After"/>) has ended.
/// </summary>
public sealed class StartupGate
{
    private readonly TimeProvider _time;
    private readonly long _started;
    private readonly TimeSpan _delay;
    private volatile bool _ready;
    private volatile Task? _warmUp;

    public StartupGate(TimeProvider time, TimeSpan delay)
    {
        ArgumentNullException.ThrowIfNull(time);
        _time = time;
        _delay = delay;
        _started = time.GetTimestamp();
        _ready = delay <= TimeSpan.Zero;
    }

    /// <summary>True once the delay has passed; stays true.</summary>
    public bool IsReady
    {
        get
        {
            if (!_ready && _time.GetElapsedTime(_started) >= _delay && _warmUp is not { IsCompleted: false })
            {
                _ready = true;
            }
            return _ready;
        }
    }

    /// <summary>Keeps the gate shut until <paramref name="warmUp"/> has ended too (a real server warms up before its health check passes).</summary>
    public void After(Task warmUp)
    {
        ArgumentNullException.ThrowIfNull(warmUp);
        if (!_ready) _warmUp = warmUp;
    }
}
