using System.Collections.Concurrent;
using System.Globalization;
using StackExchange.Redis;

namespace Shoal.Edge.Gateway;

/// <summary>
/// Budget counters in the Redis the edges share (<see cref="GatewayRedis"/>): one hash per scope and
/// period (<c>s</c>: spent, <c>r</c>: reserved, in nano-dollars) that expires a day after the
/// period ends; one Lua script checks and reserves across all of a request's scopes atomically, one
/// settles. Redis unreachable: <see cref="TryReserveAsync"/> throws (the stage refuses, fail closed);
/// settles that fail are kept (up to <see cref="MaxPendingSettles"/>) and sent again with the next
/// request that reaches Redis.
/// </summary>
internal sealed partial class RedisBudgetCounters(GatewayRedis redis, ILogger logger) : IBudgetCounters
{
    /// <summary>Most failed settles kept for a later try; beyond, the oldest are dropped (their reservations expire with the period).</summary>
    public const int MaxPendingSettles = 100_000;
    /// <summary>Prefix of the counters' keys; the hash tag keeps a request's scopes in one slot of a Redis Cluster.</summary>
    public const string KeyPrefix = "shoal:budget:{b}:";

    // KEYS: one counter per scope. ARGV[1]: nano-dollars to reserve; then per scope: limit, floor, expire-at (unix seconds).
    // Answer: {1} admitted, or {0, index (1-based), spent, reserved} of the first scope that does not fit.
    private const string ReserveScript = """
        local amount = tonumber(ARGV[1])
        for i, key in ipairs(KEYS) do
          local limit = tonumber(ARGV[3 * i - 1])
          local floor = tonumber(ARGV[3 * i])
          local spent = tonumber(redis.call('HGET', key, 's') or '0')
          local reserved = tonumber(redis.call('HGET', key, 'r') or '0')
          if spent < floor then spent = floor end
          if spent >= limit or spent + reserved + amount > limit then
            return {0, i, spent, reserved}
          end
        end
        for i, key in ipairs(KEYS) do
          local spent = tonumber(redis.call('HGET', key, 's') or '0')
          if spent < tonumber(ARGV[3 * i]) then redis.call('HSET', key, 's', ARGV[3 * i]) end
          redis.call('HINCRBY', key, 'r', ARGV[1])
          redis.call('EXPIREAT', key, ARGV[3 * i + 1])
        end
        return {1}
        """;

    // KEYS: the scopes' counters. ARGV[1]: minus the reservation, ARGV[2]: cost; then per scope: expire-at (a settle after expiry must not leave a key forever).
    private const string SettleScript = """
        for i, key in ipairs(KEYS) do
          local reserved = redis.call('HINCRBY', key, 'r', ARGV[1])
          if reserved < 0 then redis.call('HSET', key, 'r', 0) end
          redis.call('HINCRBY', key, 's', ARGV[2])
          if redis.call('TTL', key) < 0 then redis.call('EXPIREAT', key, ARGV[2 + i]) end
        end
        return 1
        """;

    private readonly ConcurrentQueue<(BudgetScope[] Scopes, long Reserved, long Cost)> _pending = new();
    private int _flushing;

    public long PendingSettles => _pending.Count;

    public async ValueTask<BudgetCheck> TryReserveAsync(BudgetScope[] scopes, long nanos, CancellationToken ct)
    {
        var db = redis.Database;
        if (db is null || !redis.IsConnected) throw new BudgetUnavailableException("the gateway's Redis is not reachable");
        var keys = new RedisKey[scopes.Length];
        var args = new RedisValue[1 + 3 * scopes.Length];
        args[0] = nanos;
        for (var i = 0; i < scopes.Length; i++)
        {
            keys[i] = KeyPrefix + scopes[i].CounterKey;
            args[1 + 3 * i] = scopes[i].LimitNanos;
            args[2 + 3 * i] = scopes[i].FloorNanos;
            args[3 + 3 * i] = ExpireAt(scopes[i]);
        }
        RedisResult result;
        try
        {
            result = await db.ScriptEvaluateAsync(ReserveScript, keys, args).WaitAsync(ct);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            throw new BudgetUnavailableException("the gateway's Redis did not answer", e);
        }
        if (!_pending.IsEmpty) FlushPending();
        var answer = (RedisResult[])result!;
        if ((long)answer[0] == 1) return new BudgetCheck(true);
        return new BudgetCheck(false, (int)(long)answer[1] - 1, (long)answer[2], (long)answer[3]);
    }

    public void Settle(BudgetScope[] scopes, long reservedNanos, long costNanos) => _ = SettleAsync(scopes, reservedNanos, costNanos);

    private async Task SettleAsync(BudgetScope[] scopes, long reservedNanos, long costNanos)
    {
        if (!await TrySettleAsync(scopes, reservedNanos, costNanos))
        {
            _pending.Enqueue((scopes, reservedNanos, costNanos));
            while (_pending.Count > MaxPendingSettles && _pending.TryDequeue(out _))
            {
            }
        }
    }

    private async Task<bool> TrySettleAsync(BudgetScope[] scopes, long reservedNanos, long costNanos)
    {
        var db = redis.Database;
        if (db is null || !redis.IsConnected) return false;
        var keys = new RedisKey[scopes.Length];
        var args = new RedisValue[2 + scopes.Length];
        args[0] = -reservedNanos;
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
                    if (!await TrySettleAsync(settle.Scopes, settle.Reserved, settle.Cost))
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
