namespace Shoal.Sim.Fleet;

/// <summary>Keeps latency samples (milliseconds) for percentiles; thread-safe, bounded (the newest are kept).</summary>
public sealed class LatencyRecorder(int capacity = 200_000)
{
    private readonly Lock _lock = new();
    private readonly List<double> _samples = [];

    public void Add(double ms)
    {
        lock (_lock)
        {
            if (_samples.Count >= capacity) _samples.RemoveRange(0, capacity / 10);
            _samples.Add(ms);
        }
    }

    public int Count
    {
        get
        {
            lock (_lock) return _samples.Count;
        }
    }

    /// <summary>The nearest-rank percentile of the samples kept; null when there are none.</summary>
    public double? Percentile(double p)
    {
        double[] sorted;
        lock (_lock)
        {
            if (_samples.Count == 0) return null;
            sorted = [.. _samples];
        }
        return Percentile(sorted, p);
    }

    /// <summary>The samples so far, emptying the recorder (for per-window figures).</summary>
    public double[] Drain()
    {
        lock (_lock)
        {
            var all = _samples.ToArray();
            _samples.Clear();
            return all;
        }
    }

    /// <summary>Nearest-rank percentile of <paramref name="values"/> (sorted here); null when empty.</summary>
    public static double? Percentile(double[] values, double p)
    {
        if (values.Length == 0) return null;
        Array.Sort(values);
        var rank = (int)Math.Ceiling(p / 100 * values.Length) - 1;
        return values[Math.Clamp(rank, 0, values.Length - 1)];
    }
}
