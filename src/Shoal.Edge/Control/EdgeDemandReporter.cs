using System.Collections.Concurrent;
using Shoal.Contracts;
using Shoal.Core.Autoscaling;
using Shoal.Edge.Routing;

namespace Shoal.Edge.Control;

/// <summary>
/// Tells the control plane's autoscaler what this edge sees: every second while any cluster has
/// requests in flight, held or arriving (and once more when that stops), a <see cref="DemandReport"/>
/// to the registered <see cref="IEdgeDemandSink"/>; and at once (<see cref="DemandReport.Wake"/>)
/// when a request is held for a cluster with no ready replica, at most once a second per cluster,
/// so a burst of arrivals sends one report, not one each. Counts come from the counters the request
/// path keeps anyway (one interlocked increment per request for arrivals); the rest is read here.
/// Without a sink it does nothing.
/// </summary>
public sealed partial class EdgeDemandReporter : BackgroundService
{
    /// <summary>How often a report goes while there is demand.</summary>
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(1);

    private readonly EdgeRouter _router;
    private readonly TimeProvider _time;
    private readonly IEdgeDemandSink? _sink;
    private readonly ILogger<EdgeDemandReporter> _logger;
    private readonly Lock _gate = new();
    private readonly ConcurrentQueue<(string Replica, DateTimeOffset At)> _served = new();
    // Per cluster: the arrival count at the last periodic report (replaced by each one, so forgotten clusters leave it).
    private Dictionary<string, long> _arrivalBase = new(StringComparer.Ordinal);
    private long _lastPeriodic;
    private bool _lastHadDemand;
    private int _wakeQueued;
    private long _reports;
    private long _wakeReports;
    // Made with the reporter, not in ExecuteAsync (which runs on its own thread): its periods count from start.
    private readonly PeriodicTimer? _timer;

    public EdgeDemandReporter(EdgeRouter router, TimeProvider time, IEnumerable<IEdgeDemandSink> sinks, ILogger<EdgeDemandReporter> logger)
    {
        _router = router;
        _time = time;
        _sink = sinks.LastOrDefault();
        _logger = logger;
        _lastPeriodic = time.GetTimestamp();
        if (_sink is not null) _timer = new PeriodicTimer(Period, time);
    }

    /// <summary>Reports handed to the sink since start (wake-ups included).</summary>
    public long Reports => Interlocked.Read(ref _reports);

    /// <summary>Immediate reports for a cluster with no ready replica since start.</summary>
    public long WakeReports => Interlocked.Read(ref _wakeReports);

    /// <summary>Called on the request path when a request is held for a cluster whose route has no replica: sends a report at once, coalesced.</summary>
    internal void Wake(ClusterState cluster)
    {
        if (_sink is null) return;
        var now = _time.GetTimestamp();
        var last = Volatile.Read(ref cluster._wokeAt);
        if (last != 0 && _time.GetElapsedTime(last, now) < Period) return;
        if (Interlocked.CompareExchange(ref cluster._wokeAt, now, last) != last) return;
        if (Interlocked.Exchange(ref _wakeQueued, 1) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static r =>
            {
                Volatile.Write(ref r._wakeQueued, 0);
                r.Send(wake: true);
            }, this, preferLocal: false);
        }
    }

    /// <summary>Called on the request path when <paramref name="replica"/> finished a response and had not before: the end of its warm-up.</summary>
    internal void Served(EdgeReplica replica)
    {
        if (Interlocked.Exchange(ref replica._served, 1) != 0) return;
        LogFirstServed(_logger, replica.ReplicaId, replica.Cluster);
        if (_sink is null) return;
        _served.Enqueue((replica.ReplicaId, _time.GetUtcNow()));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_timer is null) return;
        try
        {
            while (await _timer.WaitForNextTickAsync(stoppingToken)) Send(wake: false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override void Dispose()
    {
        _timer?.Dispose();
        base.Dispose();
    }

    /// <summary>Builds the report of this moment and hands it to the sink (periodic: only while there is demand, and once after).</summary>
    internal void Send(bool wake)
    {
        if (_sink is null) return;
        DemandReport? report;
        lock (_gate)
        {
            report = Build(wake);
        }
        if (report is null) return;
        Interlocked.Increment(ref _reports);
        if (wake) Interlocked.Increment(ref _wakeReports);
        try
        {
            _sink.Report(report);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            LogSinkFailed(_logger, e.Message);
        }
    }

    private DemandReport? Build(bool wake)
    {
        var now = _time.GetTimestamp();
        // A wake-up between two periodic reports does not restart the arrival window; its rate is
        // over the window so far, at least a second long, so one request is not a rate of thousands.
        var window = _time.GetElapsedTime(_lastPeriodic, now);
        var seconds = wake ? Math.Max(window.TotalSeconds, Period.TotalSeconds) : Math.Max(window.TotalSeconds, 0.001);
        var inFlight = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var replica in _router.Replicas)
        {
            var n = replica.InFlight;
            if (n > 0) inFlight[replica.Cluster] = inFlight.GetValueOrDefault(replica.Cluster) + n;
        }
        var clusters = new Dictionary<string, ClusterDemand>(StringComparer.Ordinal);
        var nextBase = wake ? null : new Dictionary<string, long>(_arrivalBase.Count, StringComparer.Ordinal);
        foreach (var cluster in _router.Clusters)
        {
            var arrivals = cluster.Arrivals;
            var arrived = arrivals - _arrivalBase.GetValueOrDefault(cluster.Name);
            nextBase?.Add(cluster.Name, arrivals);
            var held = cluster.Queue.Count;
            var flying = inFlight.GetValueOrDefault(cluster.Name);
            if (held == 0 && flying == 0 && arrived <= 0) continue;
            clusters[cluster.Name] = new ClusterDemand { InFlight = flying, Held = held, Arrivals = arrived / seconds };
        }
        if (nextBase is not null)
        {
            _lastPeriodic = now;
            _arrivalBase = nextBase;
        }

        Dictionary<string, DateTimeOffset>? served = null;
        while (_served.TryDequeue(out var s)) (served ??= new(StringComparer.Ordinal))[s.Replica] = s.At;
        var demand = clusters.Count > 0;
        if (!wake && !demand && !_lastHadDemand && served is null) return null;
        _lastHadDemand = demand;
        return new DemandReport { Clusters = clusters, FirstServed = served, Wake = wake };
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Replica {Replica} of cluster {Cluster} finished its first response through this edge (its warm-up ends)")]
    private static partial void LogFirstServed(ILogger logger, string replica, string cluster);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A demand report could not be handed on: {Error}")]
    private static partial void LogSinkFailed(ILogger logger, string error);
}
