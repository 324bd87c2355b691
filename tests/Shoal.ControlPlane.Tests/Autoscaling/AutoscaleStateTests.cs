using Shoal.Contracts;
using Shoal.ControlPlane.Autoscaling;
using Shoal.Core.Autoscaling;
using Shoal.Core.Clusters;

namespace Shoal.ControlPlane.Tests.Autoscaling;

/// <summary>
/// The autoscaler's pass through the control plane's state (real SQLite store, fake time, agents
/// played by calls): decisions commit like a user's scale, with their reason as an event, nothing is
/// written when nothing changes, the reconciler adds or drains replicas.
/// </summary>
public sealed class AutoscaleStateTests
{
    private static readonly IReadOnlyDictionary<string, EdgeDemandSum> s_noDemand = new Dictionary<string, EdgeDemandSum>();

    private static ClusterSpec Spec(AutoscaleSpec autoscale, int replicas = 1) => new()
    {
        Name = "demo",
        Image = "shoal/sim",
        Gpu = "rtx-4090",
        Replicas = replicas,
        Autoscale = autoscale,
    };

    private static Task<int> AutoscaleAsync(StateHarness h, IReadOnlyDictionary<string, EdgeDemandSum>? demand = null, Func<string, DateTimeOffset?>? firstServed = null) =>
        h.State.AutoscaleAsync(demand ?? s_noDemand, firstServed ?? (_ => null), default);

    [Fact]
    public async Task Waiting_above_the_target_scales_up_at_once_with_the_reason_as_an_event_and_nothing_is_written_when_nothing_changes()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a", gpus: 8);
        await h.State.CreateClusterAsync(Spec(new AutoscaleSpec { Min = 1, Max = 5 }), default);
        await h.ReconcileAsync();
        var first = (await h.ReplicasAsync()).Single().Replica.Id;
        await h.ReadyAsync(first);
        await h.LoadAsync(first, running: 4, waiting: 14);

        var commits = h.Store.Commits;
        Assert.Equal(1, await AutoscaleAsync(h));
        Assert.Equal(commits + 1, h.Store.Commits);

        var view = await h.ClusterAsync();
        Assert.Equal(5, view.Cluster.Spec.Replicas);
        Assert.Equal(5, view.Autoscale!.Decision.Desired);
        var scaled = (await h.EventsAsync()).Last(e => e.Type == ClusterEventTypes.Scaled);
        Assert.Equal("scaled up 1→5: 14 waiting per replica, target 2 (steep rise: panic mode) (capped at max 5)", scaled.Message);
        Assert.Null(scaled.Actor);

        // The next passes see the same figures: starting replicas count as capacity, nothing changes, nothing is written.
        commits = h.Store.Commits;
        for (var i = 0; i < 3; i++)
        {
            h.Time.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(0, await AutoscaleAsync(h));
        }
        Assert.Equal(commits, h.Store.Commits);
        await h.ReconcileAsync();
        Assert.Equal(5, (await h.ReplicasAsync()).Count);
    }

    [Fact]
    public async Task Vanished_metrics_do_not_stop_scale_down_which_drains_the_surplus()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a", gpus: 4);
        await h.State.CreateClusterAsync(Spec(new AutoscaleSpec { Min = 1, Max = 4, ScaleDownWindowSeconds = 10 }, replicas: 3), default);
        await h.ReconcileAsync();
        var replicas = (await h.ReplicasAsync()).Select(r => r.Replica.Id).ToList();
        foreach (var id in replicas)
        {
            await h.ReadyAsync(id);
            await h.LoadAsync(id, running: 2, waiting: 1);
        }
        Assert.Equal(0, await AutoscaleAsync(h));

        // Their /metrics stop answering: heartbeats go on without figures, the last ones grow old.
        for (var second = 1; second <= 30; second++)
        {
            h.Time.Advance(TimeSpan.FromSeconds(1));
            foreach (var id in replicas) await h.ReportAsync(id, r => r with { Load = null });
            await AutoscaleAsync(h);
        }

        var view = await h.ClusterAsync();
        Assert.Equal(1, view.Cluster.Spec.Replicas);
        Assert.Equal(3, view.Autoscale!.Decision.MissingFigures);
        var scaled = (await h.EventsAsync()).Last(e => e.Type == ClusterEventTypes.Scaled);
        Assert.StartsWith("scaled down 3→1: highest recommendation over the last 10s is 0", scaled.Message, StringComparison.Ordinal);
        Assert.Contains("without figures", scaled.Message, StringComparison.Ordinal);
        await h.ReconcileAsync();
        Assert.Equal(2, (await h.ReplicasAsync()).Count(r => r.Replica.DrainingSince is not null));
    }

    [Fact]
    public async Task To_zero_after_the_idle_period_and_back_on_held_requests()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a", gpus: 4);
        await h.State.CreateClusterAsync(Spec(new AutoscaleSpec { Min = 0, Max = 4, ScaleDownWindowSeconds = 5, ScaleToZeroAfterSeconds = 20 }), default);
        await h.ReconcileAsync();
        await h.ReadyAsync((await h.ReplicasAsync()).Single().Replica.Id);

        for (var second = 0; second < 19; second++)
        {
            await AutoscaleAsync(h);
            h.Time.Advance(TimeSpan.FromSeconds(1));
        }
        Assert.Equal(1, (await h.ClusterAsync()).Cluster.Spec.Replicas);
        h.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, await AutoscaleAsync(h));
        Assert.Equal(0, (await h.ClusterAsync()).Cluster.Spec.Replicas);
        Assert.Equal("scaled to zero 1→0: no request for 20s (scale to zero after 20s)", (await h.EventsAsync()).Last(e => e.Type == ClusterEventTypes.Scaled).Message);
        await h.ReconcileAsync();
        Assert.NotNull((await h.ReplicasAsync()).Single().Replica.DrainingSince);

        // Five requests held at the edges: the target of 2 waiting per replica asks for 3.
        h.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, await AutoscaleAsync(h, new Dictionary<string, EdgeDemandSum> { ["demo"] = new(0, 5, 5) }));
        Assert.Equal(3, (await h.ClusterAsync()).Cluster.Spec.Replicas);
        Assert.Equal("scaled up 0→3: 5 waiting with no replica, target 2 per replica (steep rise: panic mode)", (await h.EventsAsync()).Last(e => e.Type == ClusterEventTypes.Scaled).Message);
    }

    [Fact]
    public async Task A_cluster_without_autoscaling_is_left_alone_and_the_route_carries_its_max_held()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a");
        await h.State.CreateClusterAsync(new ClusterSpec { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1, MaxHeld = 7 }, default);
        await h.ReconcileAsync();
        var id = (await h.ReplicasAsync()).Single().Replica.Id;
        await h.ReadyAsync(id);
        await h.LoadAsync(id, running: 4, waiting: 50);

        Assert.Equal(0, await AutoscaleAsync(h));
        var view = await h.ClusterAsync();
        Assert.Equal(1, view.Cluster.Spec.Replicas);
        Assert.Null(view.Autoscale);
        Assert.Equal(7, (await h.State.BuildRouteTableAsync(1, default)).Clusters["demo"].MaxHeld);
    }

    [Fact]
    public async Task A_user_scale_is_refused_while_the_autoscaler_owns_the_count_and_settings_changes_are_events()
    {
        await using var h = await StateHarness.StartAsync();
        await h.State.CreateClusterAsync(Spec(new AutoscaleSpec { Min = 1, Max = 4 }), default);

        var refused = await h.State.UpdateClusterAsync("demo", new UpdateClusterRequest { Replicas = 3 }, default);
        Assert.Contains("autoscaling owns the replica count of 'demo' (min 1, max 4)", refused.Error, StringComparison.Ordinal);

        var raised = await h.State.UpdateClusterAsync("demo", new UpdateClusterRequest { Autoscale = new AutoscaleRequest { Min = 2, Max = 6 } }, default);
        Assert.Null(raised.Error);
        Assert.Equal(2, raised.Cluster!.Spec.Replicas);
        var events = await h.EventsAsync();
        Assert.Contains(events, e => e.Type == ClusterEventTypes.Autoscale && e.Message == "autoscaling on: 2..6 replicas, target 2 waiting per replica, scale-down window 5m");
        Assert.Contains(events, e => e.Type == ClusterEventTypes.Scaled && e.Message == "scaled from 1 to 2 replicas");

        // The settings are in the stored spec: a restarted server has them.
        await h.RestartAsync();
        Assert.Equal(new AutoscaleSpec { Min = 2, Max = 6 }, (await h.ClusterAsync()).Cluster.Spec.Autoscale);

        var off = await h.State.UpdateClusterAsync("demo", new UpdateClusterRequest { Autoscale = new AutoscaleRequest { Off = true } }, default);
        Assert.Null(off.Cluster!.Spec.Autoscale);
        Assert.Contains(await h.EventsAsync(), e => e.Type == ClusterEventTypes.Autoscale && e.Message == "autoscaling off: the replica count is fixed");
    }

    [Fact]
    public async Task Cold_starts_are_kept_in_four_parts_with_percentiles()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("a", gpus: 1);
        // Two replicas, one GPU: the second waits for a node until another is added.
        await h.State.CreateClusterAsync(new ClusterSpec { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 2 }, default);
        await h.ReconcileAsync();
        h.Time.Advance(TimeSpan.FromMilliseconds(300));
        await h.AddNodeAsync("b", gpus: 1);
        await h.ReconcileAsync();
        var ids = (await h.ReplicasAsync()).OrderBy(r => r.Replica.AssignedAt).Select(r => r.Replica.Id).ToList();
        var placed = h.Time.GetUtcNow();
        foreach (var (id, i) in ids.Select((id, i) => (id, i)))
        {
            var started = placed + TimeSpan.FromSeconds(1 + i);
            await h.ReportAsync(id, r => r with
            {
                State = ReplicaState.Ready,
                Healthy = true,
                HostPort = 41000 + i,
                PulledAt = started,
                StartedAt = started,
                ReadyAt = started + TimeSpan.FromSeconds(5),
            });
        }
        var served = new Dictionary<string, DateTimeOffset> { [ids[0]] = placed + TimeSpan.FromSeconds(6.25) };

        await AutoscaleAsync(h, firstServed: id => served.TryGetValue(id, out var at) ? at : null);
        var cold = (await h.ClusterAsync()).ColdStart!;

        Assert.Equal(new LatencySummary { Count = 2, P50Ms = 0, P90Ms = 300, MaxMs = 300 }, cold.NodeWait);
        // Pulled 1.3 s after the first was placed, 2 s after the second.
        Assert.Equal(new LatencySummary { Count = 2, P50Ms = 1300, P90Ms = 2000, MaxMs = 2000 }, cold.ImagePull);
        Assert.Equal(new LatencySummary { Count = 2, P50Ms = 5000, P90Ms = 5000, MaxMs = 5000 }, cold.Start);
        Assert.Equal(new LatencySummary { Count = 1, P50Ms = 250, P90Ms = 250, MaxMs = 250 }, cold.WarmUp);

        // The same figures on the server's /metrics.
        var metrics = new System.Text.StringBuilder();
        new ControlPlaneMetrics(h.State).Render(metrics);
        var text = metrics.ToString();
        Assert.Contains("shoal_cluster_replicas_desired{cluster=\"demo\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("shoal_cluster_cold_start_seconds{cluster=\"demo\",part=\"image_pull\",stat=\"p50\"} 1.3\n", text, StringComparison.Ordinal);
        Assert.Contains("shoal_cluster_cold_start_seconds{cluster=\"demo\",part=\"warm_up\",stat=\"max\"} 0.25\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("shoal_autoscale_panic{", text, StringComparison.Ordinal);
    }
}

/// <summary>The edges' demand reports as the autoscaler sees them.</summary>
public sealed class DemandBookTests
{
    private readonly Microsoft.Extensions.Time.Testing.FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero));

    private static DemandReport Report(int inFlight, int held, double arrivals = 1, bool wake = false, Dictionary<string, DateTimeOffset>? served = null) => new()
    {
        Clusters = new Dictionary<string, ClusterDemand>(StringComparer.Ordinal) { ["demo"] = new ClusterDemand { InFlight = inFlight, Held = held, Arrivals = arrivals } },
        FirstServed = served,
        Wake = wake,
    };

    [Fact]
    public void Reports_sum_over_edges_each_replacing_its_last_and_expire_when_an_edge_falls_silent()
    {
        var book = new DemandBook(_time);
        book.Report("edge-1", Report(5, 1));
        book.Report("edge-2", Report(3, 0));
        book.Report("edge-1", Report(2, 2, arrivals: double.NaN));
        Assert.Equal(new EdgeDemandSum(5, 2, 1), book.Sum()["demo"]);

        _time.Advance(TimeSpan.FromSeconds(2));
        book.Report("edge-2", Report(1, 0));
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(new EdgeDemandSum(1, 0, 1), book.Sum()["demo"]);

        book.Remove("edge-2");
        Assert.False(book.Sum().ContainsKey("demo"));
    }

    [Fact]
    public void A_wake_runs_the_autoscaler_at_once_and_first_served_keeps_the_earliest()
    {
        var book = new DemandBook(_time);
        var wakes = 0;
        book.WakeRequested += () => wakes++;
        var t0 = _time.GetUtcNow();
        book.Report("edge-1", Report(0, 1, wake: true, served: new() { ["r-1"] = t0 + TimeSpan.FromSeconds(2) }));
        book.Report("edge-2", Report(0, 1, served: new() { ["r-1"] = t0 + TimeSpan.FromSeconds(1) }));
        book.Report(InProcessDemandSink.EdgeName, Report(0, 0, served: new() { ["r-1"] = t0 + TimeSpan.FromSeconds(3) }));

        Assert.Equal(1, wakes);
        Assert.Equal(t0 + TimeSpan.FromSeconds(1), book.FirstServed("r-1"));
        Assert.Null(book.FirstServed("r-2"));
    }
}
