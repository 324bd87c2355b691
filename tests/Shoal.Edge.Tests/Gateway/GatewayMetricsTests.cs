using System.Text;
using Shoal.Edge.Gateway;

namespace Shoal.Edge.Tests.Gateway;

public sealed class GatewayMetricsTests
{
    private static string Render(GatewayMetrics metrics)
    {
        var sb = new StringBuilder();
        metrics.Render(sb);
        return sb.ToString();
    }

    [Fact]
    public void Requests_tokens_cost_and_refusals_are_counted_per_key_and_project()
    {
        var metrics = new GatewayMetrics();
        var route = GatewayCalls.Route(GatewayCalls.TokenPrice);
        var call = GatewayCalls.Make(route, GatewayCalls.Key("k1"));
        GatewayCalls.Used(call, 1000, 500);
        metrics.CountCompleted(call, 1000, 500);
        var limited = GatewayCalls.Make(route, GatewayCalls.Key("k1"));
        metrics.CountRefused(limited, "limits", 429);
        metrics.CountCompleted(limited, 0, 0);
        var poor = GatewayCalls.Make(route, GatewayCalls.Key("k2"));
        metrics.CountRefused(poor, BudgetStage.StageName, 429);
        metrics.CountRefused(poor, BudgetStage.StageName, 503);
        metrics.CountCompleted(GatewayCalls.Make(GatewayCalls.Route(null, "open\"x")), 0, 0);

        var text = Render(metrics);
        Assert.Contains("shoal_gateway_requests_total{project=\"alpha\",key=\"k1\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("shoal_gateway_tokens_total{project=\"alpha\",key=\"k1\",kind=\"prompt\"} 1000\n", text, StringComparison.Ordinal);
        Assert.Contains("shoal_gateway_tokens_total{project=\"alpha\",key=\"k1\",kind=\"completion\"} 500\n", text, StringComparison.Ordinal);
        Assert.Contains("shoal_gateway_cost_usd_total{project=\"alpha\",key=\"k1\"} 0.002\n", text, StringComparison.Ordinal);
        Assert.Contains("shoal_gateway_limited_total{project=\"alpha\",key=\"k1\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("shoal_gateway_budget_refused_total{project=\"alpha\",key=\"k2\",reason=\"exceeded\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("shoal_gateway_budget_refused_total{project=\"alpha\",key=\"k2\",reason=\"unavailable\"} 1\n", text, StringComparison.Ordinal);
        // No key: an empty key label; label values are escaped.
        Assert.Contains("shoal_gateway_requests_total{project=\"open\\\"x\",key=\"\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE shoal_gateway_budget_refused_total counter", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Series_beyond_the_cap_count_as_other()
    {
        var metrics = new GatewayMetrics();
        var route = GatewayCalls.Route(null);
        for (var i = 0; i < GatewayMetrics.MaxSeries + 5; i++) metrics.CountCompleted(GatewayCalls.Make(route, GatewayCalls.Key("k" + i)), 0, 0);
        var text = Render(metrics);
        Assert.Contains("shoal_gateway_requests_total{project=\"\",key=\"other\"} 5\n", text, StringComparison.Ordinal);
        Assert.Equal(GatewayMetrics.MaxSeries + 1, text.Split('\n').Count(l => l.StartsWith("shoal_gateway_requests_total{", StringComparison.Ordinal)));
    }
}
