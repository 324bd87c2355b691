using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace Shoal.ControlPlane.State;

/// <summary>
/// The state's lock (one holder at a time, async), measured: how long each operation waited for it
/// and held it (<c>shoal.state.lock.wait</c> and <c>shoal.state.lock.held</c>, ms, tagged with the
/// operation's method name), on the <c>Shoal.ControlPlane</c> meter. With no listener the figures cost a
/// timestamp read each.
/// </summary>
internal sealed class StateGate : IDisposable
{
    private static readonly Meter s_meter = new(Agents.AgentGatewayMetrics.MeterName);
    private static readonly Histogram<double> s_wait = s_meter.CreateHistogram<double>("shoal.state.lock.wait", "ms", "Time an operation waited for the control plane state's lock");
    private static readonly Histogram<double> s_held = s_meter.CreateHistogram<double>("shoal.state.lock.held", "ms", "Time an operation held the control plane state's lock (store commit included)");

    private static readonly Histogram<double> s_commit = s_meter.CreateHistogram<double>("shoal.state.commit.duration", "ms", "Time the store commit of an operation took while it held the state's lock");
    private static readonly Histogram<double> s_plan = s_meter.CreateHistogram<double>("shoal.state.plan.duration", "ms", "Time a reconcile pass took to build its plan while it held the state's lock");

    private readonly SemaphoreSlim _semaphore = new(1, 1);
    private long _enteredAt;
    private string _operation = "";

    /// <summary>Waits for the lock; <paramref name="operation"/> names the caller in the figures.</summary>
    public Task WaitAsync(CancellationToken ct = default, [CallerMemberName] string operation = "")
    {
        if (ct.IsCancellationRequested) return Task.FromCanceled(ct);
        var start = Stopwatch.GetTimestamp();
        if (_semaphore.Wait(0))
        {
            Entered(start, operation);
            return Task.CompletedTask;
        }
        return WaitSlowAsync(start, operation, ct);
    }

    private async Task WaitSlowAsync(long start, string operation, CancellationToken ct)
    {
        await _semaphore.WaitAsync(ct);
        Entered(start, operation);
    }

    private void Entered(long start, string operation)
    {
        var now = Stopwatch.GetTimestamp();
        if (s_wait.Enabled) s_wait.Record(Stopwatch.GetElapsedTime(start, now).TotalMilliseconds, new KeyValuePair<string, object?>("op", operation));
        _enteredAt = now;
        _operation = operation;
    }

    /// <summary>Records the store commit of the operation holding the lock, from <paramref name="start"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public void CommitDone(long start)
    {
        if (s_commit.Enabled) s_commit.Record(Stopwatch.GetElapsedTime(start).TotalMilliseconds, new KeyValuePair<string, object?>("op", _operation));
    }

    /// <summary>Records a reconcile pass's planning, from <paramref name="start"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public static void PlanDone(long start)
    {
        if (s_plan.Enabled) s_plan.Record(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    }

    public void Release()
    {
        if (s_held.Enabled) s_held.Record(Stopwatch.GetElapsedTime(_enteredAt).TotalMilliseconds, new KeyValuePair<string, object?>("op", _operation));
        _semaphore.Release();
    }

    public void Dispose() => _semaphore.Dispose();
}
