using Shoal.Core.Gateway;

namespace Shoal.Edge.Gateway;

/// <summary>
/// One budget a request must fit: whose (<see cref="Scope"/>: <c>key:ID</c> or <c>project:NAME</c>),
/// the period it counts in, its amount and the spending floor the control plane pushed (all in
/// nano-dollars, see <see cref="BudgetMoney"/>).
/// </summary>
internal sealed record BudgetScope(string Scope, BudgetWindow Window, long LimitNanos, long FloorNanos)
{
    /// <summary>The counter of this scope in this period.</summary>
    public string CounterKey => Scope + "|" + Window.Id;
}

/// <summary>A check-and-reserve's answer: admitted, or refused by scope <see cref="Refused"/> with that scope's figures.</summary>
internal readonly record struct BudgetCheck(bool Admitted, int Refused = -1, long SpentNanos = 0, long ReservedNanos = 0);

/// <summary>Where budgets' spending and reservations are counted: in this edge, or in the Redis the edges share.</summary>
internal interface IBudgetCounters
{
    /// <summary>
    /// Atomically: when every scope has <paramref name="nanos"/> left beside its spending (at least its
    /// floor) and its reservations, and is not used up, reserves <paramref name="nanos"/> in each as
    /// <paramref name="reservation"/> (unique per request); otherwise changes nothing and names the
    /// first scope that does not fit. When no answer comes (the counters did not answer, or
    /// <paramref name="ct"/> ended the wait), a reservation that may have been made is released.
    /// </summary>
    /// <exception cref="BudgetUnavailableException">The counters cannot be reached (fail closed).</exception>
    ValueTask<BudgetCheck> TryReserveAsync(BudgetScope[] scopes, string reservation, long nanos, CancellationToken ct);

    /// <summary>
    /// Releases reservation <paramref name="reservation"/> (<paramref name="reservedNanos"/>) and adds
    /// <paramref name="costNanos"/> in each scope, once: a settle sent again changes nothing more.
    /// Does not block; never throws.
    /// </summary>
    void Settle(BudgetScope[] scopes, string reservation, long reservedNanos, long costNanos);
}

/// <summary>The budget counters cannot be reached; requests under a budget are refused.</summary>
internal sealed class BudgetUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Money as the counters hold it: whole nano-dollars (10⁻⁹ USD), exact in Redis' integers and in Lua's doubles up to $9,007,199.</summary>
internal static class BudgetMoney
{
    public const decimal NanosPerUsd = 1_000_000_000m;
    private const decimal MaxUsd = 9_000_000m;

    /// <summary>Nano-dollars, rounded up (a reservation or a cost is never counted short).</summary>
    public static long ToNanos(decimal usd) => usd <= 0 ? 0 : (long)Math.Ceiling(Math.Min(usd, MaxUsd) * NanosPerUsd);

    public static decimal ToUsd(long nanos) => nanos / NanosPerUsd;
}

/// <summary>Budget counters in this edge's memory: right for one edge (several edges would each allow the whole budget).</summary>
internal sealed class LocalBudgetCounters(TimeProvider time) : IBudgetCounters
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Counter> _counters = new(StringComparer.Ordinal);
    private DateTimeOffset _nextPrune;

    // In this edge's memory an answer always comes, and a request settles once: no reservation ids needed.
    public ValueTask<BudgetCheck> TryReserveAsync(BudgetScope[] scopes, string reservation, long nanos, CancellationToken ct)
    {
        lock (_lock)
        {
            PruneLocked();
            for (var i = 0; i < scopes.Length; i++)
            {
                var scope = scopes[i];
                var counter = CounterLocked(scope);
                var spent = Math.Max(counter.Spent, scope.FloorNanos);
                if (spent >= scope.LimitNanos || spent + counter.Reserved + nanos > scope.LimitNanos)
                {
                    return ValueTask.FromResult(new BudgetCheck(false, i, spent, counter.Reserved));
                }
            }
            foreach (var scope in scopes)
            {
                var counter = CounterLocked(scope);
                counter.Spent = Math.Max(counter.Spent, scope.FloorNanos);
                counter.Reserved += nanos;
            }
        }
        return ValueTask.FromResult(new BudgetCheck(true));
    }

    public void Settle(BudgetScope[] scopes, string reservation, long reservedNanos, long costNanos)
    {
        lock (_lock)
        {
            foreach (var scope in scopes)
            {
                var counter = CounterLocked(scope);
                counter.Reserved = Math.Max(0, counter.Reserved - reservedNanos);
                counter.Spent += costNanos;
            }
        }
    }

    /// <summary>The figures of a scope's counter now (tests, diagnostics).</summary>
    public (long Spent, long Reserved) Peek(BudgetScope scope)
    {
        lock (_lock)
        {
            return _counters.TryGetValue(scope.CounterKey, out var c) ? (Math.Max(c.Spent, scope.FloorNanos), c.Reserved) : (scope.FloorNanos, 0);
        }
    }

    private Counter CounterLocked(BudgetScope scope)
    {
        if (!_counters.TryGetValue(scope.CounterKey, out var counter))
        {
            // Kept a day past the period's end, for the settles of requests admitted in it.
            _counters[scope.CounterKey] = counter = new Counter { Expires = scope.Window.End.AddDays(1) };
        }
        return counter;
    }

    private void PruneLocked()
    {
        var now = time.GetUtcNow();
        if (now < _nextPrune) return;
        _nextPrune = now.AddMinutes(10);
        foreach (var (key, counter) in _counters)
        {
            if (counter.Expires <= now) _counters.Remove(key);
        }
    }

    private sealed class Counter
    {
        public long Spent;
        public long Reserved;
        public DateTimeOffset Expires;
    }
}
