using System.Globalization;
using Shoal.Contracts;

namespace Shoal.Edge.Gateway;

/// <summary>What a limit counts.</summary>
public enum LimitKind
{
    None,
    Requests,
    Tokens,
    Concurrency,
}

/// <summary>One limited scope: an endpoint key (<c>k:{id}</c>) or a project (<c>p:{name}</c>), with its limits.</summary>
public sealed record LimitScope(string Id, GatewayLimits Limits)
{
    public bool IsKey => Id.StartsWith("k:", StringComparison.Ordinal);

    /// <summary>"key key-…" or "project alpha", for messages.</summary>
    public string Describe() => IsKey ? "key " + Id[2..] : "project " + Id[2..];
}

/// <summary>
/// One request's claim on the counters: a request slot (RPM), <see cref="Tokens"/> reserved (TPM) and a
/// concurrency lease, in its key's scope and its project's (either may be absent); all or nothing.
/// The same object is handed to <see cref="IRateCounters.Settle"/> when the request ends.
/// </summary>
public sealed class LimitRequest(string id, LimitScope? key, LimitScope? project, long tokens)
{
    public string Id { get; } = id;
    public LimitScope? Key { get; } = key;
    public LimitScope? Project { get; } = project;
    public long Tokens { get; } = tokens;

    public IEnumerable<LimitScope> Scopes
    {
        get
        {
            if (Key is not null) yield return Key;
            if (Project is not null) yield return Project;
        }
    }

    // LocalRateCounters' own: the key's and the project's state the request was counted in, where its
    // reservation is in their token logs (-1: none), and what it counts there now (the reservation,
    // then what was used).
    internal object? KeyState;
    internal object? ProjectState;
    internal long KeyEntry = -1;
    internal long ProjectEntry = -1;
    internal long CountedTokens;

    /// <summary>The counters' answer to this request (set by the rate-limit stage; its headers come from it).</summary>
    internal LimitDecision? Decision;
}

/// <summary>A limit's state for OpenAI's <c>x-ratelimit-*</c> headers: the limit, what is left, and when the next unit frees up.</summary>
public readonly record struct LimitFigures(long Limit, long Remaining, TimeSpan Reset);

/// <summary>
/// The counters' answer. Refused: which <see cref="LimitKind"/> of which scope, its limit, and when to
/// retry. Either way the figures of the tightest request and token limits (null when none applies).
/// </summary>
public sealed record LimitDecision(bool Admitted, LimitKind Refused, LimitScope? RefusedScope, long RefusedLimit, TimeSpan? RetryAfter, LimitFigures? Requests, LimitFigures? Tokens)
{
    /// <summary>True when the decision was made on this edge's share of the limits (Redis unreachable).</summary>
    public bool Fallback { get; init; }

    /// <summary>The tokens asked for are more than the token limit itself: they never fit.</summary>
    public bool NeverFits { get; init; }

    /// <summary>Refused because the shared counters, though reachable, did not confirm the request in time (Redis slow or answering errors).</summary>
    public bool Unanswered { get; init; }
}

/// <summary>Sliding-window counters for RPM, TPM and concurrency: in this edge (<see cref="LocalRateCounters"/>) or shared in Redis (<see cref="RedisRateCounters"/>).</summary>
public interface IRateCounters
{
    /// <summary>Checks every limit of every scope of the request and, when all fit, counts it (atomically across scopes).</summary>
    ValueTask<LimitDecision> AcquireAsync(LimitRequest request, CancellationToken ct);

    /// <summary>The request ended: its reservation becomes <paramref name="usedTokens"/> and its concurrency lease is released. Never throws.</summary>
    void Settle(LimitRequest request, long usedTokens);
}

/// <summary>The windows and leases of the gateway's limits.</summary>
public static class RateLimitWindows
{
    /// <summary>The sliding window of RPM and TPM: every 60 s span holds at most the limit.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long a concurrency slot is held without its request ending: an edge that dies mid-request
    /// frees its slots after this long. A request running longer than this gives its slot up early.
    /// </summary>
    public static readonly TimeSpan DefaultLease = TimeSpan.FromMinutes(10);

    /// <summary>
    /// OpenAI's way of writing a reset time (Go durations): <c>20ms</c>, <c>1.5s</c>, <c>6m0s</c>, <c>1h2m3s</c>.
    /// </summary>
    public static string FormatReset(TimeSpan reset)
    {
        if (reset <= TimeSpan.Zero) return "0s";
        var ms = (long)Math.Ceiling(reset.TotalMilliseconds);
        Span<char> text = stackalloc char[48];
        var n = 0;
        if (ms < 1000)
        {
            Append(text, ref n, ms);
            text[n++] = 'm';
            text[n++] = 's';
            return new string(text[..n]);
        }
        var hours = ms / 3_600_000;
        var minutes = ms / 60_000 % 60;
        if (hours > 0)
        {
            Append(text, ref n, hours);
            text[n++] = 'h';
        }
        if (hours > 0 || minutes > 0)
        {
            Append(text, ref n, minutes);
            text[n++] = 'm';
        }
        // Seconds with up to three decimals, trailing zeros left out ("0.###").
        Append(text, ref n, ms % 60_000 / 1000);
        var fraction = (int)(ms % 1000);
        if (fraction != 0)
        {
            text[n++] = '.';
            text[n++] = (char)('0' + fraction / 100);
            if (fraction % 100 != 0)
            {
                text[n++] = (char)('0' + fraction / 10 % 10);
                if (fraction % 10 != 0) text[n++] = (char)('0' + fraction % 10);
            }
        }
        text[n++] = 's';
        return new string(text[..n]);

        static void Append(Span<char> text, ref int n, long value)
        {
            value.TryFormat(text[n..], out var written, default, CultureInfo.InvariantCulture);
            n += written;
        }
    }

    /// <summary>A limit divided among <paramref name="edges"/> (at least 1): this edge's share while it cannot reach the shared counters.</summary>
    public static long Share(long limit, int edges) => edges <= 1 ? limit : Math.Max(1, limit / edges);
}
