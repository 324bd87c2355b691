using System.Collections.Concurrent;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The gateway's counters in this edge's memory: for each scope a log of admission times (RPM), of
/// token reservations (TPM) and the concurrency leases. Exact sliding windows: a request at time t
/// counts what was admitted after t − 60 s, so no 60 s span ever holds more than the limit. A request
/// locks its key's scope, then its project's (always in that order), checks both and counts both.
/// </summary>
public sealed class LocalRateCounters : IRateCounters
{
    private const int SweepAbove = 10_000;
    private readonly TimeProvider _time;
    private readonly long _windowMs;
    private readonly long _leaseMs;
    private readonly ConcurrentDictionary<string, ScopeState> _scopes = new(StringComparer.Ordinal);

    public LocalRateCounters(TimeProvider time, TimeSpan? lease = null)
    {
        _time = time;
        _windowMs = (long)RateLimitWindows.Window.TotalMilliseconds;
        _leaseMs = (long)(lease ?? RateLimitWindows.DefaultLease).TotalMilliseconds;
    }

    /// <summary>Scopes with state (for tests and sweeping).</summary>
    public int ScopeCount => _scopes.Count;

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
        if (_scopes.Count > SweepAbove) Sweep();
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var key = request.Key is null ? null : _scopes.GetOrAdd(request.Key.Id, static _ => new ScopeState());
        var project = request.Project is null ? null : _scopes.GetOrAdd(request.Project.Id, static _ => new ScopeState());
        // Key first, then project: one order everywhere, so two requests never wait on each other.
        key?.Gate.Enter();
        try
        {
            project?.Gate.Enter();
            try
            {
                key?.Trim(now - _windowMs, now);
                project?.Trim(now - _windowMs, now);
                if (!force)
                {
                    if (Check(key, request.Key, request, edges, now, requestsFullUntil) is { } refusedByKey) return refusedByKey;
                    if (Check(project, request.Project, request, edges, now, requestsFullUntil) is { } refusedByProject) return refusedByProject;
                }
                key?.Add(request, now, now + _leaseMs);
                project?.Add(request, now, now + _leaseMs);
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

    public void Settle(LimitRequest request, long usedTokens)
    {
        ArgumentNullException.ThrowIfNull(request);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var scope in request.Scopes)
        {
            if (!_scopes.TryGetValue(scope.Id, out var state)) continue;
            lock (state.Gate)
            {
                state.Trim(now - _windowMs, now);
                state.Settle(request, usedTokens, now, scope.Limits.TokensPerMinute is not null);
            }
        }
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
            if (state.Requests.Count + 1 > limit)
            {
                var retry = TimeSpan.FromMilliseconds(Math.Max(1, state.Requests.Peek() + _windowMs - now));
                return Refusal(LimitKind.Requests, scope, limit, retry);
            }
        }
        if (limits.TokensPerMinute is { } tpm)
        {
            var limit = RateLimitWindows.Share(tpm, edges);
            if (request.Tokens > limit) return Refusal(LimitKind.Tokens, scope, limit, null) with { NeverFits = true };
            if (state.TokenSum + request.Tokens > limit)
            {
                // When enough of the window's reservations will have left it for this one to fit.
                var excess = state.TokenSum + request.Tokens - limit;
                var at = now;
                foreach (var entry in state.Tokens)
                {
                    excess -= entry.Tokens;
                    at = entry.At;
                    if (excess <= 0) break;
                }
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
            var reset = state.Requests.Count == 0 ? 0 : state.Requests.Peek() + _windowMs - now;
            return new LimitFigures(limit, Math.Max(0, limit - state.Requests.Count), TimeSpan.FromMilliseconds(Math.Max(0, reset)));
        }
        if (kind == LimitKind.Tokens && scope.Limits.TokensPerMinute is { } tpm)
        {
            var limit = RateLimitWindows.Share(tpm, edges);
            var reset = state.Tokens.Count == 0 ? 0 : state.Tokens.Peek().At + _windowMs - now;
            return new LimitFigures(limit, Math.Max(0, limit - state.TokenSum), TimeSpan.FromMilliseconds(Math.Max(0, reset)));
        }
        return null;
    }

    /// <summary>Drops scopes with nothing in their windows and no leases.</summary>
    private void Sweep()
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var (id, state) in _scopes)
        {
            lock (state.Gate)
            {
                state.Trim(now - _windowMs, now);
                if (state.IsEmpty) _scopes.TryRemove(new KeyValuePair<string, ScopeState>(id, state));
            }
        }
    }

    private sealed class TokenEntry(string id, long at, long tokens)
    {
        public string Id { get; } = id;
        public long At { get; } = at;
        public long Tokens { get; set; } = tokens;
    }

    /// <summary>One scope's windows; every access holds <see cref="Gate"/>.</summary>
    private sealed class ScopeState
    {
        public Lock Gate { get; } = new();
        /// <summary>Admission times (ms), oldest first.</summary>
        public Queue<long> Requests { get; } = new();
        /// <summary>Token reservations in the window, oldest first; <see cref="TokensById"/> finds one to settle.</summary>
        public Queue<TokenEntry> Tokens { get; } = new();
        public Dictionary<string, TokenEntry> TokensById { get; } = new(StringComparer.Ordinal);
        public long TokenSum { get; private set; }
        /// <summary>Request id → when its concurrency slot expires (ms).</summary>
        public Dictionary<string, long> Leases { get; } = new(StringComparer.Ordinal);

        public bool IsEmpty => Requests.Count == 0 && Tokens.Count == 0 && Leases.Count == 0;

        public void Trim(long cutoff, long now)
        {
            while (Requests.Count > 0 && Requests.Peek() <= cutoff) Requests.Dequeue();
            while (Tokens.Count > 0 && Tokens.Peek().At <= cutoff)
            {
                var old = Tokens.Dequeue();
                TokenSum -= old.Tokens;
                if (TokensById.TryGetValue(old.Id, out var current) && ReferenceEquals(current, old)) TokensById.Remove(old.Id);
            }
            if (Leases.Count > 0)
            {
                foreach (var (id, expires) in Leases)
                {
                    if (expires <= now) Leases.Remove(id);
                }
            }
        }

        public void Add(LimitRequest request, long now, long leaseUntil)
        {
            Requests.Enqueue(now);
            if (request.Tokens > 0)
            {
                var entry = new TokenEntry(request.Id, now, request.Tokens);
                Tokens.Enqueue(entry);
                TokensById[request.Id] = entry;
                TokenSum += request.Tokens;
            }
            Leases[request.Id] = leaseUntil;
        }

        public void Settle(LimitRequest request, long used, long now, bool countsTokens)
        {
            Leases.Remove(request.Id);
            used = Math.Max(0, used);
            if (TokensById.TryGetValue(request.Id, out var entry))
            {
                // Still in the window: the reservation becomes what was used.
                TokenSum += used - entry.Tokens;
                entry.Tokens = used;
            }
            else if (countsTokens && used > request.Tokens)
            {
                // Out of the window already (a long request): what it used beyond its reservation counts now.
                var extra = new TokenEntry(request.Id + ":over", now, used - request.Tokens);
                Tokens.Enqueue(extra);
                TokenSum += extra.Tokens;
            }
        }
    }
}
