using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Gateway;
using Shoal.Edge.Gateway;

namespace Shoal.Edge.Tests.Gateway;

/// <summary>
/// The rate-limit stage's <c>x-ratelimit-*</c> headers: every admitted call gets all six, with its own
/// figures (texts come from tables and caches, which must never hand out another call's value).
/// </summary>
public sealed class RateLimitStageHeaderTests
{
    private static readonly DateTimeOffset s_start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private sealed class NoProjects : IProjectGrantSource
    {
        public IReadOnlyDictionary<string, ProjectGrant> Projects { get; } = new Dictionary<string, ProjectGrant>(StringComparer.Ordinal);
    }

    private static async Task<HeaderDictionary> AdmitAsync(RateLimitStage stage, EndpointKeyGrant key, long prompt = 10, long maxTokens = 5)
    {
        var call = GatewayCalls.Make(GatewayCalls.Route(null), key, prompt, maxTokens);
        Assert.False(stage.Skips(call));
        Assert.True((await stage.AdmitAsync(call, CancellationToken.None)).Admitted);
        var headers = new HeaderDictionary();
        stage.WriteHeaders(call, headers);
        // Settled with what it reserved: the figures of later calls stay easy to predict.
        GatewayCalls.Used(call, prompt, maxTokens);
        stage.Complete(call);
        return headers;
    }

    [Fact]
    public async Task Small_and_large_remaining_figures_and_resets_under_and_over_a_second_are_each_calls_own()
    {
        var time = new FakeTimeProvider(s_start);
        var stage = new RateLimitStage(new LocalRateCounters(time), new NoProjects());
        var small = GatewayCalls.Key("small");
        small = small with { Limits = new GatewayLimits { RequestsPerMinute = 100, TokensPerMinute = 1000 } };
        var large = GatewayCalls.Key("large");
        large = large with { Limits = new GatewayLimits { RequestsPerMinute = 10_000_000, TokensPerMinute = 5_000_000_000 } };

        var first = await AdmitAsync(stage, small);
        Assert.Equal("100", first[GatewayHeaders.LimitRequests]);
        Assert.Equal("99", first[GatewayHeaders.RemainingRequests]);
        // Nothing older in the window than this call: its slot frees in 60 s.
        Assert.Equal("1m0s", first[GatewayHeaders.ResetRequests]);
        Assert.Equal("1000", first[GatewayHeaders.LimitTokens]);
        Assert.Equal("985", first[GatewayHeaders.RemainingTokens]);
        Assert.Equal("1m0s", first[GatewayHeaders.ResetTokens]);

        // Same millisecond: the cached reset text is the right one; the remaining counts go on down.
        var second = await AdmitAsync(stage, small);
        Assert.Equal("98", second[GatewayHeaders.RemainingRequests]);
        Assert.Equal("970", second[GatewayHeaders.RemainingTokens]);
        Assert.Equal("1m0s", second[GatewayHeaders.ResetRequests]);

        time.Advance(TimeSpan.FromMilliseconds(59_250));
        var third = await AdmitAsync(stage, small);
        Assert.Equal("97", third[GatewayHeaders.RemainingRequests]);
        Assert.Equal("750ms", third[GatewayHeaders.ResetRequests]);
        Assert.Equal("750ms", third[GatewayHeaders.ResetTokens]);
        time.Advance(TimeSpan.FromMilliseconds(749));
        var fourth = await AdmitAsync(stage, small);
        Assert.Equal("1ms", fourth[GatewayHeaders.ResetRequests]);
        time.Advance(TimeSpan.FromMilliseconds(1));
        // The first two left the window; the oldest now is the third, admitted 750 ms ago.
        var fifth = await AdmitAsync(stage, small);
        Assert.Equal("97", fifth[GatewayHeaders.RemainingRequests]);
        Assert.Equal("59.25s", fifth[GatewayHeaders.ResetRequests]);

        // Another key, other limits: its own limit texts, remaining figures far above the table.
        var big = await AdmitAsync(stage, large, prompt: 1_000, maxTokens: 1_000);
        Assert.Equal("10000000", big[GatewayHeaders.LimitRequests]);
        Assert.Equal("9999999", big[GatewayHeaders.RemainingRequests]);
        Assert.Equal("5000000000", big[GatewayHeaders.LimitTokens]);
        Assert.Equal("4999998000", big[GatewayHeaders.RemainingTokens]);
        Assert.Equal("1m0s", big[GatewayHeaders.ResetRequests]);
        var again = await AdmitAsync(stage, small);
        Assert.Equal("100", again[GatewayHeaders.LimitRequests]);
        Assert.Equal("1000", again[GatewayHeaders.LimitTokens]);
        Assert.Equal("96", again[GatewayHeaders.RemainingRequests]);
    }

    [Fact]
    public async Task A_refused_call_carries_the_headers_too()
    {
        var time = new FakeTimeProvider(s_start);
        var stage = new RateLimitStage(new LocalRateCounters(time), new NoProjects());
        var key = GatewayCalls.Key("one") with { Limits = new GatewayLimits { RequestsPerMinute = 1 } };
        await AdmitAsync(stage, key);
        time.Advance(TimeSpan.FromMilliseconds(400));
        var call = GatewayCalls.Make(GatewayCalls.Route(null), key, 10, 5);
        var result = await stage.AdmitAsync(call, CancellationToken.None);
        Assert.False(result.Admitted);
        var headers = new HeaderDictionary();
        stage.WriteHeaders(call, headers);
        Assert.Equal("1", headers[GatewayHeaders.LimitRequests]);
        Assert.Equal("0", headers[GatewayHeaders.RemainingRequests]);
        Assert.Equal("59.6s", headers[GatewayHeaders.ResetRequests]);
        // A refused call settles nothing.
        stage.Complete(call);
    }
}
