using System.Collections.Concurrent;
using Shoal.Contracts;
using StackExchange.Redis;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The gateway's counters shared by every edge through one Redis (<c>--redis</c>): per scope a sorted
/// set of admission times (RPM), one of token reservations with their amounts in a hash (TPM), and
/// one of concurrency leases scored by expiry; one Lua script checks and counts a request across its
/// key and project atomically, another settles it. Times are the edges' clocks (keep them in sync),
/// moved forward per scope to the latest one Redis has seen, so a script that reaches Redis late runs at
/// that time: the windows only move forward, and entries are scored in the order Redis ran them.
/// <para>
/// A request is admitted only on Redis' answer while Redis is reachable, so every admission is in the
/// shared count and no 60 s window of the shared count ever holds more than the limit. <b>Unreachable</b>
/// (the connection is down, or drops during the call) is the only case where this edge decides alone,
/// on its share of each limit (limit ÷ edges, the edges counted by a registration in Redis with a TTL;
/// the last count known is kept), counted in <see cref="Fallbacks"/>; the shared counters are used again
/// as soon as Redis answers. <b>Slow or failing while connected</b> (no answer within
/// <see cref="GatewayRedis.AnswerTimeout"/>, 5 s by default, or an error answer): that request is refused
/// (429, <see cref="LimitDecision.Unanswered"/>, counted in <see cref="Unanswered"/>), never admitted on the
/// share, since the other edges may still be counting in Redis. A Redis that hangs is dropped by
/// StackExchange.Redis after several timeouts without a byte read, and then counts as unreachable.
/// </para>
/// <para>
/// A script that timed out here may still run in Redis later: it then counts a request this edge refused
/// (the safe direction); its concurrency lease and token reservation are released right after by a settle
/// of 0 tokens, sent behind it on the same connection. The reverse (admitted here, not counted in Redis
/// while it is reachable) cannot happen. This edge's own admissions are mirrored locally, so its share
/// knows what it admitted just before Redis went away; and a scope whose request window Redis last
/// said was full stays refused on the share until that window frees a slot.
/// </para>
/// </summary>
public sealed partial class RedisRateCounters : IRateCounters, IAsyncDisposable
{
    /// <summary>How often an edge renews its registration, and how long the registration lives.</summary>
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan RegistrationTtl = TimeSpan.FromSeconds(15);
    private const string Prefix = "shoal:gw:";
    private const string EdgesKey = Prefix + "edges";

    // KEYS: per scope s (0 key, 1 project): requests, tokens, token amounts, leases, latest time.
    // ARGV: now, window, id, tokens, lease-until, then per scope rpm, tpm, max-concurrent (0: none).
    // Returns {admitted, kind (1 requests, 2 tokens, 3 concurrency), scope, retry ms (-1: never fits), limit,
    //          then per scope: requests in window, oldest request, tokens in window, oldest reservation}.
    // Time only moves forward per scope: a script whose edge took its time before the latest one seen (a
    // call delayed on its way, a clock behind) runs at that latest time, so nothing it should count has
    // been trimmed by a later script, and every entry is scored in the order Redis ran the scripts. A
    // latest time more than a window ahead (a clock far off) is not followed, so one edge's clock jumping
    // ahead cannot stop the others' windows from sliding. (0 - gone, not -gone: reservations settled to
    // 0 tokens leave as 0, and Lua's -0 reaches Redis as "-0", which HINCRBY refuses.)
    private const string AcquireScript = """
        local now = tonumber(ARGV[1])
        local window = tonumber(ARGV[2])
        local function limited(s) return ARGV[6 + s * 3] ~= '0' or ARGV[7 + s * 3] ~= '0' or ARGV[8 + s * 3] ~= '0' end
        for s = 0, 1 do
          if limited(s) then
            local last = tonumber(redis.call('GET', KEYS[5 + s * 5]) or '0')
            if last > now and last - now <= window then now = last end
          end
        end
        for s = 0, 1 do
          if limited(s) then redis.call('SET', KEYS[5 + s * 5], now, 'PX', window * 2) end
        end
        local id = ARGV[3]
        local tokens = tonumber(ARGV[4])
        local leaseUntil = tonumber(ARGV[5])
        local cutoff = now - window
        local figs = {0, 0, 0, 0, 0, 0, 0, 0}
        local function refuse(kind, s, retry, limit)
          local out = {0, kind, s, retry, limit}
          for i = 1, 8 do out[5 + i] = figs[i] end
          return out
        end
        for s = 0, 1 do
          local rpm = tonumber(ARGV[6 + s * 3])
          local tpm = tonumber(ARGV[7 + s * 3])
          local conc = tonumber(ARGV[8 + s * 3])
          local rk, tk, ak, ck = KEYS[1 + s * 5], KEYS[2 + s * 5], KEYS[3 + s * 5], KEYS[4 + s * 5]
          if rpm > 0 then
            redis.call('ZREMRANGEBYSCORE', rk, '-inf', cutoff)
            local n = redis.call('ZCARD', rk)
            figs[1 + s * 4] = n
            if n > 0 then figs[2 + s * 4] = tonumber(redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')[2]) end
            if n + 1 > rpm then return refuse(1, s, figs[2 + s * 4] + window - now, rpm) end
          end
          if tpm > 0 then
            while true do
              local old = redis.call('ZRANGEBYSCORE', tk, '-inf', cutoff, 'LIMIT', 0, 500)
              if #old == 0 then break end
              local amounts = redis.call('HMGET', ak, unpack(old))
              local gone = 0
              for i = 1, #amounts do gone = gone + (tonumber(amounts[i]) or 0) end
              redis.call('HDEL', ak, unpack(old))
              redis.call('ZREM', tk, unpack(old))
              redis.call('HINCRBY', ak, '#sum', 0 - gone)
            end
            local sum = tonumber(redis.call('HGET', ak, '#sum')) or 0
            figs[3 + s * 4] = sum
            local first = redis.call('ZRANGE', tk, 0, 0, 'WITHSCORES')
            if #first > 0 then figs[4 + s * 4] = tonumber(first[2]) end
            if tokens > tpm then return refuse(2, s, -1, tpm) end
            if sum + tokens > tpm then
              local excess = sum + tokens - tpm
              local at = now
              local entries = redis.call('ZRANGE', tk, 0, -1, 'WITHSCORES')
              for i = 1, #entries, 2 do
                excess = excess - (tonumber(redis.call('HGET', ak, entries[i])) or 0)
                at = tonumber(entries[i + 1])
                if excess <= 0 then break end
              end
              return refuse(2, s, at + window - now, tpm)
            end
          end
          if conc > 0 then
            redis.call('ZREMRANGEBYSCORE', ck, '-inf', now)
            if redis.call('ZCARD', ck) + 1 > conc then return refuse(3, s, 1000, conc) end
          end
        end
        local out = {1, 0, -1, 0, 0}
        for s = 0, 1 do
          local rpm = tonumber(ARGV[6 + s * 3])
          local tpm = tonumber(ARGV[7 + s * 3])
          local conc = tonumber(ARGV[8 + s * 3])
          local rk, tk, ak, ck = KEYS[1 + s * 5], KEYS[2 + s * 5], KEYS[3 + s * 5], KEYS[4 + s * 5]
          if rpm > 0 then
            redis.call('ZADD', rk, now, id)
            redis.call('PEXPIRE', rk, window + 1000)
            figs[1 + s * 4] = figs[1 + s * 4] + 1
            if figs[2 + s * 4] == 0 then figs[2 + s * 4] = now end
          end
          if tpm > 0 and tokens > 0 then
            redis.call('ZADD', tk, now, id)
            redis.call('HSET', ak, id, tokens)
            redis.call('HINCRBY', ak, '#sum', tokens)
            redis.call('PEXPIRE', tk, window * 2)
            redis.call('PEXPIRE', ak, window * 2)
            figs[3 + s * 4] = figs[3 + s * 4] + tokens
            if figs[4 + s * 4] == 0 then figs[4 + s * 4] = now end
          end
          if conc > 0 then
            redis.call('ZADD', ck, leaseUntil, id)
            redis.call('PEXPIRE', ck, leaseUntil - now + 1000)
          end
        end
        for i = 1, 8 do out[5 + i] = figs[i] end
        return out
        """;

    // KEYS: per scope: tokens, token amounts, leases, latest time. ARGV: now, window, id, used, reserved, then per scope: counts tokens (1/0).
    private const string SettleScript = """
        local now = tonumber(ARGV[1])
        local window = tonumber(ARGV[2])
        local id = ARGV[3]
        local used = tonumber(ARGV[4])
        local reserved = tonumber(ARGV[5])
        for s = 0, 1 do
          local last = tonumber(redis.call('GET', KEYS[4 + s * 4]) or '0')
          if last > now and last - now <= window then now = last end
        end
        for s = 0, 1 do
          local tk, ak, ck = KEYS[1 + s * 4], KEYS[2 + s * 4], KEYS[3 + s * 4]
          redis.call('ZREM', ck, id)
          if ARGV[6 + s] == '1' then
            local old = redis.call('HGET', ak, id)
            local at = redis.call('ZSCORE', tk, id)
            if old and at and tonumber(at) > now - window then
              redis.call('HSET', ak, id, used)
              redis.call('HINCRBY', ak, '#sum', used - tonumber(old))
            elseif used > reserved then
              local over = id .. ':over'
              redis.call('ZADD', tk, now, over)
              redis.call('HSET', ak, over, used - reserved)
              redis.call('HINCRBY', ak, '#sum', used - reserved)
              redis.call('PEXPIRE', tk, window * 2)
              redis.call('PEXPIRE', ak, window * 2)
            end
          end
        end
        return 1
        """;

    // KEYS: the edges' set. ARGV: now, ttl, this edge. Returns the edges registered now.
    private const string RegisterScript = """
        redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[3])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
        return redis.call('ZCARD', KEYS[1])
        """;

    private static readonly RedisKey[] s_noScope = [Prefix + "-:r", Prefix + "-:t", Prefix + "-:a", Prefix + "-:c", Prefix + "-:n"];

    private readonly GatewayRedis _redis;
    private readonly TimeProvider _time;
    private readonly ILogger<RedisRateCounters> _logger;
    private readonly LocalRateCounters _local;
    private readonly long _windowMs;
    private readonly long _leaseMs;
    private readonly ITimer _heartbeat;
    // Scope → until when (ms) the shared request window was full when Redis last answered: a fallback refuses it until then.
    private readonly ConcurrentDictionary<string, long> _requestsFullUntil = new(StringComparer.Ordinal);
    private int _edges = 1;
    private long _fallbacks;
    private long _unanswered;
    private int _failing;
    private int _slow;

    public RedisRateCounters(GatewayRedis redis, EdgeOptions options, TimeProvider time, ILogger<RedisRateCounters> logger, TimeSpan? lease = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _redis = redis;
        _time = time;
        _logger = logger;
        _local = new LocalRateCounters(time, lease);
        _windowMs = (long)RateLimitWindows.Window.TotalMilliseconds;
        _leaseMs = (long)(lease ?? RateLimitWindows.DefaultLease).TotalMilliseconds;
        EdgeId = (string.IsNullOrWhiteSpace(options.Name) ? Environment.MachineName : options.Name) + ":" + Guid.NewGuid().ToString("N")[..8];
        _heartbeat = time.CreateTimer(static s => _ = ((RedisRateCounters)s!).RegisterAsync(), this, TimeSpan.Zero, HeartbeatInterval);
    }

    /// <summary>This edge's name in the registration set (its name and a random suffix).</summary>
    public string EdgeId { get; }

    /// <summary>The edges sharing the Redis, as last counted (at least 1).</summary>
    public int Edges => Volatile.Read(ref _edges);

    /// <summary>Requests decided on this edge's share because Redis was unreachable.</summary>
    public long Fallbacks => Interlocked.Read(ref _fallbacks);

    /// <summary>Requests refused because Redis, though connected, did not answer in time (or answered with an error).</summary>
    public long Unanswered => Interlocked.Read(ref _unanswered);

    /// <summary>True while Redis answers.</summary>
    public bool Shared => _redis.IsConnected && Volatile.Read(ref _failing) == 0;

    public async ValueTask<LimitDecision> AcquireAsync(LimitRequest request, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        var db = _redis.Database;
        if (db is null || !_redis.IsConnected) return Fallback(request, null);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var keys = new RedisKey[10];
        var args = new RedisValue[11];
        args[0] = now;
        args[1] = _windowMs;
        args[2] = request.Id;
        args[3] = request.Tokens;
        args[4] = now + _leaseMs;
        Fill(request.Key, 0);
        Fill(request.Project, 1);
        RedisResult[] result;
        try
        {
            result = (RedisResult[])(await Bounded(db.ScriptEvaluateAsync(AcquireScript, keys, args), ct))!;
        }
        catch (RedisConnectionException e)
        {
            // Unreachable (not connected, or the connection dropped during the call): this edge's share.
            return Fallback(request, e);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            // Timed out with the connection gone: unreachable too (if the script reached Redis it counted this request: safe).
            if (e is TimeoutException && !_redis.IsConnected) return Fallback(request, e);
            // Connected but slow (or an error answer): the other edges may be counting in Redis, so refuse this one.
            Release(request);
            return Unconfirmed(request, e);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away: the script may still run; release what it would hold.
            Release(request);
            throw;
        }
        if (Interlocked.Exchange(ref _failing, 0) == 1) LogResumed(_logger);
        Volatile.Write(ref _slow, 0);
        var figures = new long[8];
        for (var i = 0; i < 8; i++) figures[i] = (long)result[5 + i];
        // What Redis said of each scope it looked at (both when admitted; up to the refusing one when not).
        var looked = (long)result[0] == 1 ? 1 : (long)result[2];
        for (var s = 0; s <= looked; s++)
        {
            if ((s == 0 ? request.Key : request.Project) is not { Limits.RequestsPerMinute: { } rpm } looking) continue;
            if (figures[s * 4] >= rpm) _requestsFullUntil[looking.Id] = figures[s * 4 + 1] + _windowMs;
            else _requestsFullUntil.TryRemove(looking.Id, out _);
        }
        var key = ScopeFigures(request.Key, figures, 0, now);
        var project = ScopeFigures(request.Project, figures, 1, now);
        var requests = Tighter(key.Requests, project.Requests);
        var tokens = Tighter(key.Tokens, project.Tokens);
        if ((long)result[0] == 1)
        {
            // This edge's own admissions, so its share knows them if Redis goes away.
            _local.Acquire(request, 1, force: true);
            return new LimitDecision(true, LimitKind.None, null, 0, null, requests, tokens);
        }
        var kind = (LimitKind)(int)(long)result[1];
        var scope = (long)result[2] == 0 ? request.Key : request.Project;
        var retry = (long)result[3];
        return new LimitDecision(false, kind, scope, (long)result[4], retry < 0 ? null : TimeSpan.FromMilliseconds(Math.Max(1, retry)), requests, tokens)
        {
            NeverFits = retry < 0,
        };

        void Fill(LimitScope? scope, int s)
        {
            var limits = scope?.Limits;
            keys[s * 5] = scope is null ? s_noScope[0] : Prefix + scope.Id + ":r";
            keys[s * 5 + 1] = scope is null ? s_noScope[1] : Prefix + scope.Id + ":t";
            keys[s * 5 + 2] = scope is null ? s_noScope[2] : Prefix + scope.Id + ":a";
            keys[s * 5 + 3] = scope is null ? s_noScope[3] : Prefix + scope.Id + ":c";
            keys[s * 5 + 4] = scope is null ? s_noScope[4] : Prefix + scope.Id + ":n";
            args[5 + s * 3] = limits?.RequestsPerMinute ?? 0;
            args[6 + s * 3] = limits?.TokensPerMinute ?? 0;
            args[7 + s * 3] = limits?.MaxConcurrent ?? 0;
        }
    }

    public void Settle(LimitRequest request, long usedTokens)
    {
        ArgumentNullException.ThrowIfNull(request);
        _local.Settle(request, usedTokens);
        SettleShared(request, usedTokens);
    }

    /// <summary>
    /// A request this edge refused after its script was sent: settled to 0 tokens in Redis, queued behind the
    /// script on the same connection, so a script that still runs gives its lease and tokens back at once
    /// (its request slot stays counted: the safe direction). A script that never ran makes this a no-op.
    /// </summary>
    private void Release(LimitRequest request) => SettleShared(request, 0);

    private void SettleShared(LimitRequest request, long usedTokens)
    {
        var db = _redis.Database;
        if (db is null || !_redis.IsConnected) return;
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var keys = new RedisKey[8];
        var args = new RedisValue[7];
        args[0] = now;
        args[1] = _windowMs;
        args[2] = request.Id;
        args[3] = Math.Max(0, usedTokens);
        args[4] = request.Tokens;
        for (var s = 0; s < 2; s++)
        {
            var scope = s == 0 ? request.Key : request.Project;
            keys[s * 4] = scope is null ? s_noScope[1] : Prefix + scope.Id + ":t";
            keys[s * 4 + 1] = scope is null ? s_noScope[2] : Prefix + scope.Id + ":a";
            keys[s * 4 + 2] = scope is null ? s_noScope[3] : Prefix + scope.Id + ":c";
            keys[s * 4 + 3] = scope is null ? s_noScope[4] : Prefix + scope.Id + ":n";
            args[5 + s] = scope?.Limits.TokensPerMinute is not null ? "1" : "0";
        }
        _ = SettleAsync(db, keys, args);
    }

    private async Task SettleAsync(IDatabase db, RedisKey[] keys, RedisValue[] args)
    {
        try
        {
            await Bounded(db.ScriptEvaluateAsync(SettleScript, keys, args), CancellationToken.None);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            // The lease expires on its own; the reservation stays as it was (both count against the limits: the safe direction).
            LogSettleFailed(_logger, e);
        }
    }

    /// <summary>Registers this edge (with a TTL) and takes the count of edges; keeps the last count when Redis does not answer. Runs every <see cref="HeartbeatInterval"/>.</summary>
    public async Task RegisterAsync()
    {
        var db = _redis.Database;
        if (db is null || !_redis.IsConnected) return;
        try
        {
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            var count = (long)(await Bounded(db.ScriptEvaluateAsync(RegisterScript, [EdgesKey],
                [now, (long)RegistrationTtl.TotalMilliseconds, EdgeId]), CancellationToken.None))!;
            Volatile.Write(ref _edges, (int)Math.Max(1, count));
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            // The last count is kept.
        }
    }

    private LimitDecision Fallback(LimitRequest request, Exception? e)
    {
        Interlocked.Increment(ref _fallbacks);
        if (Interlocked.Exchange(ref _failing, 1) == 0) LogFallback(_logger, e?.GetType().Name ?? "not connected", e?.Message ?? "no connection to Redis", Edges);
        return _local.Acquire(request, Edges, force: false, _requestsFullUntil) with { Fallback = true };
    }

    /// <summary>Redis is connected but did not confirm the request: refused (429), retry in a second; the headers say nothing is left for now.</summary>
    private LimitDecision Unconfirmed(LimitRequest request, Exception e)
    {
        Interlocked.Increment(ref _unanswered);
        if (Interlocked.Exchange(ref _slow, 1) == 0) LogUnanswered(_logger, e.GetType().Name, e.Message);
        var retry = TimeSpan.FromSeconds(1);
        var scope = request.Key ?? request.Project!;
        var rpm = Tightest(request, static l => l.RequestsPerMinute);
        var tpm = Tightest(request, static l => l.TokensPerMinute);
        return new LimitDecision(false, LimitKind.Requests, scope, rpm ?? 0, retry,
            rpm is { } r ? new LimitFigures(r, 0, retry) : null,
            tpm is { } t ? new LimitFigures(t, 0, retry) : null)
        {
            Unanswered = true,
        };
    }

    private static long? Tightest(LimitRequest request, Func<GatewayLimits, long?> limit)
    {
        var key = request.Key is null ? null : limit(request.Key.Limits);
        var project = request.Project is null ? null : limit(request.Project.Limits);
        return key is null ? project : project is null ? key : Math.Min(key.Value, project.Value);
    }

    /// <summary>The answer, or <see cref="TimeoutException"/> after <see cref="GatewayRedis.AnswerTimeout"/> (the command's own timeout is the same; this guards the wait).</summary>
    private async Task<T> Bounded<T>(Task<T> task, CancellationToken ct)
    {
        try
        {
            return await task.WaitAsync(_redis.AnswerTimeout, ct);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            _ = task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            throw;
        }
    }

    private (LimitFigures? Requests, LimitFigures? Tokens) ScopeFigures(LimitScope? scope, long[] figures, int s, long now)
    {
        if (scope is null) return (null, null);
        LimitFigures? requests = null, tokens = null;
        if (scope.Limits.RequestsPerMinute is { } rpm)
        {
            var count = figures[s * 4];
            var reset = count == 0 ? 0 : figures[s * 4 + 1] + _windowMs - now;
            requests = new LimitFigures(rpm, Math.Max(0, rpm - count), TimeSpan.FromMilliseconds(Math.Max(0, reset)));
        }
        if (scope.Limits.TokensPerMinute is { } tpm)
        {
            var sum = figures[s * 4 + 2];
            var reset = figures[s * 4 + 3] == 0 ? 0 : figures[s * 4 + 3] + _windowMs - now;
            tokens = new LimitFigures(tpm, Math.Max(0, tpm - sum), TimeSpan.FromMilliseconds(Math.Max(0, reset)));
        }
        return (requests, tokens);
    }

    private static LimitFigures? Tighter(LimitFigures? a, LimitFigures? b) =>
        a is null ? b : b is null ? a : b.Value.Remaining < a.Value.Remaining ? b : a;

    public async ValueTask DisposeAsync()
    {
        await _heartbeat.DisposeAsync();
        var db = _redis.Database;
        if (db is null || !_redis.IsConnected) return;
        try
        {
            await Bounded(db.SortedSetRemoveAsync(EdgesKey, EdgeId), CancellationToken.None);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            // Its registration expires on its own.
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Redis is unreachable ({Error}: {Message}); rate limits use this edge's share (1/{Edges} of each) until it answers again")]
    private static partial void LogFallback(ILogger logger, string error, string message, int edges);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Redis is connected but did not confirm a request ({Error}: {Message}); such requests are refused (429) until it answers in time again")]
    private static partial void LogUnanswered(ILogger logger, string error, string message);

    [LoggerMessage(Level = LogLevel.Debug, Message = "A rate-limit settle did not reach Redis; its lease expires on its own")]
    private static partial void LogSettleFailed(ILogger logger, Exception error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Redis answers again; rate limits are shared across edges again")]
    private static partial void LogResumed(ILogger logger);
}
