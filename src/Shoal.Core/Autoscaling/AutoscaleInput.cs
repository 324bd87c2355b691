using Shoal.Contracts;

namespace Shoal.Core.Autoscaling;

/// <summary>
/// One ready replica's figures from its last heartbeat (vLLM's <c>num_requests_waiting</c> and
/// <c>num_requests_running</c>); null or NaN when its <c>/metrics</c> failed, returned NaN, or the
/// figure is too old to trust.
/// </summary>
public readonly record struct ReplicaSignal(double? Waiting, double? Running)
{
    public static readonly ReplicaSignal Missing = new(null, null);

    /// <summary>True when both figures can be used.</summary>
    public bool Known => Waiting is { } w && double.IsFinite(w) && w >= 0 && Running is { } r && double.IsFinite(r) && r >= 0;
}

/// <summary>A cluster's demand at the edges, summed over every edge whose report is current.</summary>
public readonly record struct EdgeDemandSum(int InFlight, int Held, double Arrivals)
{
    public static readonly EdgeDemandSum None = new(0, 0, 0);

    public bool Any => InFlight > 0 || Held > 0 || Arrivals > 0;
}

/// <summary>What the autoscaler decides one cluster's replica count from.</summary>
public sealed record AutoscaleInput
{
    public required AutoscaleSpec Settings { get; init; }
    public required DateTimeOffset Now { get; init; }
    /// <summary>The replica count now (the spec's: ready, starting and pending replicas alike; not draining ones).</summary>
    public required int Current { get; init; }
    /// <summary>Replicas of <see cref="Current"/> that take requests now.</summary>
    public int Ready { get; init; }
    /// <summary>The ready replicas' figures, one each.</summary>
    public IReadOnlyList<ReplicaSignal> Replicas { get; init; } = [];
    public EdgeDemandSum Demand { get; init; }
}

/// <summary>
/// The autoscaler's decision for one cluster: the replica count it wants and why, with the figures
/// it saw. <see cref="Desired"/> equals the input's current count when nothing should change.
/// </summary>
public sealed record AutoscaleDecision(int Desired, string Reason)
{
    /// <summary>Requests waiting at replicas plus held at the edges.</summary>
    public double Waiting { get; init; }
    public int InFlight { get; init; }
    public int Held { get; init; }
    /// <summary>The replica count the signals ask for now, before stabilisation and bounds.</summary>
    public int Recommended { get; init; }
    /// <summary>In panic mode (a steep rise): no scale-down until it ends.</summary>
    public bool Panic { get; init; }
    /// <summary>Ready replicas whose figures were missing or NaN (the edge's counts stood in).</summary>
    public int MissingFigures { get; init; }
}
