using System.Collections.Concurrent;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The gateway's counters in this edge's memory: for each scope a log of admission times (RPM), of
/// token reservations (TPM) and the concurrency leases. Exact sliding windows: a request at time t
/// counts what was admitted after t − 60 s, so no 60 s span ever holds more than the limit. A request
/// locks its key's scope, then its project's (always in that order), checks both and counts both.
/// </summary>
/// <remarks>
/// Cheap on the request path: the logs hold one entry per millisecond (admissions and reservations
/// of the same millisecond are summed, which the windows' millisecond resolution cannot tell apart) in
/// arrays reused as rings, so a busy key's minute of traffic is two arrays of numbers rather than an
/// object and a dictionary entry per request kept for 60 s (which the GC had to carry). A request
/// finds its own reservation again by its entry's place in the log, kept on the <see cref="LimitRequest"/>.
/// </remarks>
public sealed class LocalRateCounters : IRateCounters
{
    private const int SweepAbove = 10_000;
    private readonly TimeProvider _time;
    private readonly long _windowMs;
    private readonly long _leaseMs;
    private readonly ConcurrentDictionary<string, ScopeState> _scopes = new(StringComparer.Ordinal);
    // Scopes in _scopes, kept here: ConcurrentDictionary.Count takes every lock of the dictionary.
    private int _scopeCount;
    private long _nextSweep;

    public LocalRateCounters(TimeProvider time, TimeSpan? lease = null)
    {
        _time = time;
        _windowMs = (long)RateLimitWindows.Window.TotalMilliseconds;
        _leaseMs = (long)(lease ?? RateLimitWindows.DefaultLease).TotalMilliseconds;
    }

    /// <summary>Scopes with state (for tests and sweeping).</summary>
    public int ScopeCount => Volatile.Read(ref _scopeCount);

    public ValueTask<LimitDecision> AcquireAsync(LimitRequest request, CancellationToken ct) => ValueTask.FromResult(Acquire(request, 1, force: false));

    /// <summary>
    /// Checks the request against each limit divided by <paramref name="edges"/> and counts it when it
    /// fits; with <paramref name="force"/>, counts it without checking (a request the shared counters
    /// admitted, so this edge's share knows its own recent traffic).
    /// </summary>
    /// <param name="requestsFullUntil">Scopes whose request window the shared counters last saw full, and until when (ms): refused until then whatever the share says.</param>
    public LimitDecision Acquire(LimitRequest request, int edges, bool force, IReadOnlyDictionary<string, long>? requestsFullUntil = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        if (Volatile.Read(ref _scopeCount) > SweepAbove && now >= Volatile.Read(ref _nextSweep)) Sweep(now);
        while (true)
        {
            var key = request.Key is null ? null : StateOf(request.Key.Id);
            var project = request.Project is null ? null : StateOf(request.Project.Id);
            // Key first, then project: one order everywhere, so two requests never wait on each other.
            key?.Gate.Enter();
            try
            {
                project?.Gate.Enter();
                try
                {
                    // Swept away between finding and locking it: find it (or its successor) again.
                    if (key is { Removed: true } || project is { Removed: true }) continue;
                    key?.Trim(now - _windowMs, now);
                    project?.Trim(now - _windowMs, now);
                    if (!force)
                    {
                        if (Check(key, request.Key, request, edges, now, requestsFullUntil) is { } refusedByKey) return refusedByKey;
                        if (Check(project, request.Project, request, edges, now, requestsFullUntil) is { } refusedByProject) return refusedByProject;
                    }
                    request.CountedTokens = request.Tokens;
                    request.KeyState = key;
                    request.ProjectState = project;
                    if (key is not null) request.KeyEntry = key.Add(request, now, now + _leaseMs);
                    if (project is not null) request.ProjectEntry = project.Add(request, now, now + _leaseMs);
                    return new LimitDecision(true, LimitKind.None, null, 0, null,
                        Tightest(key, request.Key, edges, now, LimitKind.Requests, project, request.Project),
                        Tightest(key, request.Key, edges, now, LimitKind.Tokens, project, request.Project));
                }
                finally
                {
                    project?.Gate.Exit();
                }
            }
            finally
            {
                key?.Gate.Exit();
            }
        }
    }

    public void Settle(LimitRequest request, long usedTokens)
    {
        ArgumentNullException.ThrowIfNull(request);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        SettleIn(request.Key, request.KeyState as ScopeState, request.KeyEntry);
        SettleIn(request.Project, request.ProjectState as ScopeState, request.ProjectEntry);
        // A second settle of the same request changes nothing more.
        request.CountedTokens = Math.Max(0, usedTokens);

        void SettleIn(LimitScope? scope, ScopeState? counted, long entry)
        {
            if (scope is null) return;
            // In the scope's state it was counted in; when that was swept (its lease and window long
            // gone), in the scope's state now, where its reservation is no longer in the window.
            if (counted is not null)
            {
                lock (counted.Gate)
                {
                    if (!counted.Removed)
                    {
                        counted.Trim(now - _windowMs, now);
                        counted.Settle(request, entry, usedTokens, now, scope.Limits.TokensPerMinute is not null);
                        return;
                    }
                }
            }
            if (!_scopes.TryGetValue(scope.Id, out var state)) return;
            lock (state.Gate)
            {
                state.Trim(now - _windowMs, now);
                state.Settle(request, -1, usedTokens, now, scope.Limits.TokensPerMinute is not null);
            }
        }
    }

    private ScopeState StateOf(string id)
    {
        if (_scopes.TryGetValue(id, out var state)) return state;
        var created = new ScopeState();
        state = _scopes.GetOrAdd(id, created);
        if (ReferenceEquals(state, created)) Interlocked.Increment(ref _scopeCount);
        return state;
    }

    private LimitDecision? Check(ScopeState? state, LimitScope? scope, LimitRequest request, int edges, long now, IReadOnlyDictionary<string, long>? requestsFullUntil)
    {
        if (state is null || scope is null) return null;
        var limits = scope.Limits;
        if (limits.RequestsPerMinute is { } rpm)
        {
            var limit = RateLimitWindows.Share(rpm, edges);
            if (requestsFullUntil is not null && requestsFullUntil.TryGetValue(scope.Id, out var until) && until > now)
            {
                return Refusal(LimitKind.Requests, scope, limit, TimeSpan.FromMilliseconds(until - now));
            }
            if (state.Requests.Sum + 1 > limit)
            {
                var retry = TimeSpan.FromMilliseconds(Math.Max(1, state.Requests.OldestAt + _windowMs - now));
                return Refusal(LimitKind.Requests, scope, limit, retry);
            }
        }
        if (limits.TokensPerMinute is { } tpm)
        {
            var limit = RateLimitWindows.Share(tpm, edges);
            if (request.Tokens > limit) return Refusal(LimitKind.Tokens, scope, limit, null) with { NeverFits = true };
            if (state.Tokens.Sum + request.Tokens > limit)
            {
                // When enough of the window's reservations will have left it for this one to fit.
                var at = state.Tokens.FreedAt(state.Tokens.Sum + request.Tokens - limit, now);
                return Refusal(LimitKind.Tokens, scope, limit, TimeSpan.FromMilliseconds(Math.Max(1, at + _windowMs - now)));
            }
        }
        if (limits.MaxConcurrent is { } max)
        {
            var limit = RateLimitWindows.Share(max, edges);
            if (state.Leases.Count + 1 > limit) return Refusal(LimitKind.Concurrency, scope, limit, TimeSpan.FromSeconds(1));
        }
        return null;

        LimitDecision Refusal(LimitKind kind, LimitScope refused, long limit, TimeSpan? retry) =>
            new(false, kind, refused, limit, retry,
                Tightest(state, scope, edges, now, LimitKind.Requests, null, null),
                Tightest(state, scope, edges, now, LimitKind.Tokens, null, null));
    }

    private LimitFigures? Tightest(ScopeState? a, LimitScope? aScope, int edges, long now, LimitKind kind, ScopeState? b, LimitScope? bScope)
    {
        var first = Figures(a, aScope, edges, now, kind);
        var second = Figures(b, bScope, edges, now, kind);
        if (first is null) return second;
        if (second is null) return first;
        return second.Value.Remaining < first.Value.Remaining ? second : first;
    }

    private LimitFigures? Figures(ScopeState? state, LimitScope? scope, int edges, long now, LimitKind kind)
    {
        if (state is null || scope is null) return null;
        if (kind == LimitKind.Requests && scope.Limits.RequestsPerMinute is { } rpm)
        {
            var limit = RateLimitWindows.Share(rpm, edges);
            var reset = state.Requests.Count == 0 ? 0 : state.Requests.OldestAt + _windowMs - now;
            return new LimitFigures(limit, Math.Max(0, limit - state.Requests.Sum), TimeSpan.FromMilliseconds(Math.Max(0, reset)));
        }
        if (kind == LimitKind.Tokens && scope.Limits.TokensPerMinute is { } tpm)
        {
            var limit = RateLimitWindows.Share(tpm, edges);
            var reset = state.Tokens.Count == 0 ? 0 : state.Tokens.OldestAt + _windowMs - now;
            return new LimitFigures(limit, Math.Max(0, limit - state.Tokens.Sum), TimeSpan.FromMilliseconds(Math.Max(0, reset)));
        }
        return null;
    }

    /// <summary>Drops scopes with nothing in their windows and no leases (at most once a second).</summary>
    private void Sweep(long now)
    {
        Volatile.Write(ref _nextSweep, now + 1000);
        foreach (var (id, state) in _scopes)
        {
            lock (state.Gate)
            {
                state.Trim(now - _windowMs, now);
                if (!state.IsEmpty || !_scopes.TryRemove(new KeyValuePair<string, ScopeState>(id, state))) continue;
                state.Removed = true;
                Interlocked.Decrement(ref _scopeCount);
            }
        }
    }

    /// <summary>
    /// Amounts by time (ms), oldest first, in a ring of two arrays: an entry per millisecond (what is
    /// added at or before the newest entry's time joins it), each with a sequence number that stays
    /// its own while it is in the log. Not thread-safe (its scope's lock guards it).
    /// </summary>
    internal sealed class TimeLog
    {
        private long[] _at = new long[16];
        private long[] _amount = new long[16];
        private int _head;
        // Sequence number of the entry at _head.
        private long _headSequence;

        /// <summary>Entries in the log.</summary>
        public int Count { get; private set; }

        /// <summary>The amounts in the log, together.</summary>
        public long Sum { get; private set; }

        /// <summary>Time of the oldest entry; only while <see cref="Count"/> &gt; 0.</summary>
        public long OldestAt => _at[_head];

        /// <summary>Adds <paramref name="amount"/> at <paramref name="at"/>; returns its entry's sequence number.</summary>
        public long Add(long at, long amount)
        {
            Sum += amount;
            if (Count > 0)
            {
                var last = Slot(Count - 1);
                // The same millisecond (or a clock that went back): the newest entry takes it; it leaves the window no earlier.
                if (at <= _at[last])
                {
                    _amount[last] += amount;
                    return _headSequence + Count - 1;
                }
            }
            if (Count == _at.Length) Grow();
            var slot = Slot(Count);
            _at[slot] = at;
            _amount[slot] = amount;
            Count++;
            return _headSequence + Count - 1;
        }

        /// <summary>Drops the entries at or before <paramref name="cutoff"/>.</summary>
        public void Trim(long cutoff)
        {
            while (Count > 0 && _at[_head] <= cutoff)
            {
                Sum -= _amount[_head];
                _head = (_head + 1) & (_at.Length - 1);
                _headSequence++;
                Count--;
            }
            if (Count == 0) Sum = 0;
        }

        /// <summary>Adds <paramref name="delta"/> to entry <paramref name="sequence"/>; false when it has left the log.</summary>
        public bool Adjust(long sequence, long delta)
        {
            if (sequence < _headSequence || sequence >= _headSequence + Count) return false;
            _amount[Slot((int)(sequence - _headSequence))] += delta;
            Sum += delta;
            return true;
        }

        /// <summary>The time of the entry with which, oldest first, at least <paramref name="excess"/> has left; the newest entry's when never, <paramref name="now"/> when empty.</summary>
        public long FreedAt(long excess, long now)
        {
            var at = now;
            for (var i = 0; i < Count; i++)
            {
                var slot = Slot(i);
                excess -= _amount[slot];
                at = _at[slot];
                if (excess <= 0) break;
            }
            return at;
        }

        private int Slot(int index) => (_head + index) & (_at.Length - 1);

        private void Grow()
        {
            var at = new long[_at.Length * 2];
            var amount = new long[_at.Length * 2];
            for (var i = 0; i < Count; i++)
            {
                at[i] = _at[Slot(i)];
                amount[i] = _amount[Slot(i)];
            }
            _at = at;
            _amount = amount;
            _head = 0;
        }
    }

    /// <summary>One scope's windows; every access holds <see cref="Gate"/>.</summary>
    private sealed class ScopeState
    {
        public Lock Gate { get; } = new();
        /// <summary>Admissions by time (ms), oldest first.</summary>
        public TimeLog Requests { get; } = new();
        /// <summary>Token reservations by time (ms), oldest first.</summary>
        public TimeLog Tokens { get; } = new();
        /// <summary>Requests in flight → when their concurrency slot expires (ms).</summary>
        public Dictionary<LimitRequest, long> Leases { get; } = new(ReferenceEqualityComparer.Instance);
        // No lease expires before this (ms): the leases are looked through only from then on.
        private long _leasesCheckedUntil = long.MaxValue;

        /// <summary>Swept out of the counters: requests must find the scope's state again.</summary>
        public bool Removed { get; set; }

        public bool IsEmpty => Requests.Count == 0 && Tokens.Count == 0 && Leases.Count == 0;

        public void Trim(long cutoff, long now)
        {
            Requests.Trim(cutoff);
            Tokens.Trim(cutoff);
            if (Leases.Count == 0 || now < _leasesCheckedUntil) return;
            var next = long.MaxValue;
            foreach (var (request, expires) in Leases)
            {
                if (expires <= now) Leases.Remove(request);
                else next = Math.Min(next, expires);
            }
            _leasesCheckedUntil = next;
        }

        /// <summary>Counts the request; returns its token entry's sequence number (-1 when it reserved none).</summary>
        public long Add(LimitRequest request, long now, long leaseUntil)
        {
            Requests.Add(now, 1);
            Leases[request] = leaseUntil;
            _leasesCheckedUntil = Math.Min(_leasesCheckedUntil, leaseUntil);
            return request.Tokens > 0 ? Tokens.Add(now, request.Tokens) : -1;
        }

        public void Settle(LimitRequest request, long entry, long used, long now, bool countsTokens)
        {
            Leases.Remove(request);
            used = Math.Max(0, used);
            // Still in the window: the reservation (or what an earlier settle made it) becomes what was used.
            if (entry >= 0 && Tokens.Adjust(entry, used - request.CountedTokens)) return;
            // Out of the window already (a long request): what it used beyond its reservation counts now.
            if (countsTokens && used > request.CountedTokens) Tokens.Add(now, used - request.CountedTokens);
        }
    }
}
