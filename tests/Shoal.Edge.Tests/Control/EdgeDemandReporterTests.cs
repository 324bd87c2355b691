using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Autoscaling;
using Shoal.Core.Routing;
using Shoal.Edge.Control;
using Shoal.Edge.Routing;
using Shoal.Testing;

namespace Shoal.Edge.Tests.Control;

public sealed class EdgeDemandReporterTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new();
    private readonly RouteTableHolder _routes = new();
    private readonly EdgeRouter _router;
    private readonly RecordingSink _sink = new();
    private readonly EdgeDemandReporter _reporter;

    public EdgeDemandReporterTests()
    {
        _routes.Update(new RouteTable
        {
            Version = 1,
            Clusters = new(StringComparer.Ordinal)
            {
                ["cold"] = TestEdge.Route("cold", []),
                ["warm"] = TestEdge.Route("warm", [("r1", new Uri("http://127.0.0.1:9"))]),
            },
        });
        _router = new EdgeRouter(_routes, new RoutingSignal(), _time);
        _reporter = new EdgeDemandReporter(_router, _time, [_sink], NullLogger<EdgeDemandReporter>.Instance);
    }

    public Task InitializeAsync() => _reporter.StartAsync(CancellationToken.None);

    public async Task DisposeAsync()
    {
        await _reporter.StopAsync(CancellationToken.None);
        _reporter.Dispose();
        _router.Dispose();
    }

    private ClusterView Cold => _router.Find("cold")!;

    private ClusterView Warm => _router.Find("warm")!;

    private void HoldCold() => Cold.State.Queue.TryEnqueue(_time.GetTimestamp(), _time.GetTimestamp() + _time.TimestampFrequency * 600, 100, default);

    /// <summary>Advances fake time by a second and waits until the periodic report (if any) was made.</summary>
    private async Task TickAsync(int expectedReports)
    {
        _time.Advance(EdgeDemandReporter.Period);
        await Eventually.UntilAsync(() => _sink.Count >= expectedReports, what: $"{expectedReports} reports");
        // Long enough for a report that should not come to show up.
        await Task.Delay(100);
        Assert.Equal(expectedReports, _sink.Count);
    }

    [Fact]
    public async Task Every_second_while_there_is_demand_it_reports_in_flight_held_and_arrivals_per_cluster_and_once_more_when_it_stops()
    {
        await TickAsync(0);

        HoldCold();
        HoldCold();
        Interlocked.Add(ref Cold.State._arrivals, 2);
        Interlocked.Add(ref Warm.State._arrivals, 10);
        Interlocked.Add(ref Warm.Targets[0].State._inFlight, 3);
        await TickAsync(1);
        var report = _sink.Last;
        Assert.False(report.Wake);
        Assert.Equal(new ClusterDemand { InFlight = 0, Held = 2, Arrivals = 2 }, report.Clusters["cold"]);
        Assert.Equal(new ClusterDemand { InFlight = 3, Held = 0, Arrivals = 10 }, report.Clusters["warm"]);

        // Arrivals are per second of the period: 5 in the next second on warm, whose requests are still in flight.
        Interlocked.Add(ref Warm.State._arrivals, 5);
        await TickAsync(2);
        Assert.Equal(new ClusterDemand { InFlight = 3, Held = 0, Arrivals = 5 }, _sink.Last.Clusters["warm"]);
        Assert.Equal(new ClusterDemand { InFlight = 0, Held = 2, Arrivals = 0 }, _sink.Last.Clusters["cold"]);

        // Demand ends: one report without clusters, then silence.
        while (Cold.State.Queue.ReleaseOldest())
        {
        }
        Interlocked.Add(ref Warm.Targets[0].State._inFlight, -3);
        await TickAsync(3);
        Assert.Empty(_sink.Last.Clusters);
        await TickAsync(3);
        await TickAsync(3);
    }

    [Fact]
    public async Task A_request_held_for_a_cluster_at_zero_is_reported_at_once_and_a_burst_makes_one_report()
    {
        HoldCold();
        for (var i = 0; i < 1000; i++) _reporter.Wake(Cold.State);
        await Eventually.UntilAsync(() => _sink.Count == 1, what: "the wake-up report");
        await Task.Delay(200);
        Assert.Equal(1, _sink.Count);
        Assert.True(_sink.Last.Wake);
        Assert.Equal(1, _sink.Last.Clusters["cold"].Held);
        Assert.Equal(1, _reporter.WakeReports);

        // Within the second no more wake-ups; after it, the next one goes at once again.
        _time.Advance(TimeSpan.FromMilliseconds(500));
        _reporter.Wake(Cold.State);
        await Task.Delay(100);
        Assert.Equal(1, _reporter.WakeReports);
        _time.Advance(TimeSpan.FromMilliseconds(500));
        await Eventually.UntilAsync(() => _sink.Count == 2, what: "the periodic report");
        _reporter.Wake(Cold.State);
        await Eventually.UntilAsync(() => _reporter.WakeReports == 2, what: "a second wake-up");
    }

    [Fact]
    public async Task Each_replica_is_reported_once_when_it_first_finished_a_response()
    {
        var replica = Warm.Targets[0].State;
        var served = _time.GetUtcNow();
        _reporter.Served(replica);
        _time.Advance(TimeSpan.FromMilliseconds(10));
        _reporter.Served(replica);
        Interlocked.Increment(ref Warm.State._arrivals);
        await TickAsync(1);
        Assert.Single(_sink.Last.FirstServed!);
        Assert.Equal(served, _sink.Last.FirstServed!["r1"]);

        Interlocked.Increment(ref Warm.State._arrivals);
        _reporter.Served(replica);
        await TickAsync(2);
        Assert.Null(_sink.Last.FirstServed);
    }

    private sealed class RecordingSink : IEdgeDemandSink
    {
        private readonly List<DemandReport> _reports = [];

        public int Count
        {
            get
            {
                lock (_reports) return _reports.Count;
            }
        }

        public DemandReport Last
        {
            get
            {
                lock (_reports) return _reports[^1];
            }
        }

        public void Report(DemandReport report)
        {
            lock (_reports) _reports.Add(report);
        }
    }
}
