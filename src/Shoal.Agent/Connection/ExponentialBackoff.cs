namespace Shoal.Agent.Connection;

/// <summary>
/// Delays that double from <c>min</c> to <c>max</c>. With jitter <c>j</c>, each delay is drawn
/// from <c>[d·(1−j), d]</c>, so agents that lost the same server do not all come back at once.
/// </summary>
public sealed class ExponentialBackoff
{
    private readonly TimeSpan _min;
    private readonly TimeSpan _max;
    private readonly double _jitter;
    private readonly Func<double> _random;
    private int _attempt;

    /// <param name="min">First delay.</param>
    /// <param name="max">Largest delay.</param>
    /// <param name="jitter">Fraction of each delay that is random, 0 to 1.</param>
    /// <param name="random">Uniform source in [0, 1); <see cref="Random.Shared"/> by default.</param>
    public ExponentialBackoff(TimeSpan min, TimeSpan max, double jitter = 0, Func<double>? random = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(min, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, min);
        ArgumentOutOfRangeException.ThrowIfLessThan(jitter, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(jitter, 1);
        _min = min;
        _max = max;
        _jitter = jitter;
        _random = random ?? Random.Shared.NextDouble;
    }

    /// <summary>Delays handed out since the last <see cref="Reset"/>.</summary>
    public int Attempt => _attempt;

    /// <summary>The next delay; each call doubles the base until it reaches the maximum.</summary>
    public TimeSpan Next()
    {
        var exponent = Math.Min(_attempt, 30);
        _attempt++;
        var ticks = Math.Min((double)_max.Ticks, _min.Ticks * Math.Pow(2, exponent));
        return Jittered(ticks);
    }

    /// <summary>A delay at the maximum interval (with jitter), without changing the sequence.</summary>
    public TimeSpan AtMax() => Jittered(_max.Ticks);

    /// <summary>Starts again from the minimum, after a success.</summary>
    public void Reset() => _attempt = 0;

    private TimeSpan Jittered(double ticks) =>
        TimeSpan.FromTicks((long)(ticks * (1 - (_jitter * _random()))));
}
