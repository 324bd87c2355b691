using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Shoal.Core.Metrics;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The gateway's Prometheus series per endpoint key and project (issue 16), counted by
/// <see cref="GatewayPipeline"/>: requests, prompt and completion tokens, cost, requests refused by
/// the limits stage (429) and by budgets (used up, or Redis unreachable). Labels: <c>project</c>
/// and <c>key</c> (the key's id; empty for calls without a key). At most <see cref="MaxSeries"/>
/// key/project pairs; calls of further pairs count under <c>project="", key="other"</c>, so a
/// flood of keys cannot grow the page without bound.
/// </summary>
public sealed class GatewayMetrics : IMetricsSource
{
    public const int MaxSeries = 10_000;
    public const string OtherKey = "other";

    private readonly ConcurrentDictionary<(string Project, string Key), Series> _series = new();
    private readonly Series _overflow = new();

    /// <summary>A call ended (admitted or not): one request, its tokens and its cost.</summary>
    public void CountCompleted(GatewayCall call, long promptTokens, long completionTokens)
    {
        ArgumentNullException.ThrowIfNull(call);
        var s = SeriesOf(call);
        Interlocked.Increment(ref s.Requests);
        if (promptTokens > 0) Interlocked.Add(ref s.PromptTokens, promptTokens);
        if (completionTokens > 0) Interlocked.Add(ref s.CompletionTokens, completionTokens);
        if (call.CostUsd > 0) Interlocked.Add(ref s.CostNanos, BudgetMoney.ToNanos(call.CostUsd));
    }

    /// <summary>Stage <paramref name="stage"/> refused the call with <paramref name="status"/>.</summary>
    public void CountRefused(GatewayCall call, string stage, int status)
    {
        ArgumentNullException.ThrowIfNull(call);
        var s = SeriesOf(call);
        if (stage == BudgetStage.StageName)
        {
            if (status == StatusCodes.Status503ServiceUnavailable) Interlocked.Increment(ref s.BudgetUnavailable);
            else Interlocked.Increment(ref s.BudgetRefused);
        }
        else
        {
            Interlocked.Increment(ref s.Limited);
        }
    }

    public void Render(StringBuilder sb)
    {
        ArgumentNullException.ThrowIfNull(sb);
        var series = _series.ToArray();
        Array.Sort(series, static (a, b) => string.CompareOrdinal(a.Key.Project, b.Key.Project) is var c and not 0 ? c : string.CompareOrdinal(a.Key.Key, b.Key.Key));
        var all = new List<(string Project, string Key, Series S)>(series.Length + 1);
        foreach (var (key, s) in series) all.Add((key.Project, key.Key, s));
        if (Interlocked.Read(ref _overflow.Requests) > 0 || Interlocked.Read(ref _overflow.Limited) > 0 || Interlocked.Read(ref _overflow.BudgetRefused) > 0
            || Interlocked.Read(ref _overflow.BudgetUnavailable) > 0)
        {
            all.Add(("", OtherKey, _overflow));
        }

        Family(sb, "shoal_gateway_requests_total", "Requests through the gateway per endpoint key and project (refused ones included).", all, static s => Interlocked.Read(ref s.Requests));
        Header(sb, "shoal_gateway_tokens_total", "Tokens per endpoint key and project: prompt (as the response's usage said, else estimated) and completion (delivered).");
        foreach (var (project, key, s) in all)
        {
            Line(sb, "shoal_gateway_tokens_total", project, key, "kind", "prompt", Interlocked.Read(ref s.PromptTokens));
            Line(sb, "shoal_gateway_tokens_total", project, key, "kind", "completion", Interlocked.Read(ref s.CompletionTokens));
        }
        Header(sb, "shoal_gateway_cost_usd_total", "What requests cost at their clusters' prices, in US dollars.");
        foreach (var (project, key, s) in all) Line(sb, "shoal_gateway_cost_usd_total", project, key, null, null, (double)BudgetMoney.ToUsd(Interlocked.Read(ref s.CostNanos)));
        Family(sb, "shoal_gateway_limited_total", "Requests refused by rate limits (429 rate_limit_exceeded).", all, static s => Interlocked.Read(ref s.Limited));
        Header(sb, "shoal_gateway_budget_refused_total", "Requests refused by budgets: the budget had no room (429 insufficient_quota), or the budget counters were unreachable (503, fail closed).");
        foreach (var (project, key, s) in all)
        {
            Line(sb, "shoal_gateway_budget_refused_total", project, key, "reason", "exceeded", Interlocked.Read(ref s.BudgetRefused));
            Line(sb, "shoal_gateway_budget_refused_total", project, key, "reason", "unavailable", Interlocked.Read(ref s.BudgetUnavailable));
        }
    }

    private Series SeriesOf(GatewayCall call)
    {
        var id = (call.Project, call.KeyId ?? "");
        if (_series.TryGetValue(id, out var s)) return s;
        return _series.Count >= MaxSeries ? _overflow : _series.GetOrAdd(id, static _ => new Series());
    }

    private static void Family(StringBuilder sb, string name, string help, List<(string Project, string Key, Series S)> all, Func<Series, long> value)
    {
        Header(sb, name, help);
        foreach (var (project, key, s) in all) Line(sb, name, project, key, null, null, value(s));
    }

    private static void Header(StringBuilder sb, string name, string help) =>
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append("\n# TYPE ").Append(name).Append(" counter\n");

    private static void Line(StringBuilder sb, string name, string project, string key, string? label, string? value, double number)
    {
        sb.Append(name).Append("{project=\"");
        Escape(sb, project);
        sb.Append("\",key=\"");
        Escape(sb, key);
        if (label is not null) sb.Append("\",").Append(label).Append("=\"").Append(value);
        sb.Append("\"} ").Append(number.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }

    private static void Escape(StringBuilder sb, string value)
    {
        foreach (var ch in value)
        {
            switch (ch)
            {
                case '\\': sb.Append(@"\\"); break;
                case '"': sb.Append("\\\""); break;
                case '\n': sb.Append(@"\n"); break;
                default: sb.Append(ch); break;
            }
        }
    }

    private sealed class Series
    {
        public long Requests;
        public long PromptTokens;
        public long CompletionTokens;
        public long CostNanos;
        public long Limited;
        public long BudgetRefused;
        public long BudgetUnavailable;
    }
}
