using System.Globalization;

namespace Shoal.Core.Autoscaling;

/// <summary>
/// The autoscaler's rule, pure code over one cluster's figures (docs/autoscaling.md has the formula):
/// <list type="number">
/// <item>Waiting W = requests waiting at ready replicas (their vLLM figure) + requests held at the
/// edges. With a waiting target t_w the cluster is saturated when W &gt; t_w × current; then it asks
/// for ceil(W / t_w). Not saturated, waiting cannot say how few replicas would do, only how many are
/// busy: it asks for the replicas with requests (running or waiting; for replicas whose figures are
/// missing, the edge's in-flight count beyond what the others report stands in).</item>
/// <item>Concurrency C = in flight + held at the edges. With a concurrency target t_c it asks for
/// ceil(C / t_c).</item>
/// <item>The recommendation is the larger. Up: applied at once, whole. A recommendation of at least
/// <see cref="PanicThreshold"/>× the current count is a steep rise: panic mode, no scale-down for
/// <see cref="PanicHold"/> (at most the scale-down window) after it (a burst's queue drains fast once new replicas are ready; the
/// count must not follow it down). Starting and pending replicas count as capacity, so a burst held
/// while replicas start asks for no more.</item>
/// <item>Down: only to the highest recommendation over the scale-down window.</item>
/// <item>Bounds min..max; with min 0, zero only after scale-to-zero-after without any demand (no
/// request in flight, held or arriving, no replica reporting work), otherwise at least 1.</item>
/// </list>
/// </summary>
public static class Autoscaler
{
    /// <summary>A recommendation this many times the current count (or more) is a steep rise.</summary>
    public const double PanicThreshold = 2.0;

    /// <summary>How long panic mode holds the count up after the last steep rise (Knative's stable window), at most the scale-down window.</summary>
    public static readonly TimeSpan PanicHold = TimeSpan.FromSeconds(60);

    public static AutoscaleDecision Decide(AutoscaleInput input, AutoscaleHistory history)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(history);
        var s = input.Settings;
        var now = input.Now;
        var current = input.Current;
        var demand = input.Demand;

        double replicaWaiting = 0, replicaRunning = 0;
        int missing = 0, busy = 0;
        foreach (var r in input.Replicas)
        {
            if (!r.Known)
            {
                missing++;
                continue;
            }
            replicaWaiting += r.Waiting!.Value;
            replicaRunning += r.Running!.Value;
            if (r.Waiting.Value > 0 || r.Running.Value > 0) busy++;
        }
        // Requests in flight at the edges that no known figure accounts for are at the replicas without figures.
        if (missing > 0) busy += Math.Min(missing, (int)Math.Ceiling(Math.Max(0, demand.InFlight - replicaRunning - replicaWaiting)));

        var waiting = replicaWaiting + demand.Held;
        var concurrency = demand.InFlight + demand.Held;
        var anyDemand = demand.Any || replicaWaiting > 0 || replicaRunning > 0;
        history.LastDemandAt ??= now;
        if (anyDemand) history.LastDemandAt = now;

        var recommended = 0;
        string signal;
        var perReplica = waiting / Math.Max(current, 1);
        if (s.TargetWaiting > 0 && waiting > s.TargetWaiting * current)
        {
            recommended = (int)Math.Ceiling(waiting / s.TargetWaiting);
            signal = current == 0
                ? Invariant($"{waiting:0.#} waiting with no replica, target {s.TargetWaiting:0.##} per replica")
                : Invariant($"{perReplica:0.#} waiting per replica, target {s.TargetWaiting:0.##}");
        }
        else
        {
            if (s.TargetWaiting > 0 && s.TargetConcurrency <= 0) recommended = busy;
            signal = s.TargetWaiting > 0
                ? Invariant($"{perReplica:0.#} waiting per replica (target {s.TargetWaiting:0.##}), {busy} busy")
                : "";
        }
        if (s.TargetConcurrency > 0)
        {
            var byConcurrency = (int)Math.Ceiling(concurrency / s.TargetConcurrency);
            var text = Invariant($"{(double)concurrency / Math.Max(current, 1):0.#} in flight + held per replica, target {s.TargetConcurrency:0.##}");
            if (byConcurrency > recommended || signal.Length == 0) signal = byConcurrency >= recommended ? text : signal + "; " + text;
            else signal += "; " + text;
            recommended = Math.Max(recommended, byConcurrency);
        }
        if (missing > 0) signal += Invariant($" ({missing} replica(s) without figures: the edges' counts stand in)");

        var window = TimeSpan.FromSeconds(s.ScaleDownWindowSeconds);
        history.Record(now, recommended, window);
        if (recommended >= PanicThreshold * Math.Max(current, 1) && recommended > current)
        {
            history.PanicUntil = now + (PanicHold < window ? PanicHold : window);
        }
        else if (history.PanicUntil is { } until && now >= until)
        {
            history.PanicUntil = null;
        }
        var panic = history.PanicUntil is not null;

        int desired;
        string why;
        if (recommended > current)
        {
            desired = recommended;
            why = signal + (panic ? " (steep rise: panic mode)" : "");
        }
        else if (panic)
        {
            desired = current;
            why = signal + " (panic mode: no scale-down until it ends)";
        }
        else
        {
            var windowMax = history.MaxRecommended;
            var seen = now - (history.Since ?? now);
            if (windowMax < current && seen < window)
            {
                // A fresh history (a new cluster, a restarted server) has not seen a whole window yet:
                // what came before it is unknown, so the count stays until it has.
                desired = current;
                why = Invariant($"{signal} (scale-down waits for a whole {Format(window)} window: {Format(seen)} seen)");
            }
            else
            {
                desired = Math.Min(current, windowMax);
                why = desired < current
                    ? Invariant($"highest recommendation over the last {Format(window)} is {windowMax}: {signal}")
                    : signal;
            }
        }

        var idle = now - history.LastDemandAt.Value;
        var floor = s.Min;
        if (s.Min == 0 && s.ScaleToZeroAfterSeconds > 0)
        {
            var toZero = TimeSpan.FromSeconds(s.ScaleToZeroAfterSeconds);
            if (idle >= toZero)
            {
                desired = 0;
                why = Invariant($"no request for {Format(idle)} (scale to zero after {Format(toZero)})");
            }
            else if (current > 0)
            {
                // Running replicas stay until the idle period is over; a cluster already at zero stays
                // there until a request comes (created at 0, or scaled to zero before a restart).
                floor = 1;
            }
        }
        if (desired < floor)
        {
            desired = floor;
            if (desired != current) why += Invariant($" (min {floor})");
        }
        if (desired > s.Max)
        {
            desired = s.Max;
            why += Invariant($" (capped at max {s.Max})");
        }
        return new AutoscaleDecision(desired, why.TrimStart())
        {
            Waiting = waiting,
            InFlight = demand.InFlight,
            Held = demand.Held,
            Recommended = recommended,
            Panic = panic,
            MissingFigures = missing,
        };
    }

    /// <summary>The event text of a change: <c>scaled up 2→5: 14 waiting per replica, target 2</c>.</summary>
    public static string Describe(int from, AutoscaleDecision decision)
    {
        ArgumentNullException.ThrowIfNull(decision);
        var verb = decision.Desired == 0 ? "scaled to zero" : decision.Desired > from ? "scaled up" : "scaled down";
        return Invariant($"{verb} {from}→{decision.Desired}: {decision.Reason}");
    }

    /// <summary>A duration as a person writes it: 300 s is <c>5m</c>, 90 s is <c>1m30s</c>.</summary>
    public static string Format(TimeSpan span)
    {
        var seconds = (long)Math.Round(span.TotalSeconds);
        if (seconds < 60) return Invariant($"{seconds}s");
        if (seconds < 3600) return seconds % 60 == 0 ? Invariant($"{seconds / 60}m") : Invariant($"{seconds / 60}m{seconds % 60}s");
        return (seconds % 3600) == 0 ? Invariant($"{seconds / 3600}h") : Invariant($"{seconds / 3600}h{seconds % 3600 / 60}m");
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
