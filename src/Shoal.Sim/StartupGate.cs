namespace Shoal.Sim;

/// <summary>Stands for model load: not ready until the startup delay has passed on the given clock.</summary>
public sealed class StartupGate
{
    private readonly TimeProvider _time;
    private readonly long _started;
    private readonly TimeSpan _delay;
    private volatile bool _ready;

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
            if (!_ready && _time.GetElapsedTime(_started) >= _delay)
            {
                _ready = true;
            }
            return _ready;
        }
    }
}
