using System.Collections.Concurrent;
using System.Globalization;
using StackExchange.Redis;

namespace Shoal.Edge.Gateway;

/// <summary>
/// Budget counters in the Redis the edges share (<see cref="GatewayRedis"/>): one hash per scope and
/// period (<c>s</c>: spent, <c>r</c>: reserved, in nano-dollars, and one field per reservation in
/// flight, <c>q:</c> and the request's id, holding its amount) that expires a day after the period
/// ends; one Lua script checks and reserves across all of a request's scopes atomically, one settles.
/// A settle finds its reservation by id, so it counts once however often it is sent, and a
/// reservation whose answer never came (Redis did not answer in time, or the client left while it
/// waited) is released by id whether or not Redis made it. Redis unreachable:
/// <see cref="TryReserveAsync"/> throws (the stage refuses, fail closed); settles that fail are kept
/// (up to <see cref="MaxPendingSettles"/>) and sent again with the next request that reaches Redis.
/// </summary>
internal sealed partial class RedisBudgetCounters(GatewayRedis redis, ILogger logger) : IBudgetCounters
{
    /// <summary>Most failed settles kept for a later try; beyond, the oldest are dropped (their reservations expire with the period).</summary>
    public const int MaxPendingSettles = 100_000;
    /// <summary>Prefix of the counters' keys; the hash tag keeps a request's scopes in one slot of a Redis Cluster.</summary>
    public const string KeyPrefix = "shoal:budget:{b}:";
    /// <summary>Prefix of a reservation's field in a scope's hash (then the request's id).</summary>
    public const string ReservationPrefix = "q:";

    // KEYS: one counter per scope. ARGV[1]: nano-dollars to reserve, ARGV[2]: the reservation's field;
    // then per scope: limit, floor, expire-at (unix seconds). A reservation already made (the same
    // field) is not made again. Answer: {1} admitted, or {0, index (1-based), spent, reserved} of the
    // first scope that does not fit.
    private const string ReserveScript = """
        local amount = tonumber(ARGV[1])
        local field = ARGV[2]
        for i, key in ipairs(KEYS) do
          if redis.call('HEXISTS', key, field) == 0 then
            local limit = tonumber(ARGV[3 * i])
            local floor = tonumber(ARGV[3 * i + 1])
            local spent = tonumber(redis.call('HGET', key, 's') or '0')
            local reserved = tonumber(redis.call('HGET', key, 'r') or '0')
            if spent < floor then spent = floor end
            if spent >= limit or spent + reserved + amount > limit then
              return {0, i, spent, reserved}
            end
          end
        end
        for i, key in ipairs(KEYS) do
          local spent = tonumber(redis.call('HGET', key, 's') or '0')
          if spent < tonumber(ARGV[3 * i + 1]) then redis.call('HSET', key, 's', ARGV[3 * i + 1]) end
          if redis.call('HSETNX', key, field, ARGV[1]) == 1 then redis.call('HINCRBY', key, 'r', ARGV[1]) end
          redis.call('EXPIREAT', key, ARGV[3 * i + 2])
        end
        return {1}
        """;

    // KEYS: the scopes' counters. ARGV[1]: the reservation's field, ARGV[2]: cost; then per scope:
    // expire-at (a settle after expiry must not leave a key forever). Only where the reservation is
    // found: it goes and the cost counts, so a settle sent twice (its answer was lost) counts once,
    // and a release of a reservation never made changes nothing. (0 - amount, not -amount: Lua's -0
    // reaches Redis as "-0", which HINCRBY refuses, and a free request reserves 0.)
    private const string SettleScript = """
        for i, key in ipairs(KEYS) do
          local amount = redis.call('HGET', key, ARGV[1])
          if amount then
            redis.call('HDEL', key, ARGV[1])
            local reserved = redis.call('HINCRBY', key, 'r', 0 - tonumber(amount))
            if reserved < 0 then redis.call('HSET', key, 'r', 0) end
            redis.call('HINCRBY', key, 's', ARGV[2])
            if redis.call('TTL', key) < 0 then redis.call('EXPIREAT', key, ARGV[2 + i]) end
          end
        end
        return 1
        """;

    private readonly ConcurrentQueue<(BudgetScope[] Scopes, string Reservation, long Cost)> _pending = new();
    private int _flushing;

    public long PendingSettles => _pending.Count;

    public async ValueTask<BudgetCheck> TryReserveAsync(BudgetScope[] scopes, string reservation, long nanos, CancellationToken ct)
    {
        var db = redis.Database;
        if (db is null || !redis.IsConnected) throw new BudgetUnavailableException("the gateway's Redis is not reachable");
        var keys = new RedisKey[scopes.Length];
        var args = new RedisValue[2 + 3 * scopes.Length];
        args[0] = nanos;
        args[1] = ReservationPrefix + reservation;
        for (var i = 0; i < scopes.Length; i++)
        {
            keys[i] = KeyPrefix + scopes[i].CounterKey;
            args[2 + 3 * i] = scopes[i].LimitNanos;
            args[3 + 3 * i] = scopes[i].FloorNanos;
            args[4 + 3 * i] = ExpireAt(scopes[i]);
        }
        RedisResult result;
        try
        {
            result = await db.ScriptEvaluateAsync(ReserveScript, keys, args).WaitAsync(ct);
        }
        catch (Exception e) when (e is RedisException or TimeoutException or OperationCanceledException)
        {
            // The script may have run: its reservation, if made, goes (by id, sent after it on the same connection).
            Settle(scopes, reservation, 0, 0);
            if (e is OperationCanceledException) throw;
            throw new BudgetUnavailableException("the gateway's Redis did not answer", e);
        }
        if (!_pending.IsEmpty) FlushPending();
        var answer = (RedisResult[])result!;
        if ((long)answer[0] == 1) return new BudgetCheck(true);
        return new BudgetCheck(false, (int)(long)answer[1] - 1, (long)answer[2], (long)answer[3]);
    }

    // The reservation's amount is in Redis, by id: reservedNanos is not needed here.
    public void Settle(BudgetScope[] scopes, string reservation, long reservedNanos, long costNanos) => _ = SettleAsync(scopes, reservation, costNanos);

    private async Task SettleAsync(BudgetScope[] scopes, string reservation, long costNanos)
    {
        if (!await TrySettleAsync(scopes, reservation, costNanos))
        {
            _pending.Enqueue((scopes, reservation, costNanos));
            while (_pending.Count > MaxPendingSettles && _pending.TryDequeue(out _))
            {
            }
        }
    }

    private async Task<bool> TrySettleAsync(BudgetScope[] scopes, string reservation, long costNanos)
    {
        var db = redis.Database;
        if (db is null || !redis.IsConnected) return false;
        var keys = new RedisKey[scopes.Length];
        var args = new RedisValue[2 + scopes.Length];
        args[0] = ReservationPrefix + reservation;
        args[1] = costNanos;
        for (var i = 0; i < scopes.Length; i++)
        {
            keys[i] = KeyPrefix + scopes[i].CounterKey;
            args[2 + i] = ExpireAt(scopes[i]);
        }
        try
        {
            await db.ScriptEvaluateAsync(SettleScript, keys, args);
            return true;
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            LogSettleFailed(logger, e.Message);
            return false;
        }
    }

    private void FlushPending()
    {
        if (Interlocked.Exchange(ref _flushing, 1) != 0) return;
        _ = Task.Run(async () =>
        {
            try
            {
                var count = _pending.Count;
                while (count-- > 0 && _pending.TryDequeue(out var settle))
                {
                    if (!await TrySettleAsync(settle.Scopes, settle.Reservation, settle.Cost))
                    {
                        _pending.Enqueue(settle);
                        break;
                    }
                }
            }
            finally
            {
                Volatile.Write(ref _flushing, 0);
            }
        });
    }

    private static string ExpireAt(BudgetScope scope) =>
        scope.Window.End.AddDays(1).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A budget settle could not reach Redis ({Reason}); it is kept and sent again")]
    private static partial void LogSettleFailed(ILogger logger, string reason);
}
