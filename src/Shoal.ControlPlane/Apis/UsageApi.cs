using System.Globalization;
using Shoal.Contracts;
using Shoal.ControlPlane.Identity;
using Shoal.Store;

namespace Shoal.ControlPlane.Apis;

/// <summary>
/// <c>GET /v1/usage?by=node|cluster|key|project&amp;since=24h</c> (issue 16): the usage ledger and
/// GPU-seconds summed per group. Operators see everything; a project's key (viewer and up) sees its
/// project's rows only; the node view is the provider's, operators only.
/// </summary>
public static class UsageApi
{
    /// <summary>The longest period one query may cover.</summary>
    public static readonly TimeSpan MaxPeriod = TimeSpan.FromDays(400);

    public static IEndpointRouteBuilder MapUsageApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/usage", GetAsync).WithTags("Usage").RequireShoal(Permission.ClusterRead)
            .Produces<UsageReportDto>().Produces<ErrorResponse>(StatusCodes.Status400BadRequest).Produces<ErrorResponse>(StatusCodes.Status403Forbidden);
        app.MapGet("/v1/usage/records", ListAsync).WithTags("Usage").RequireShoal(Permission.ClusterRead)
            .Produces<UsageRecord[]>().Produces<ErrorResponse>(StatusCodes.Status400BadRequest);
        return app;
    }

    private static async Task<IResult> GetAsync(HttpContext http, IShoalStore store, TimeProvider time, string? by, string? since, string? until, CancellationToken ct)
    {
        var caller = Caller.From(http);
        by = string.IsNullOrWhiteSpace(by) ? UsageGroupings.Project : by.Trim().ToLowerInvariant();
        if (!UsageGroupings.IsKnown(by)) return ApiResults.BadRequest($"by must be {UsageGroupings.Node}, {UsageGroupings.Cluster}, {UsageGroupings.Key} or {UsageGroupings.Project}");
        if (by == UsageGroupings.Node && !caller.IsOperator) return ApiResults.Forbidden($"usage by node is the provider's view: it needs an operator key; key {caller.KeyId} has role {caller.Role}");
        var now = time.GetUtcNow();
        if (!TryParseTime(since ?? "24h", now, out var from)) return ApiResults.BadRequest($"since '{since}' is neither a duration back from now (such as 30m, 24h, 7d) nor a time (ISO 8601)");
        var to = now;
        if (until is not null && !TryParseTime(until, now, out to)) return ApiResults.BadRequest($"until '{until}' is neither a duration back from now nor a time (ISO 8601)");
        if (to <= from) return ApiResults.BadRequest("since must be before until");
        if (to - from > MaxPeriod) return ApiResults.BadRequest($"a query covers at most {MaxPeriod.TotalDays} days");

        var rows = await store.QueryUsageAsync(new UsageQuery { By = by, Since = from, Until = to, Project = caller.IsOperator ? null : caller.Project ?? "" }, ct);
        return Results.Json(new UsageReportDto { By = by, Since = from, Until = to, Rows = [.. rows] }, ShoalJsonContext.Default.UsageReportDto);
    }

    /// <summary>The ledger's rows themselves (one per request id), oldest first: what an invoice or an audit is built from.</summary>
    private static async Task<IResult> ListAsync(HttpContext http, IShoalStore store, TimeProvider time, string? since, string? until, int? limit, CancellationToken ct)
    {
        var caller = Caller.From(http);
        var now = time.GetUtcNow();
        if (!TryParseTime(since ?? "1h", now, out var from)) return ApiResults.BadRequest($"since '{since}' is neither a duration back from now (such as 30m, 24h, 7d) nor a time (ISO 8601)");
        var to = now;
        if (until is not null && !TryParseTime(until, now, out to)) return ApiResults.BadRequest($"until '{until}' is neither a duration back from now nor a time (ISO 8601)");
        if (limit is < 1 or > SqlShoalStore.MaxListedUsage) return ApiResults.BadRequest($"limit must be between 1 and {SqlShoalStore.MaxListedUsage}");
        var rows = await store.ListUsageAsync(from, to, caller.IsOperator ? null : caller.Project ?? "", ct);
        var take = limit ?? 1000;
        return Results.Json(rows.Count > take ? [.. rows.Take(take)] : rows.ToArray(), ShoalJsonContext.Default.UsageRecordArray);
    }

    /// <summary>A duration back from <paramref name="now"/> (<c>90s</c>, <c>30m</c>, <c>24h</c>, <c>7d</c>) or an ISO 8601 time.</summary>
    public static bool TryParseTime(string text, DateTimeOffset now, out DateTimeOffset value)
    {
        value = default;
        var s = text.Trim();
        if (s.Length >= 2 && long.TryParse(s.AsSpan(0, s.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n <= 100_000)
        {
            TimeSpan? back = s[^1] switch
            {
                's' => TimeSpan.FromSeconds(n),
                'm' => TimeSpan.FromMinutes(n),
                'h' => TimeSpan.FromHours(n),
                'd' => TimeSpan.FromDays(n),
                _ => null,
            };
            if (back is { } b)
            {
                value = now - b;
                return true;
            }
        }
        return DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out value);
    }
}
