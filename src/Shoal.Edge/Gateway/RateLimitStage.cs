using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Shoal.Contracts;
using Shoal.Core.Gateway;
using Shoal.Core.Metrics;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The gateway's rate limits (issue 16), admission stage <c>limits</c>: requests per minute, tokens
/// per minute and concurrent requests of an endpoint key (its grant's limits) and of its project (all
/// its keys together, <see cref="IProjectGrantSource"/>); a request must fit both. Tokens are reserved
/// before the request goes out (prompt estimate + <c>max_tokens</c>, or <see cref="DefaultCompletionReserve"/>
/// when it gives none) and settled to what it used when it ends. Calls without a key (public clusters)
/// are not limited. Every response of a limited key carries OpenAI's <c>x-ratelimit-*</c> headers;
/// beyond a limit: 429, <c>Retry-After</c> and OpenAI's error (<c>rate_limit_exceeded</c>).
/// </summary>
public sealed class RateLimitStage : IGatewayAdmission, IMetricsSource
{
    /// <summary>Completion tokens reserved for a request that names no <c>max_tokens</c>; settled to what it used when it ends.</summary>
    public const long DefaultCompletionReserve = 4096;

    /// <summary>Tokens reserved for an OpenAI request whose body was not inspected (larger than the edge buffers).</summary>
    public const long UninspectedReserve = 16_384;

    private readonly IRateCounters _counters;
    private readonly IProjectGrantSource _projects;
    // [scope: 0 key, 1 project][kind: requests, tokens, concurrency]
    private readonly long[] _limited = new long[6];
    // Scopes made per grant, not per request (their ids are strings put together).
    private readonly ConditionalWeakTable<EndpointKeyGrant, LimitScope> _keyScopes = new();
    private readonly ConditionalWeakTable<GatewayLimits, LimitScope> _projectScopes = new();
    // Header texts of numbers below this come from a table.
    private const int SmallNumbers = 1024;
    private static readonly string?[] s_smallNumbers = new string?[SmallNumbers];
    // Reset times below a second, by millisecond ("0s", "1ms" … "999ms").
    private static readonly string?[] s_resetTexts = new string?[1000];
    // The last values written as header text (the stage keeps what it put on the call in LimitTicket: its LimitRequest, with the counters' decision).
    private CachedText? _requestsLimitText;
    private CachedText? _tokensLimitText;
    private CachedText? _requestsResetText;
    private CachedText? _tokensResetText;

    public RateLimitStage(IRateCounters counters, IProjectGrantSource projects)
    {
        _counters = counters;
        _projects = projects;
    }

    public string Name => "limits";

    public IRateCounters Counters => _counters;

    /// <summary>Requests refused by a limit, by the limit's scope (key or project) and kind.</summary>
    public long Limited(bool project, LimitKind kind) => Interlocked.Read(ref _limited[Index(project, kind)]);

    public bool Skips(GatewayCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Grant is null || (KeyLimits(call) is null && ProjectLimits(call) is null);
    }

    public bool NeedsBody(GatewayCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return KeyLimits(call)?.TokensPerMinute is not null || ProjectLimits(call)?.TokensPerMinute is not null;
    }

    public async ValueTask<AdmissionResult> AdmitAsync(GatewayCall call, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(call);
        var keyLimits = KeyLimits(call);
        var projectLimits = ProjectLimits(call);
        long tokens = 0;
        if ((keyLimits?.TokensPerMinute ?? projectLimits?.TokensPerMinute) is not null && call.Operation is not (OpenAiOperation.None or OpenAiOperation.Models))
        {
            tokens = call.Inspected ? call.PromptEstimate + (call.MaxTokens ?? DefaultCompletionReserve) : UninspectedReserve;
            call.ReservedTokens = Math.Max(call.ReservedTokens, tokens);
        }
        var request = new LimitRequest(call.RequestId,
            keyLimits is null ? null : KeyScope(call.Grant!, keyLimits),
            projectLimits is null ? null : ProjectScope(call.Project, projectLimits),
            tokens);
        var decision = await _counters.AcquireAsync(request, ct);
        request.Decision = decision;
        call.LimitTicket = request;
        if (decision.Admitted) return AdmissionResult.Admit;

        var scope = decision.RefusedScope!;
        Interlocked.Increment(ref _limited[Index(!scope.IsKey, decision.Refused)]);
        var limit = decision.RefusedLimit.ToString(CultureInfo.InvariantCulture);
        var share = decision.Fallback ? " (this edge's share while the shared counters are unreachable)" : "";
        var retry = decision.RetryAfter is { } r ? $" Please try again in {RateLimitWindows.FormatReset(r)}." : "";
        var (type, message) = decision.Refused switch
        {
            _ when decision.Unanswered =>
                ("requests", $"Rate limit could not be checked for {scope.Describe()}: the shared rate-limit counters (Redis) did not confirm this request in time, so it was not admitted.{retry}"),
            LimitKind.Tokens when decision.NeverFits =>
                ("tokens", $"Request too large for {scope.Describe()}: it needs {tokens} tokens (prompt estimate and max_tokens), more than its limit of {limit} tokens per minute{share}. Lower max_tokens."),
            LimitKind.Tokens => ("tokens", $"Rate limit reached for {scope.Describe()} on tokens per minute (TPM): limit {limit}{share}, requested {tokens}.{retry}"),
            LimitKind.Concurrency => ("requests", $"Rate limit reached for {scope.Describe()} on concurrent requests: limit {limit}{share}.{retry}"),
            _ => ("requests", $"Rate limit reached for {scope.Describe()} on requests per minute (RPM): limit {limit}{share}.{retry}"),
        };
        return AdmissionResult.Refuse(StatusCodes.Status429TooManyRequests, type, "rate_limit_exceeded", message, decision.RetryAfter ?? (decision.NeverFits ? null : TimeSpan.FromSeconds(1)));
    }

    public void Complete(GatewayCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        if (call.LimitTicket is LimitRequest { Decision.Admitted: true } request) _counters.Settle(request, request.Tokens > 0 ? call.TotalTokens : 0);
    }

    public void WriteHeaders(GatewayCall call, IHeaderDictionary headers)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(headers);
        if (call.LimitTicket is not LimitRequest { Decision: { } decision }) return;
        if (decision.Requests is { } requests)
        {
            headers[GatewayHeaders.LimitRequests] = LimitText(ref _requestsLimitText, requests.Limit);
            headers[GatewayHeaders.RemainingRequests] = RemainingText(requests.Remaining);
            headers[GatewayHeaders.ResetRequests] = ResetText(ref _requestsResetText, requests.Reset);
        }
        if (decision.Tokens is { } tokens)
        {
            headers[GatewayHeaders.LimitTokens] = LimitText(ref _tokensLimitText, tokens.Limit);
            headers[GatewayHeaders.RemainingTokens] = RemainingText(tokens.Remaining);
            headers[GatewayHeaders.ResetTokens] = ResetText(ref _tokensResetText, tokens.Reset);
        }
    }

    public void Render(StringBuilder sb)
    {
        ArgumentNullException.ThrowIfNull(sb);
        sb.Append("# HELP shoal_edge_gateway_limited_total Requests refused by a rate limit (429), by the limit's scope and kind.\n");
        sb.Append("# TYPE shoal_edge_gateway_limited_total counter\n");
        foreach (var project in new[] { false, true })
        {
            foreach (var kind in new[] { LimitKind.Requests, LimitKind.Tokens, LimitKind.Concurrency })
            {
                sb.Append("shoal_edge_gateway_limited_total{scope=\"").Append(project ? "project" : "key").Append("\",kind=\"")
                    .Append(kind switch { LimitKind.Requests => "requests", LimitKind.Tokens => "tokens", _ => "concurrency" }).Append("\"} ")
                    .Append(Limited(project, kind).ToString(CultureInfo.InvariantCulture)).Append('\n');
            }
        }
        if (_counters is not RedisRateCounters redis) return;
        sb.Append("# HELP shoal_edge_gateway_limits_shared 1 while the rate limits' counters are shared through Redis, 0 while this edge decides on its share.\n");
        sb.Append("# TYPE shoal_edge_gateway_limits_shared gauge\n");
        sb.Append("shoal_edge_gateway_limits_shared ").Append(redis.Shared ? '1' : '0').Append('\n');
        sb.Append("# HELP shoal_edge_gateway_limits_fallback_total Requests decided on this edge's share of the limits because Redis was unreachable.\n");
        sb.Append("# TYPE shoal_edge_gateway_limits_fallback_total counter\n");
        sb.Append("shoal_edge_gateway_limits_fallback_total ").Append(redis.Fallbacks.ToString(CultureInfo.InvariantCulture)).Append('\n');
        sb.Append("# HELP shoal_edge_gateway_limits_unanswered_total Requests refused (429) because Redis, though connected, did not confirm them in time (or answered with an error).\n");
        sb.Append("# TYPE shoal_edge_gateway_limits_unanswered_total counter\n");
        sb.Append("shoal_edge_gateway_limits_unanswered_total ").Append(redis.Unanswered.ToString(CultureInfo.InvariantCulture)).Append('\n');
        sb.Append("# HELP shoal_edge_gateway_limits_edges Edges sharing the Redis, as last counted (each one's share is 1/this).\n");
        sb.Append("# TYPE shoal_edge_gateway_limits_edges gauge\n");
        sb.Append("shoal_edge_gateway_limits_edges ").Append(redis.Edges.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }

    /// <summary>The key's scope, made once per grant (a pushed grant is a new object, so new limits make a new scope).</summary>
    private LimitScope KeyScope(EndpointKeyGrant grant, GatewayLimits limits)
    {
        if (_keyScopes.TryGetValue(grant, out var scope) && ReferenceEquals(scope.Limits, limits)) return scope;
        scope = new LimitScope("k:" + (grant.KeyId ?? grant.Project), limits);
        _keyScopes.AddOrUpdate(grant, scope);
        return scope;
    }

    /// <summary>The project's scope, made once per pushed project grant.</summary>
    private LimitScope ProjectScope(string project, GatewayLimits limits)
    {
        if (_projectScopes.TryGetValue(limits, out var scope) && scope.Id.AsSpan(2).SequenceEqual(project)) return scope;
        scope = new LimitScope("p:" + project, limits);
        _projectScopes.AddOrUpdate(limits, scope);
        return scope;
    }

    /// <summary>What is left of a limit as header text: from a table below <see cref="SmallNumbers"/> (a limit of hundreds), else formatted (it changes with every request).</summary>
    private static string RemainingText(long value) =>
        (ulong)value < SmallNumbers ? s_smallNumbers[value] ??= value.ToString(CultureInfo.InvariantCulture) : value.ToString(CultureInfo.InvariantCulture);

    /// <summary>A limit as header text, formatted again only when it changed.</summary>
    private static string LimitText(ref CachedText? cache, long value)
    {
        var cached = Volatile.Read(ref cache);
        if (cached is not null && cached.Value == value) return cached.Text;
        cached = new CachedText(value, value.ToString(CultureInfo.InvariantCulture));
        Volatile.Write(ref cache, cached);
        return cached.Text;
    }

    /// <summary>
    /// A reset time as header text (<see cref="RateLimitWindows.FormatReset"/>, whole milliseconds):
    /// below a second from a table, else formatted again only when it is not the last one written
    /// (requests of the same millisecond share it).
    /// </summary>
    private static string ResetText(ref CachedText? cache, TimeSpan reset)
    {
        var ms = reset <= TimeSpan.Zero ? 0 : (long)Math.Ceiling(reset.TotalMilliseconds);
        if (ms < 1000) return s_resetTexts[ms] ??= RateLimitWindows.FormatReset(reset);
        var cached = Volatile.Read(ref cache);
        if (cached is not null && cached.Value == ms) return cached.Text;
        cached = new CachedText(ms, RateLimitWindows.FormatReset(reset));
        Volatile.Write(ref cache, cached);
        return cached.Text;
    }

    private static GatewayLimits? KeyLimits(GatewayCall call) => call.Grant?.Limits is { IsEmpty: false } limits ? limits : null;

    private GatewayLimits? ProjectLimits(GatewayCall call) =>
        call.Grant is not null && _projects.Projects.TryGetValue(call.Project, out var grant) && grant.Limits is { IsEmpty: false } limits ? limits : null;

    private static int Index(bool project, LimitKind kind) => (project ? 3 : 0) + kind switch { LimitKind.Tokens => 1, LimitKind.Concurrency => 2, _ => 0 };

    private sealed record CachedText(long Value, string Text);
}
