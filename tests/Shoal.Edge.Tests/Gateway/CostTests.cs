using Shoal.Contracts;
using Shoal.Core.Gateway;
using Shoal.Edge.Gateway;

namespace Shoal.Edge.Tests.Gateway;

public sealed class CostTests
{
    [Fact]
    public void Tokens_cost_their_price_per_million()
    {
        var price = new ClusterPrice { InputPerMillion = 0.5m, OutputPerMillion = 1.5m };
        Assert.Equal(0.0005m + 0.0003m, Cost.Of(price, 1000, 200, 0));
        Assert.Equal(0m, Cost.Of(null, 1000, 200, 10));
        Assert.Equal(0m, Cost.Of(new ClusterPrice(), 1000, 200, 10));
    }

    [Fact]
    public void Gpu_seconds_are_the_time_on_a_replica_times_its_gpus()
    {
        var call = GatewayCalls.Make(GatewayCalls.Route(new ClusterPrice { PerGpuSecond = 0.001m }, gpuCount: 2));
        Assert.Equal(0.003m, Cost.Of(call, TimeSpan.FromSeconds(1.5)));
        // A route from a control plane that does not send a GPU count counts one GPU.
        call.Route = call.Route with { GpuCount = 0 };
        Assert.Equal(0.0015m, Cost.Of(call, TimeSpan.FromSeconds(1.5)));
    }

    [Fact]
    public void Prompt_tokens_are_the_reported_usage_else_the_estimate()
    {
        var call = GatewayCalls.Make(GatewayCalls.Route(GatewayCalls.TokenPrice), prompt: 400);
        call.CompletionTokens = 10;
        Assert.Equal(400, Cost.PromptTokens(call));
        Assert.Equal(400 * 1m / 1_000_000 + 10 * 2m / 1_000_000, Cost.Of(call, TimeSpan.Zero));
        call.PromptTokens = 300;
        call.UsageReported = true;
        Assert.Equal(300, Cost.PromptTokens(call));
    }

    [Fact]
    public void The_most_a_call_may_cost_uses_max_tokens_or_the_default_and_the_reserved_duration()
    {
        var price = new ClusterPrice { InputPerMillion = 1m, OutputPerMillion = 2m, PerGpuSecond = 0.0001m };
        var call = GatewayCalls.Make(GatewayCalls.Route(price, gpuCount: 4), prompt: 1000, maxTokens: 500);
        Assert.Equal(0.001m + 0.001m + 10 * 4 * 0.0001m, Cost.MostOf(call, 4096, TimeSpan.FromSeconds(10)));
        call.MaxTokens = null;
        Assert.Equal(0.001m + 4096 * 2m / 1_000_000 + 10 * 4 * 0.0001m, Cost.MostOf(call, 4096, TimeSpan.FromSeconds(10)));
        Assert.Equal(0m, Cost.MostOf(GatewayCalls.Make(GatewayCalls.Route(null)), 4096, TimeSpan.FromSeconds(10)));
    }

    [Theory]
    [InlineData("day", "2026-12-05T13:00:00Z", "2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z")]
    [InlineData("week", "2026-12-05T13:00:00Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z")]
    [InlineData("week", "2026-12-06T23:59:59Z", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z")]
    [InlineData("week", "2026-12-07T00:00:00Z", "2026-12-07T00:00:00Z", "2026-12-14T00:00:00Z")]
    [InlineData("month", "2026-12-31T23:59:59Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")]
    [InlineData("fortnight", "2026-02-10T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")]
    public void Periods_start_at_utc_midnight_monday_and_the_first(string period, string now, string start, string end)
    {
        var window = BudgetWindow.Of(period, DateTimeOffset.Parse(now, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(DateTimeOffset.Parse(start, System.Globalization.CultureInfo.InvariantCulture), window.Start);
        Assert.Equal(DateTimeOffset.Parse(end, System.Globalization.CultureInfo.InvariantCulture), window.End);
    }
}
