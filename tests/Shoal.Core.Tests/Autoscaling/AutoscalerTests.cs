using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Autoscaling;

namespace Shoal.Core.Tests.Autoscaling;

public sealed class AutoscalerTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero));
    private readonly AutoscaleHistory _history = new();

    private static AutoscaleSpec Settings(int min = 1, int max = 10, double waiting = 2, double concurrency = 0, int window = 300, int toZero = 0) => new()
    {
        Min = min,
        Max = max,
        TargetWaiting = waiting,
        TargetConcurrency = concurrency,
        ScaleDownWindowSeconds = window,
        ScaleToZeroAfterSeconds = toZero,
    };

    private AutoscaleDecision Decide(AutoscaleSpec settings, int current, IReadOnlyList<ReplicaSignal>? replicas = null, EdgeDemandSum demand = default, int? ready = null)
    {
        replicas ??= [];
        return Autoscaler.Decide(new AutoscaleInput
        {
            Settings = settings,
            Now = _time.GetUtcNow(),
            Current = current,
            Ready = ready ?? replicas.Count,
            Replicas = replicas,
            Demand = demand,
        }, _history);
    }

    private static ReplicaSignal[] Each(int count, double waiting, double running = 4) =>
        Enumerable.Repeat(new ReplicaSignal(waiting, running), count).ToArray();

    [Fact]
    public void Scales_up_at_once_when_waiting_per_replica_exceeds_the_target()
    {
        var decision = Decide(Settings(max: 5), current: 2, Each(2, waiting: 14), new EdgeDemandSum(36, 0, 20));

        Assert.Equal(5, decision.Desired);
        Assert.Equal(14, decision.Recommended);
        Assert.Equal("scaled up 2→5: 14 waiting per replica, target 2 (steep rise: panic mode) (capped at max 5)", Autoscaler.Describe(2, decision));
    }

    [Fact]
    public void A_fresh_history_scales_down_only_once_it_has_seen_a_whole_window()
    {
        // A new cluster of 3 (or a restarted server) with no demand: what came before is unknown.
        var first = Decide(Settings(window: 60), current: 3, Each(3, waiting: 0, running: 0));
        Assert.Equal(3, first.Desired);
        Assert.Contains("scale-down waits for a whole 1m window: 0s seen", first.Reason, StringComparison.Ordinal);

        _time.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(3, Decide(Settings(window: 60), current: 3, Each(3, waiting: 0, running: 0)).Desired);

        _time.Advance(TimeSpan.FromSeconds(1));
        var after = Decide(Settings(window: 60), current: 3, Each(3, waiting: 0, running: 0));
        Assert.Equal(1, after.Desired);
        Assert.StartsWith("highest recommendation over the last 1m is 0", after.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_rise_below_the_target_changes_nothing()
    {
        var decision = Decide(Settings(), current: 3, Each(3, waiting: 2), new EdgeDemandSum(18, 0, 5));

        Assert.Equal(3, decision.Desired);
        Assert.False(decision.Panic);
    }

    [Fact]
    public void From_zero_a_held_burst_asks_for_exactly_what_the_target_asks_and_no_more_while_replicas_start()
    {
        var settings = Settings(min: 0, max: 1000, toZero: 600);
        var first = Decide(settings, current: 0, demand: new EdgeDemandSum(0, 1000, 1000));
        Assert.Equal(500, first.Desired);
        Assert.StartsWith("1000 waiting with no replica, target 2 per replica", first.Reason, StringComparison.Ordinal);

        // Replicas are starting (none ready): the same burst held asks for no more, second after second.
        for (var i = 0; i < 10; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(500, Decide(settings, current: 500, demand: new EdgeDemandSum(0, 1000, 0), ready: 0).Desired);
        }
    }

    [Fact]
    public void A_wake_from_zero_asks_for_one_replica()
    {
        var decision = Decide(Settings(min: 0, toZero: 60), current: 0, demand: new EdgeDemandSum(0, 1, 1));

        Assert.Equal(1, decision.Desired);
    }

    [Fact]
    public void A_cluster_at_zero_stays_there_without_demand()
    {
        var settings = Settings(min: 0, toZero: 600);
        // Created at 0 (or at 0 before a restart): no request, no replica, however often it is asked.
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(0, Decide(settings, current: 0).Desired);
            _time.Advance(TimeSpan.FromSeconds(1));
        }
        // A running replica still waits out the idle period before going to zero.
        Assert.Equal(1, Decide(settings, current: 1, Each(1, 0, 0)).Desired);
    }

    [Fact]
    public void Scale_down_waits_for_the_window_and_goes_to_the_highest_recommendation_in_it()
    {
        var settings = Settings(min: 1, max: 10, window: 300);
        Assert.Equal(8, Decide(settings, current: 2, Each(2, waiting: 8), new EdgeDemandSum(24, 0, 10)).Desired);

        // Load falls to three busy replicas, then to none: the count holds for the window.
        _time.Advance(TimeSpan.FromSeconds(100));
        Assert.Equal(8, Decide(settings, current: 8, [.. Each(3, 0, 2), .. Each(5, 0, 0)], new EdgeDemandSum(6, 0, 1)).Desired);
        _time.Advance(TimeSpan.FromSeconds(100));
        Assert.Equal(8, Decide(settings, current: 8, Each(8, 0, 0)).Desired);

        // 300 s after the peak the window holds the three busy replicas' recommendation.
        _time.Advance(TimeSpan.FromSeconds(101));
        var down = Decide(settings, current: 8, Each(8, 0, 0));
        Assert.Equal(3, down.Desired);
        Assert.StartsWith("scaled down 8→3: highest recommendation over the last 5m is 3", Autoscaler.Describe(8, down), StringComparison.Ordinal);

        // …and once that too is older than the window, min.
        _time.Advance(TimeSpan.FromSeconds(101));
        Assert.Equal(1, Decide(settings, current: 3, Each(3, 0, 0)).Desired);
    }

    [Fact]
    public void Panic_mode_holds_the_count_up_after_a_steep_rise_even_with_a_short_window()
    {
        var settings = Settings(max: 20, window: 10);
        Assert.Equal(10, Decide(settings, current: 2, Each(2, waiting: 10), new EdgeDemandSum(30, 0, 30)).Desired);
        _time.Advance(TimeSpan.FromSeconds(5));
        var held = Decide(settings, current: 10, Each(10, 0, 0));
        Assert.Equal(10, held.Desired);
        Assert.True(held.Panic);
        _time.Advance(TimeSpan.FromSeconds(11));
        Assert.Equal(1, Decide(settings, current: 10, Each(10, 0, 0)).Desired);
    }

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(null)]
    public void Missing_or_NaN_figures_do_not_block_scale_down_the_edges_counts_stand_in(double? figure)
    {
        var settings = Settings(min: 1, max: 10, window: 60);
        var broken = Enumerable.Repeat(new ReplicaSignal(figure, figure), 4).ToArray();

        // While the edges see requests in flight, the replicas without figures count as busy.
        var busy = Decide(settings, current: 4, broken, new EdgeDemandSum(4, 0, 2));
        Assert.Equal(4, busy.Desired);
        Assert.Equal(4, busy.MissingFigures);
        Assert.Contains("without figures", busy.Reason, StringComparison.Ordinal);

        // No demand at the edges: after the window the cluster goes to min, figures or not.
        for (var i = 0; i < 61; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            Decide(settings, current: 4, broken);
        }
        Assert.Equal(1, Decide(settings, current: 4, broken).Desired);
    }

    [Fact]
    public void Scales_to_zero_only_after_the_idle_period()
    {
        var settings = Settings(min: 0, max: 4, window: 60, toZero: 600);
        Assert.Equal(1, Decide(settings, current: 1, Each(1, 0, 1), new EdgeDemandSum(1, 0, 1)).Desired);
        for (var i = 0; i < 599; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(1, Decide(settings, current: 1, Each(1, 0, 0)).Desired);
        }
        _time.Advance(TimeSpan.FromSeconds(1));
        var zero = Decide(settings, current: 1, Each(1, 0, 0));
        Assert.Equal(0, zero.Desired);
        Assert.Equal("scaled to zero 1→0: no request for 10m (scale to zero after 10m)", Autoscaler.Describe(1, zero));
    }

    [Fact]
    public void Sparse_traffic_one_request_every_idle_period_minus_10_s_causes_no_cold_start()
    {
        var settings = Settings(min: 0, max: 4, window: 60, toZero: 120);
        var current = 1;
        for (var second = 0; second < 3600; second++)
        {
            var request = second % 110 == 0;
            var decision = Decide(settings, current, Each(current, 0, request ? 1 : 0), request ? new EdgeDemandSum(1, 0, 1) : EdgeDemandSum.None);
            Assert.NotEqual(0, decision.Desired);
            current = decision.Desired;
            _time.Advance(TimeSpan.FromSeconds(1));
        }
        Assert.Equal(1, current);
    }

    [Fact]
    public void Concurrency_target_scales_both_ways_in_proportion()
    {
        var settings = Settings(min: 1, max: 10, waiting: 0, concurrency: 4, window: 30);
        var up = Decide(settings, current: 1, demand: new EdgeDemandSum(10, 2, 5));
        Assert.Equal(3, up.Desired);
        Assert.Contains("12 in flight + held per replica, target 4", up.Reason, StringComparison.Ordinal);

        _time.Advance(TimeSpan.FromSeconds(31));
        var down = Decide(settings, current: 3, demand: new EdgeDemandSum(5, 0, 5));
        Assert.Equal(2, down.Desired);
    }

    [Fact]
    public void Bounds_min_and_max_hold()
    {
        var settings = Settings(min: 2, max: 3, window: 0);
        Assert.Equal(2, Decide(settings, current: 2).Desired);
        Assert.Equal(3, Decide(settings, current: 2, Each(2, waiting: 50), new EdgeDemandSum(0, 0, 1)).Desired);
    }

    [Theory]
    [InlineData(0, "0s")]
    [InlineData(59, "59s")]
    [InlineData(300, "5m")]
    [InlineData(90, "1m30s")]
    [InlineData(7200, "2h")]
    public void Durations_read_as_people_write_them(int seconds, string text) =>
        Assert.Equal(text, Autoscaler.Format(TimeSpan.FromSeconds(seconds)));
}
