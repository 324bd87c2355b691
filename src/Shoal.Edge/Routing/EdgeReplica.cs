namespace Shoal.Edge.Routing;

/// <summary>
/// What the edge knows about one replica beyond the route table: its in-flight requests, passive
/// health (consecutive failures, ejection) and counters. Lives across route-table swaps; updated
/// with interlocked operations only, so the request path takes no lock.
/// </summary>
public sealed class EdgeReplica
{
    /// <summary>Attempt outcomes counted per replica: status classes 1xx..5xx, then transport errors.</summary>
    internal const int OutcomeCount = 6;
    internal const int ErrorOutcome = 5;

    internal int _inFlight;
    internal int _consecutiveFailures;
    // TimeProvider timestamp until which the replica is ejected; 0 when it never was.
    internal long _ejectedUntil;
    // Ejections in a row without a success in between: the exponent of the back-off.
    internal int _ejectionLevel;
    internal long _ejections;
    internal readonly long[] _outcomes = new long[OutcomeCount];
    // TimeProvider timestamp since which the replica is absent from the route table; 0 while present.
    internal long _absentSince;
    // 1 once the replica finished a response through this edge (the end of its warm-up).
    internal int _served;
    // TimeProvider timestamp since which the replica is in the route table (its held-release ramp counts from it); 0 while absent.
    internal long _enteredAt;
    // Attempts to it that ended while requests were held for its cluster, since it entered the table: each widens its held-release window by one.
    internal int _rampAnswers;
    // Cancelled (and dropped) when the replica's node is lost; created again by the next attempt.
    private CancellationTokenSource? _lost;
    // Cancelled (and dropped) when the replica left the route table other than by draining; created again by the next attempt.
    private CancellationTokenSource? _departed;

    public EdgeReplica(string cluster, string replicaId, string? nodeId = null)
    {
        Cluster = cluster;
        ReplicaId = replicaId;
        NodeId = nodeId;
    }

    public string Cluster { get; }

    public string ReplicaId { get; }

    /// <summary>The node the replica runs on (a replica never moves).</summary>
    public string? NodeId { get; internal set; }

    /// <summary>Cancelled when the control plane reports the replica's node lost: attempts in flight to it stop.</summary>
    internal CancellationToken LostToken => TokenOf(ref _lost);

    /// <summary>
    /// Cancelled when the replica left the route table for another reason than draining (unhealthy,
    /// failed, removed): attempts in flight to it that have no response yet stop.
    /// </summary>
    internal CancellationToken DepartedToken => TokenOf(ref _departed);

    private static CancellationToken TokenOf(ref CancellationTokenSource? field)
    {
        var cts = Volatile.Read(ref field);
        if (cts is null)
        {
            var fresh = new CancellationTokenSource();
            cts = Interlocked.CompareExchange(ref field, fresh, null) ?? fresh;
            if (!ReferenceEquals(cts, fresh)) fresh.Dispose();
        }
        return cts.Token;
    }

    /// <summary>Cuts every attempt in flight to this replica (its node was lost); later attempts are unaffected.</summary>
    internal void CutInFlight()
    {
        // Not disposed: attempts still hold linked registrations on it; without a timer it needs no disposal.
        Interlocked.Exchange(ref _lost, null)?.Cancel();
    }

    /// <summary>Cuts the attempts in flight to this replica that have no response yet (it left routing); later attempts are unaffected.</summary>
    internal void CutUnanswered() => Interlocked.Exchange(ref _departed, null)?.Cancel();

    /// <summary>Requests the edge is forwarding to this replica now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    public int ConsecutiveFailures => Volatile.Read(ref _consecutiveFailures);

    /// <summary>Times this replica has been ejected.</summary>
    public long Ejections => Interlocked.Read(ref _ejections);

    internal void CountOutcome(int statusCode)
    {
        var i = statusCode is >= 100 and < 600 ? statusCode / 100 - 1 : ErrorOutcome;
        Interlocked.Increment(ref _outcomes[i]);
    }

    internal void CountError() => Interlocked.Increment(ref _outcomes[ErrorOutcome]);
}

/// <summary>Per-cluster counters, the round-robin cursor and the hold queue; lives across route-table swaps.</summary>
public sealed class ClusterState
{
    // Wakes a release pass when a replica's held-release window next grows (HoldReleaser); null until first needed.
    internal ITimer? _rampTimer;
    internal int _roundRobin = -1;
    internal long _retries;
    internal long _held;
    internal long _holdTimeouts;
    internal long _firstByteTimeouts;
    internal long _departedCuts;
    internal long _holdRefused;
    internal long _released;
    internal long _arrivals;
    // TimeProvider timestamp of the last immediate demand report (wake-up) for this cluster; 0: none yet.
    internal long _wokeAt;
    internal readonly long[] _responses = new long[5];
    // TimeProvider timestamp since which the cluster is absent from the route table; 0 while present.
    internal long _absentSince;

    public ClusterState(string name, TimeProvider? time = null)
    {
        Name = name;
        Queue = new HoldQueue(time ?? TimeProvider.System);
    }

    public string Name { get; }

    /// <summary>Requests waiting for a ready replica, oldest first.</summary>
    public HoldQueue Queue { get; }

    /// <summary>Requests for the cluster the edge accepted (past the key check), for the arrival rate.</summary>
    public long Arrivals => Interlocked.Read(ref _arrivals);

    /// <summary>Requests answered 503 at once because the hold queue was full.</summary>
    public long HoldRefused => Interlocked.Read(ref _holdRefused);

    /// <summary>Held requests handed on to a replica (or to a cluster that changed).</summary>
    public long Released => Interlocked.Read(ref _released);

    /// <summary>Time from arrival until the response is complete (streams included).</summary>
    public Histogram Duration { get; } = new();

    /// <summary>Time from arrival until the response headers came from a replica (for streams, the first token).</summary>
    public Histogram TimeToFirstByte { get; } = new();

    public long Retries => Interlocked.Read(ref _retries);

    public long Held => Interlocked.Read(ref _held);

    public long HoldTimeouts => Interlocked.Read(ref _holdTimeouts);

    /// <summary>Attempts cut because no response headers came within the time-to-first-byte cap.</summary>
    public long FirstByteTimeouts => Interlocked.Read(ref _firstByteTimeouts);

    /// <summary>Attempts cut without a response because their replica left the route table (not draining).</summary>
    public long DepartedCuts => Interlocked.Read(ref _departedCuts);

    /// <summary>Responses sent to clients with a status in <paramref name="statusClass"/> (1..5).</summary>
    public long Responses(int statusClass) => Interlocked.Read(ref _responses[statusClass - 1]);

    internal void CountResponse(int statusCode)
    {
        if (statusCode is >= 100 and < 600) Interlocked.Increment(ref _responses[statusCode / 100 - 1]);
    }
}

/// <summary>A lock-free histogram with fixed buckets, in seconds, for Prometheus.</summary>
public sealed class Histogram
{
    /// <summary>Upper bounds (seconds) of the buckets; +Inf is implied.</summary>
    public static readonly double[] Bounds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

    private readonly long[] _counts = new long[Bounds.Length + 1];
    private long _sumMicros;

    public void Observe(TimeSpan elapsed)
    {
        var seconds = elapsed.TotalSeconds;
        var i = 0;
        while (i < Bounds.Length && seconds > Bounds[i]) i++;
        Interlocked.Increment(ref _counts[i]);
        Interlocked.Add(ref _sumMicros, (long)(seconds * 1e6));
    }

    /// <summary>Observations in bucket <paramref name="i"/> alone (not cumulative); index <c>Bounds.Length</c> is +Inf.</summary>
    public long BucketCount(int i) => Interlocked.Read(ref _counts[i]);

    public double SumSeconds => Interlocked.Read(ref _sumMicros) / 1e6;

    public long Count
    {
        get
        {
            long total = 0;
            for (var i = 0; i < _counts.Length; i++) total += Interlocked.Read(ref _counts[i]);
            return total;
        }
    }
}
