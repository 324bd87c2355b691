using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Edge.Gateway;
using Shoal.Testing;

namespace Shoal.Edge.Tests.Gateway;

/// <summary>
/// The shared counters against a real redis-server (started on a free loopback port): two edges'
/// counters see one window, tokens settle, leases release, edges count themselves; with Redis killed
/// each decides on its share without throwing, and shares again when Redis is back.
/// </summary>
public sealed class RedisRateCountersTests : IAsyncLifetime
{
    private static readonly DateTimeOffset s_start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private RedisServer _redis = null!;
    private readonly List<IAsyncDisposable> _owned = [];
    private int _ids;

    public async Task InitializeAsync() => _redis = await RedisServer.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var owned in Enumerable.Reverse(_owned)) await owned.DisposeAsync();
        await _redis.DisposeAsync();
    }

    private async Task<RedisRateCounters> EdgeAsync(TimeProvider time, string name, TimeSpan? answerTimeout = null)
    {
        var options = new EdgeOptions { Redis = _redis.Configuration, Name = name };
        var redis = new GatewayRedis(options, NullLogger<GatewayRedis>.Instance, answerTimeout);
        _owned.Add(redis);
        var counters = new RedisRateCounters(redis, options, time, NullLogger<RedisRateCounters>.Instance, lease: TimeSpan.FromMinutes(2));
        _owned.Add(counters);
        await Eventually.UntilAsync(() => redis.IsConnected, what: "connected to redis");
        return counters;
    }

    private LimitRequest Request(GatewayLimits key, GatewayLimits? project = null, long tokens = 0) =>
        new("req-" + ++_ids, new LimitScope("k:key-a", key), project is null ? null : new LimitScope("p:alpha", project), tokens);

    [Fact]
    public async Task Two_edges_share_one_exact_sliding_window_tokens_and_leases()
    {
        var time = new FakeTimeProvider(s_start);
        var a = await EdgeAsync(time, "a");
        var b = await EdgeAsync(time, "b");
        var limits = new GatewayLimits { RequestsPerMinute = 4 };
        var admitted = 0;
        for (var i = 0; i < 10; i++)
        {
            if ((await (i % 2 == 0 ? a : b).AcquireAsync(Request(limits), default)).Admitted) admitted++;
            time.Advance(TimeSpan.FromSeconds(1));
        }
        Assert.Equal(4, admitted);
        var refused = await a.AcquireAsync(Request(limits), default);
        Assert.Equal((false, LimitKind.Requests, 4L), (refused.Admitted, refused.Refused, refused.RefusedLimit));
        Assert.False(refused.Fallback);
        // The first left the window 60 s after it came (10 s have passed): retry in 50 s, not a millisecond earlier.
        Assert.Equal(TimeSpan.FromSeconds(50), refused.RetryAfter);
        time.Advance(TimeSpan.FromMilliseconds(49_999));
        Assert.False((await b.AcquireAsync(Request(limits), default)).Admitted);
        time.Advance(TimeSpan.FromMilliseconds(1));
        var next = await b.AcquireAsync(Request(limits), default);
        Assert.True(next.Admitted);
        Assert.Equal(0, next.Requests!.Value.Remaining);

        // Tokens: reserved, refused while full, settled down to what was used.
        var tokens = new GatewayLimits { TokensPerMinute = 1000 };
        var big = Request(tokens, tokens: 800);
        Assert.True((await a.AcquireAsync(big, default)).Admitted);
        var full = await b.AcquireAsync(Request(tokens, tokens: 300), default);
        Assert.Equal((false, LimitKind.Tokens), (full.Admitted, full.Refused));
        Assert.Equal(TimeSpan.FromMinutes(1), full.RetryAfter);
        Assert.True((await b.AcquireAsync(Request(tokens, tokens: 5000), default)).NeverFits);
        a.Settle(big, 200);
        await Eventually.GetAsync(() => b.AcquireAsync(Request(tokens, tokens: 300), default).AsTask(), d => d.Admitted, what: "tokens freed by the settlement");

        // Concurrency: across edges, released when a request ends, and by its lease when nobody ends it.
        var conc = new GatewayLimits { MaxConcurrent = 2 };
        var first = Request(conc);
        Assert.True((await a.AcquireAsync(first, default)).Admitted);
        Assert.True((await b.AcquireAsync(Request(conc), default)).Admitted);
        Assert.Equal(LimitKind.Concurrency, (await a.AcquireAsync(Request(conc), default)).Refused);
        a.Settle(first, 0);
        await Eventually.GetAsync(() => b.AcquireAsync(Request(conc), default).AsTask(), d => d.Admitted, what: "the slot released");
        Assert.False((await a.AcquireAsync(Request(conc), default)).Admitted);
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.True((await a.AcquireAsync(Request(conc), default)).Admitted);
    }

    [Fact]
    public async Task A_reservation_settled_to_no_tokens_leaves_the_window_like_any_other()
    {
        var time = new FakeTimeProvider(s_start);
        var edge = await EdgeAsync(time, "a");
        var tokens = new GatewayLimits { TokensPerMinute = 1000 };
        var unused = Request(tokens, tokens: 100);
        Assert.True((await edge.AcquireAsync(unused, default)).Admitted);
        // It used nothing (it failed before any token): its entry stays in the window with 0.
        edge.Settle(unused, 0);
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.True((await edge.AcquireAsync(Request(tokens, tokens: 1000), default)).Admitted);
        // The entry of 0 tokens leaves the window alone; the next request is answered (refused: the later 1,000 are still in it).
        time.Advance(TimeSpan.FromSeconds(31));
        var next = await edge.AcquireAsync(Request(tokens, tokens: 10), default);
        Assert.Equal((false, false, LimitKind.Tokens), (next.Admitted, next.Unanswered, next.Refused));
    }

    [Fact]
    public async Task With_redis_killed_each_edge_decides_on_its_share_and_shares_again_when_redis_is_back()
    {
        var time = new FakeTimeProvider(s_start);
        var a = await EdgeAsync(time, "a");
        var b = await EdgeAsync(time, "b");
        await a.RegisterAsync();
        await b.RegisterAsync();
        await a.RegisterAsync();
        Assert.Equal(2, a.Edges);
        var limits = new GatewayLimits { RequestsPerMinute = 10 };

        await _redis.KillAsync();
        var decisions = new List<LimitDecision>();
        for (var i = 0; i < 8; i++) decisions.Add(await a.AcquireAsync(Request(limits), default));
        Assert.All(decisions, d => Assert.True(d.Fallback));
        Assert.Equal(5, decisions.Count(d => d.Admitted));
        Assert.Equal(5, decisions.First(d => !d.Admitted).RefusedLimit);
        Assert.Equal(8, a.Fallbacks);
        Assert.False(a.Shared);
        await a.RegisterAsync();
        Assert.Equal(2, a.Edges);

        await _redis.RestartAsync();
        time.Advance(TimeSpan.FromMinutes(1));
        var resumed = await Eventually.GetAsync(() => a.AcquireAsync(Request(limits), default).AsTask(), d => !d.Fallback, TimeSpan.FromSeconds(20), "shared counters again");
        Assert.True(resumed.Admitted);
        Assert.True(a.Shared);
    }

    [Fact]
    public async Task A_window_redis_last_saw_full_stays_refused_on_the_share_until_it_frees_a_slot()
    {
        var time = new FakeTimeProvider(s_start);
        var a = await EdgeAsync(time, "a");
        var b = await EdgeAsync(time, "b");
        await a.RegisterAsync();
        await b.RegisterAsync();
        await a.RegisterAsync();
        var limits = new GatewayLimits { RequestsPerMinute = 4 };
        for (var i = 0; i < 4; i++) Assert.True((await b.AcquireAsync(Request(limits), default)).Admitted);
        time.Advance(TimeSpan.FromSeconds(10));
        // a admitted nothing itself, but Redis told it the window is full until 60 s after b's first.
        Assert.False((await a.AcquireAsync(Request(limits), default)).Admitted);

        await _redis.KillAsync();
        var refused = await a.AcquireAsync(Request(limits), default);
        Assert.True(refused is { Admitted: false, Fallback: true, Refused: LimitKind.Requests });
        Assert.Equal(TimeSpan.FromSeconds(50), refused.RetryAfter);
        // Once the window frees a slot, a's share (4 / 2 edges) applies.
        time.Advance(TimeSpan.FromSeconds(50));
        Assert.True((await a.AcquireAsync(Request(limits), default)).Admitted);
        Assert.True((await a.AcquireAsync(Request(limits), default)).Admitted);
        Assert.False((await a.AcquireAsync(Request(limits), default)).Admitted);
    }

    [Fact]
    public async Task A_slow_redis_is_waited_for_then_the_request_is_refused_never_admitted_on_the_share_and_a_hung_one_counts_as_unreachable()
    {
        var time = new FakeTimeProvider(s_start);
        var a = await EdgeAsync(time, "a", TimeSpan.FromSeconds(1));
        var b = await EdgeAsync(time, "b", TimeSpan.FromSeconds(1));
        await a.RegisterAsync();
        await b.RegisterAsync();
        await a.RegisterAsync();
        var limits = new GatewayLimits { RequestsPerMinute = 10, TokensPerMinute = 1000, MaxConcurrent = 3 };
        Assert.True((await a.AcquireAsync(Request(limits, tokens: 100), default)).Admitted);
        Assert.True((await b.AcquireAsync(Request(limits, tokens: 100), default)).Admitted);

        // Connected but silent: waited for (1 s here, 5 s by default), then refused; not decided on the share.
        await _redis.PauseAsync();
        LimitDecision slow;
        try
        {
            slow = await a.AcquireAsync(Request(limits, tokens: 100), default);
        }
        finally
        {
            await _redis.ResumeAsync();
        }
        Assert.True(slow is { Admitted: false, Unanswered: true, Fallback: false, Refused: LimitKind.Requests });
        Assert.Equal(TimeSpan.FromSeconds(1), slow.RetryAfter);
        Assert.Equal(new LimitFigures(10, 0, TimeSpan.FromSeconds(1)), slow.Requests);
        Assert.Equal(new LimitFigures(1000, 0, TimeSpan.FromSeconds(1)), slow.Tokens);
        Assert.Equal((0L, 1L), (a.Fallbacks, a.Unanswered));

        // The refused request's script ran once Redis woke: its request slot counts (the safe direction), but the
        // settle sent behind it gave back its lease and its tokens: 2 of 3 concurrent slots and 200 tokens are taken.
        var next = await a.AcquireAsync(Request(limits, tokens: 100), default);
        Assert.True(next is { Admitted: true, Fallback: false });
        Assert.Equal(10 - 4, next.Requests!.Value.Remaining);
        Assert.Equal(1000 - 300, next.Tokens!.Value.Remaining);
        Assert.Equal(LimitKind.Concurrency, (await b.AcquireAsync(Request(limits, tokens: 100), default)).Refused);

        // Hung for good: refused while the connection lives; once StackExchange.Redis gives the silent connection up,
        // Redis is unreachable and the edge decides on its share (10 / 2 edges).
        await _redis.PauseAsync();
        try
        {
            var decided = await Eventually.GetAsync(() => a.AcquireAsync(Request(new GatewayLimits { RequestsPerMinute = 10 }), default).AsTask(),
                d => d.Fallback || !d.Unanswered, TimeSpan.FromSeconds(40), "the hung connection given up");
            Assert.True(decided is { Fallback: true, Admitted: true });
            Assert.Equal(5, decided.Requests!.Value.Limit);
            Assert.True(a.Unanswered >= 2);
            Assert.False(a.Shared);
        }
        finally
        {
            await _redis.ResumeAsync();
        }
        var resumed = await Eventually.GetAsync(() => a.AcquireAsync(Request(new GatewayLimits { RequestsPerMinute = 10 }), default).AsTask(), d => !d.Fallback,
            TimeSpan.FromSeconds(30), "shared counters again");
        Assert.False(resumed.Unanswered);
        Assert.True(a.Shared);
        // Whatever it decided, the requests refused while Redis hung were counted when their scripts ran (never fewer).
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.True((await a.AcquireAsync(Request(new GatewayLimits { RequestsPerMinute = 10 }), default)) is { Admitted: true, Fallback: false });
    }

    [Fact]
    public async Task A_script_timed_before_the_latest_one_seen_runs_at_that_time_so_no_window_holds_more_than_the_limit()
    {
        var aTime = new FakeTimeProvider(s_start);
        var bTime = new FakeTimeProvider(s_start);
        var a = await EdgeAsync(aTime, "a");
        var b = await EdgeAsync(bTime, "b");
        var limits = new GatewayLimits { RequestsPerMinute = 2 };
        Assert.True((await a.AcquireAsync(Request(limits), default)).Admitted);
        Assert.True((await a.AcquireAsync(Request(limits), default)).Admitted);
        aTime.Advance(TimeSpan.FromMilliseconds(60_500));
        Assert.True((await a.AcquireAsync(Request(limits), default)).Admitted);

        // b's request took its time 0.6 s before a's last one (a call delayed on its way, or a clock behind) and reaches
        // Redis after it, when a's script has already trimmed the two at 0 s. Judged at its own time it would see one and
        // be scored at 59.9 s: three in [0 s, 60 s) for a limit of 2. It runs at a's time instead.
        bTime.Advance(TimeSpan.FromMilliseconds(59_900));
        var late = Request(limits);
        Assert.True((await b.AcquireAsync(late, default)).Admitted);
        Assert.False((await b.AcquireAsync(Request(limits), default)).Admitted);
        await using var watcher = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(_redis.Configuration);
        var at = await watcher.GetDatabase().SortedSetScoreAsync("shoal:gw:k:key-a:r", late.Id);
        Assert.Equal(s_start.AddMilliseconds(60_500).ToUnixTimeMilliseconds(), (long)at!.Value);
    }

    [Fact]
    public async Task A_clock_more_than_a_window_ahead_is_not_followed_so_the_others_windows_keep_sliding()
    {
        var ahead = new FakeTimeProvider(s_start.AddMinutes(2));
        var time = new FakeTimeProvider(s_start);
        var a = await EdgeAsync(ahead, "a");
        var b = await EdgeAsync(time, "b");
        var limits = new GatewayLimits { RequestsPerMinute = 2 };
        Assert.True((await a.AcquireAsync(Request(limits), default)).Admitted);
        Assert.True((await b.AcquireAsync(Request(limits), default)).Admitted);
        Assert.False((await b.AcquireAsync(Request(limits), default)).Admitted);
        // b's own request leaves its window after 60 s of b's clock (a's, scored 2 min ahead, still counts: the safe direction).
        time.Advance(TimeSpan.FromSeconds(61));
        Assert.True((await b.AcquireAsync(Request(limits), default)).Admitted);
    }
}
