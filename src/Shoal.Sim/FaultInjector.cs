namespace Shoal.Sim;

/// <summary>What failure injection decided for one request.</summary>
public enum Fault
{
    None,
    Error,
    Hang,
}

/// <summary>
/// Seeded failure injection: each request draws once to be answered normally, with a 500, or never;
/// and the process crashes once a set number of requests have been answered.
/// </summary>
public sealed class FaultInjector
{
    private readonly Lock _lock = new();
    private readonly Random _random;
    private readonly double _errorRate;
    private readonly double _hangRate;
    private readonly int? _crashAfter;
    private int _requests;

    public FaultInjector(int seed, double errorRate, double hangRate, int? crashAfter)
    {
        _random = new Random(seed);
        _errorRate = errorRate;
        _hangRate = hangRate;
        _crashAfter = crashAfter;
    }

    /// <summary>Completion requests counted so far.</summary>
    public int Requests => Volatile.Read(ref _requests);

    /// <summary>Decides the fate of the next request.</summary>
    public Fault Next()
    {
        if (_errorRate <= 0 && _hangRate <= 0)
        {
            return Fault.None;
        }
        double draw;
        lock (_lock)
        {
            draw = _random.NextDouble();
        }
        return draw < _errorRate ? Fault.Error : draw < _errorRate + _hangRate ? Fault.Hang : Fault.None;
    }

    /// <summary>Counts one request; true for exactly the request after which the process must crash.</summary>
    public bool CountRequest()
    {
        var n = Interlocked.Increment(ref _requests);
        return _crashAfter is { } limit && n == limit;
    }
}
