using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Edge.Gateway;

namespace Shoal.Edge.Tests.Gateway;

/// <summary>The gateway's counters in the edge, on fake time: exact sliding windows, token reservations settled, concurrency leases, key and project together.</summary>
public sealed class LocalRateCountersTests
{
    private static readonly DateTimeOffset s_start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private int _ids;

    private LimitRequest Request(GatewayLimits? key, GatewayLimits? project = null, long tokens = 0, string keyId = "key-a") =>
        new("req-" + ++_ids, key is null ? null : new LimitScope("k:" + keyId, key), project is null ? null : new LimitScope("p:alpha", project), tokens);

    [Fact]
    public void The_request_window_slides_exactly_a_request_leaves_it_60_s_after_it_was_admitted()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var limits = new GatewayLimits { RequestsPerMinute = 3 };
        Assert.True(counters.Acquire(Request(limits), 1, false).Admitted);
        time.Advance(TimeSpan.FromSeconds(20));
        Assert.True(counters.Acquire(Request(limits), 1, false).Admitted);
        time.Advance(TimeSpan.FromSeconds(20));
        var third = counters.Acquire(Request(limits), 1, false);
        Assert.True(third.Admitted);
        Assert.Equal(new LimitFigures(3, 0, TimeSpan.FromSeconds(20)), third.Requests);

        time.Advance(TimeSpan.FromMilliseconds(19_999));
        var refused = counters.Acquire(Request(limits), 1, false);
        Assert.False(refused.Admitted);
        Assert.Equal(LimitKind.Requests, refused.Refused);
        Assert.Equal(3, refused.RefusedLimit);
        Assert.Equal(TimeSpan.FromMilliseconds(1), refused.RetryAfter);
        // 60 s after the first admission it has left the window: exactly one more fits.
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(counters.Acquire(Request(limits), 1, false).Admitted);
        Assert.False(counters.Acquire(Request(limits), 1, false).Admitted);
    }

    [Fact]
    public void No_60_s_span_ever_holds_more_than_the_limit_under_uneven_traffic()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var limits = new GatewayLimits { RequestsPerMinute = 10 };
        var random = new Random(16);
        var admitted = new List<long>();
        for (var i = 0; i < 3000; i++)
        {
            // Bursts and gaps, many of them at window boundaries.
            time.Advance(TimeSpan.FromMilliseconds(random.Next(4) == 0 ? random.Next(0, 3) : random.Next(0, 900)));
            if (counters.Acquire(Request(limits), 1, false).Admitted) admitted.Add(time.GetUtcNow().ToUnixTimeMilliseconds());
        }
        Assert.True(admitted.Count > 100);
        for (var i = 0; i < admitted.Count; i++)
        {
            var inWindow = admitted.Skip(i).TakeWhile(t => t < admitted[i] + 60_000).Count();
            Assert.True(inWindow <= 10, $"{inWindow} admitted in the 60 s from {admitted[i]}");
        }
        // And the window is used: 10 admitted in the busiest spans.
        Assert.Contains(Enumerable.Range(0, admitted.Count), i => admitted.Skip(i).TakeWhile(t => t < admitted[i] + 60_000).Count() == 10);
    }

    [Fact]
    public void Tokens_are_reserved_before_and_settled_to_what_was_used_after()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var limits = new GatewayLimits { TokensPerMinute = 1000 };
        var first = Request(limits, tokens: 600);
        var admitted = counters.Acquire(first, 1, false);
        Assert.True(admitted.Admitted);
        Assert.Equal(400, admitted.Tokens!.Value.Remaining);
        var second = counters.Acquire(Request(limits, tokens: 600), 1, false);
        Assert.False(second.Admitted);
        Assert.Equal(LimitKind.Tokens, second.Refused);
        Assert.False(second.NeverFits);
        Assert.Equal(TimeSpan.FromMinutes(1), second.RetryAfter);
        // The first used 100 of its 600: 900 are free now.
        counters.Settle(first, 100);
        Assert.True(counters.Acquire(Request(limits, tokens: 600), 1, false).Admitted);
        Assert.False(counters.Acquire(Request(limits, tokens: 301), 1, false).Admitted);
        // More than the limit itself never fits.
        var huge = counters.Acquire(Request(limits, tokens: 1001), 1, false);
        Assert.True(huge is { Admitted: false, NeverFits: true, RetryAfter: null });
    }

    [Fact]
    public void A_request_that_used_more_than_it_reserved_after_its_window_counts_the_excess_when_it_ends()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var limits = new GatewayLimits { TokensPerMinute = 1000 };
        var longOne = Request(limits, tokens: 100);
        Assert.True(counters.Acquire(longOne, 1, false).Admitted);
        time.Advance(TimeSpan.FromSeconds(90));
        counters.Settle(longOne, 700);
        // 600 beyond its reservation count from now: 400 are left.
        Assert.False(counters.Acquire(Request(limits, tokens: 401), 1, false).Admitted);
        Assert.True(counters.Acquire(Request(limits, tokens: 400), 1, false).Admitted);
    }

    [Fact]
    public void Concurrency_slots_come_back_when_requests_end_or_their_lease_expires()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time, lease: TimeSpan.FromMinutes(2));
        var limits = new GatewayLimits { MaxConcurrent = 2 };
        var a = Request(limits);
        Assert.True(counters.Acquire(a, 1, false).Admitted);
        Assert.True(counters.Acquire(Request(limits), 1, false).Admitted);
        var third = counters.Acquire(Request(limits), 1, false);
        Assert.Equal((false, LimitKind.Concurrency), (third.Admitted, third.Refused));
        counters.Settle(a, 0);
        Assert.True(counters.Acquire(Request(limits), 1, false).Admitted);
        Assert.False(counters.Acquire(Request(limits), 1, false).Admitted);
        // Nobody settles (an edge died mid-request): the leases run out.
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.True(counters.Acquire(Request(limits), 1, false).Admitted);
    }

    [Fact]
    public void A_request_must_fit_its_keys_limits_and_its_projects()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var key = new GatewayLimits { RequestsPerMinute = 2 };
        var project = new GatewayLimits { RequestsPerMinute = 3 };
        Assert.True(counters.Acquire(Request(key, project, keyId: "key-a"), 1, false).Admitted);
        Assert.True(counters.Acquire(Request(key, project, keyId: "key-a"), 1, false).Admitted);
        var byKey = counters.Acquire(Request(key, project, keyId: "key-a"), 1, false);
        Assert.Equal("k:key-a", byKey.RefusedScope!.Id);
        var other = counters.Acquire(Request(key, project, keyId: "key-b"), 1, false);
        Assert.True(other.Admitted);
        // The project's 3 are used (2 by a, 1 by b), though b's own limit has room.
        Assert.Equal(0, other.Requests!.Value.Remaining);
        var byProject = counters.Acquire(Request(key, project, keyId: "key-b"), 1, false);
        Assert.False(byProject.Admitted);
        Assert.Equal("p:alpha", byProject.RefusedScope!.Id);
        // A refusal by the project counted nothing in the key's window.
        time.Advance(TimeSpan.FromSeconds(60));
        Assert.True(counters.Acquire(Request(key, project, keyId: "key-b"), 1, false).Admitted);
        Assert.True(counters.Acquire(Request(key, project, keyId: "key-b"), 1, false).Admitted);
    }

    [Fact]
    public void An_edges_share_is_the_limit_divided_by_the_edges()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var limits = new GatewayLimits { RequestsPerMinute = 100, MaxConcurrent = 2 };
        var admitted = Enumerable.Range(0, 50).Count(_ => counters.Acquire(Request(limits with { MaxConcurrent = null }), 3, false).Admitted);
        Assert.Equal(33, admitted);
        Assert.Equal(1, RateLimitWindows.Share(2, 3));
        Assert.Equal(100, RateLimitWindows.Share(100, 1));
    }

    [Fact]
    public void Requests_of_the_same_millisecond_are_each_counted_and_leave_the_window_together()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var limits = new GatewayLimits { RequestsPerMinute = 5, TokensPerMinute = 1000 };
        var admitted = Enumerable.Range(0, 8).Select(_ => counters.Acquire(Request(limits, tokens: 100), 1, false)).ToList();
        Assert.Equal(5, admitted.Count(d => d.Admitted));
        Assert.Equal(new LimitFigures(5, 0, TimeSpan.FromMinutes(1)), admitted[4].Requests);
        Assert.Equal(new LimitFigures(1000, 500, TimeSpan.FromMinutes(1)), admitted[4].Tokens);
        time.Advance(TimeSpan.FromMilliseconds(59_999));
        Assert.False(counters.Acquire(Request(limits, tokens: 100), 1, false).Admitted);
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(5, Enumerable.Range(0, 8).Count(_ => counters.Acquire(Request(limits, tokens: 100), 1, false).Admitted));
    }

    [Fact]
    public void Settling_one_of_many_reservations_of_a_millisecond_changes_only_its_own_and_a_second_settle_nothing()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var key = new GatewayLimits { TokensPerMinute = 1000 };
        var project = new GatewayLimits { TokensPerMinute = 2000 };
        var requests = Enumerable.Range(0, 3).Select(_ => Request(key, project, tokens: 300)).ToList();
        Assert.All(requests, r => Assert.True(counters.Acquire(r, 1, false).Admitted));
        time.Advance(TimeSpan.FromSeconds(10));
        var other = Request(key, project, tokens: 50);
        Assert.True(counters.Acquire(other, 1, false).Admitted);
        // 950 of the key's 1000 reserved; the first used 100 of its 300: 250 free, in both scopes.
        counters.Settle(requests[0], 100);
        counters.Settle(requests[0], 100);
        var fits = counters.Acquire(Request(key, project, tokens: 250), 1, false);
        Assert.True(fits.Admitted);
        Assert.Equal(0, fits.Tokens!.Value.Remaining);
        var refused = counters.Acquire(Request(key, project, tokens: 100), 1, false);
        Assert.Equal((false, LimitKind.Tokens, "k:key-a"), (refused.Admitted, refused.Refused, refused.RefusedScope!.Id));
        // The three of the first millisecond (700 now) leave the window first: 50 s from now.
        Assert.Equal(TimeSpan.FromSeconds(50), refused.RetryAfter);
    }

    [Fact]
    public void Idle_scopes_are_swept_and_a_swept_scope_starts_again_empty()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time);
        var limits = new GatewayLimits { RequestsPerMinute = 1 };
        for (var i = 0; i <= 10_000; i++)
        {
            var request = Request(limits, keyId: "key-" + i);
            Assert.True(counters.Acquire(request, 1, false).Admitted);
            counters.Settle(request, 0);
        }
        Assert.Equal(10_001, counters.ScopeCount);
        Assert.False(counters.Acquire(Request(limits, keyId: "key-7"), 1, false).Admitted);
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.True(counters.Acquire(Request(limits, keyId: "key-7"), 1, false).Admitted);
        Assert.True(counters.ScopeCount < 10, $"{counters.ScopeCount} scopes left");
    }

    [Fact]
    public void A_request_whose_scope_was_swept_while_it_ran_counts_its_excess_in_the_scope_as_it_is_now()
    {
        var time = new FakeTimeProvider(s_start);
        var counters = new LocalRateCounters(time, lease: TimeSpan.FromMinutes(2));
        var limits = new GatewayLimits { TokensPerMinute = 1000 };
        var longOne = Request(limits, tokens: 100);
        Assert.True(counters.Acquire(longOne, 1, false).Admitted);
        for (var i = 0; i < 10_001; i++)
        {
            var other = Request(limits, keyId: "other-" + i);
            Assert.True(counters.Acquire(other, 1, false).Admitted);
            counters.Settle(other, 0);
        }
        // Its lease and its window are gone: the next request sweeps the idle scopes, its own among them.
        time.Advance(TimeSpan.FromMinutes(3));
        Assert.True(counters.Acquire(Request(limits, tokens: 100), 1, false).Admitted);
        Assert.True(counters.ScopeCount < 10, $"{counters.ScopeCount} scopes left");
        counters.Settle(longOne, 700);
        // 600 beyond its reservation count now, beside the new request's 100.
        Assert.False(counters.Acquire(Request(limits, tokens: 301), 1, false).Admitted);
        Assert.True(counters.Acquire(Request(limits, tokens: 300), 1, false).Admitted);
    }

    [Theory]
    [InlineData(0, "0s")]
    [InlineData(1, "1ms")]
    [InlineData(999, "999ms")]
    [InlineData(1050, "1.05s")]
    [InlineData(1005, "1.005s")]
    [InlineData(59_987, "59.987s")]
    [InlineData(60_001, "1m0.001s")]
    [InlineData(3_600_500, "1h0m0.5s")]
    [InlineData(20, "20ms")]
    [InlineData(1000, "1s")]
    [InlineData(1500, "1.5s")]
    [InlineData(360_000, "6m0s")]
    [InlineData(90_250, "1m30.25s")]
    [InlineData(3_723_000, "1h2m3s")]
    public void Reset_times_are_written_as_OpenAI_writes_them(long ms, string expected) =>
        Assert.Equal(expected, RateLimitWindows.FormatReset(TimeSpan.FromMilliseconds(ms)));
}
