using System.Collections.Concurrent;

namespace Shoal.ControlPlane.State;

/// <summary>What an operation under the state's lock asks for once the lock is released.</summary>
[Flags]
internal enum StateEffects
{
    None = 0,
    /// <summary>The route table changed.</summary>
    Routes = 1,
    /// <summary>A reconcile pass may have work.</summary>
    Reconcile = 2,
    /// <summary>Observed state waits to be written.</summary>
    Flush = 4,
}

/// <summary>
/// Small operations on the state (agents' reports and acknowledgements), many under one hold of the
/// state's lock. The first caller to find no batch running takes the lock and applies whatever is
/// queued by then, in order; the others only queue and are completed by it, on its thread, once the
/// lock is released. In a deploy burst thousands of reports a second contend for the lock with the
/// reconciler's passes: one hand-off per report woke a thread-pool thread each (a tenth of the
/// server's CPU at 10,000 agents), one per batch does not.
/// </summary>
internal sealed class StateBatch(StateGate gate, Action<StateEffects> raise)
{
    private readonly ConcurrentQueue<Op> _queue = new();
    private int _draining;

    /// <summary>Applies <paramref name="apply"/> under the state's lock; the task completes once it ran and the lock was released.</summary>
    public Task RunAsync(Func<StateEffects> apply)
    {
        var op = new Op(apply);
        _queue.Enqueue(op);
        if (Interlocked.CompareExchange(ref _draining, 1, 0) == 0) _ = DrainAsync();
        return op.Task;
    }

    private async Task DrainAsync()
    {
        do
        {
            var done = new List<(Op Op, Exception? Error)>();
            var effects = StateEffects.None;
            try
            {
                // Not the caller's token: the batch holds other callers' work too, and the lock is always released.
                await gate.WaitAsync(CancellationToken.None, "ReportBatch");
                try
                {
                    while (_queue.TryDequeue(out var op))
                    {
                        try
                        {
                            effects |= op.Apply();
                            done.Add((op, null));
                        }
                        catch (Exception e)
                        {
                            done.Add((op, e));
                        }
                    }
                }
                finally
                {
                    gate.Release();
                }
                if (effects != StateEffects.None) raise(effects);
            }
            catch (Exception e)
            {
                // The lock or an event's handler failed: every caller hears of it, none is left waiting.
                while (_queue.TryDequeue(out var op)) done.Add((op, e));
                for (var i = 0; i < done.Count; i++) done[i] = (done[i].Op, done[i].Error ?? e);
            }
            foreach (var (op, error) in done)
            {
                if (error is null) op.TrySetResult();
                else op.TrySetException(error);
            }
            Volatile.Write(ref _draining, 0);
        }
        while (!_queue.IsEmpty && Interlocked.CompareExchange(ref _draining, 1, 0) == 0);
    }

    // Completed on the batch's thread (no RunContinuationsAsynchronously): a caller's continuation
    // runs there, after the lock is released, instead of waking a thread of its own.
    private sealed class Op(Func<StateEffects> apply) : TaskCompletionSource
    {
        public Func<StateEffects> Apply { get; } = apply;
    }
}
