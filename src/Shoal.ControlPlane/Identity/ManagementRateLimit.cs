using System.Collections.Concurrent;
using System.Globalization;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Identity;

/// <summary>
/// Management calls per API key per minute (fixed windows on the minute): project keys 100 by default
/// as the seed system, operator keys unlimited unless their key sets a limit. Every limited answer
/// carries <c>X-RateLimit-Limit</c>, <c>-Remaining</c> and <c>-Reset</c> (seconds); beyond the limit
/// the call is refused with 429 and <c>Retry-After</c>, and nothing runs.
/// </summary>
/// <remarks>
/// System.Threading.RateLimiting's window limiters neither run on a <see cref="TimeProvider"/> nor
/// tell when their window resets, which both the headers and the tests need; this is one counter per key.
/// </remarks>
public sealed class ManagementRateLimit(ApiKeyDirectory keys, TimeProvider time)
{
    public const int DefaultPerMinute = 100;
    private static readonly TimeSpan s_window = TimeSpan.FromMinutes(1);
    private readonly ConcurrentDictionary<string, Window> _windows = new(StringComparer.Ordinal);

    /// <summary>The limit of a key per minute; null when unlimited.</summary>
    public static int? LimitOf(string role, int? configured) =>
        configured ?? (role == ApiKeyRoles.Operator ? null : DefaultPerMinute);

    /// <summary>Counts one call of <paramref name="keyId"/>: whether it may go on, what is left and when the window resets.</summary>
    public (bool Allowed, int Remaining, TimeSpan Reset) Take(string keyId, int limit)
    {
        var now = time.GetUtcNow();
        var start = new DateTimeOffset(now.Ticks - now.Ticks % s_window.Ticks, TimeSpan.Zero);
        var window = _windows.GetOrAdd(keyId, static _ => new Window());
        lock (window)
        {
            if (window.Start != start)
            {
                window.Start = start;
                window.Count = 0;
            }
            var reset = start + s_window - now;
            if (window.Count >= limit) return (false, 0, reset);
            window.Count++;
            return (true, limit - window.Count, reset);
        }
    }

    /// <summary>The middleware: runs after authentication, before the route's handler.</summary>
    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (context.User.Identity?.IsAuthenticated != true)
        {
            await next(context);
            return;
        }
        var caller = Caller.From(context);
        var key = keys.Get(caller.KeyId);
        if (key is null || LimitOf(key.Role, key.RateLimitPerMinute) is not { } limit)
        {
            await next(context);
            return;
        }
        var (allowed, remaining, reset) = Take(key.Id, limit);
        var seconds = Math.Max(1, (int)Math.Ceiling(reset.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        var headers = context.Response.Headers;
        headers[RateLimitHeaders.Limit] = limit.ToString(CultureInfo.InvariantCulture);
        headers[RateLimitHeaders.Remaining] = remaining.ToString(CultureInfo.InvariantCulture);
        headers[RateLimitHeaders.Reset] = seconds;
        if (!allowed)
        {
            headers.RetryAfter = seconds;
            await ApiResults.WriteAsync(context, StatusCodes.Status429TooManyRequests, ErrorCodes.RateLimited,
                $"key {key.Id} made {limit} management calls this minute, its limit; try again in {seconds} s");
            return;
        }
        await next(context);
    }

    private sealed class Window
    {
        public DateTimeOffset Start { get; set; }
        public int Count { get; set; }
    }
}
