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
/// Operations on the state that arrive together go under one hold of the state's lock. The first
/// caller to find no batch running takes the lock for every operation queued by then;
/// <paramref name="underLock"/> handles them all and returns what to do once the lock is released
/// (complete the callers, raise events), which runs on the batch's thread. If the lock, the batch
/// or that follow-up throws, <paramref name="failed"/> hears it with the batch (callers not yet
/// completed get the error). In a deploy burst thousands of agents' reports and dozens of creates a
/// second contend for the lock with the reconciler's passes: one hand-off per operation woke a
/// thread-pool thread each (a tenth of the server's CPU at 10,000 agents) and queued each create
/// behind a pass or a flush; one per batch does neither.
/// </summary>
internal sealed class StateBatch<TOp>(StateGate gate, string operation, Func<List<TOp>, Task<Action>> underLock, Action<List<TOp>, Exception> failed)
{
    private readonly ConcurrentQueue<TOp> _queue = new();
    private int _draining;

    /// <summary>Queues <paramref name="op"/>; its caller learns the outcome from the op itself (a task it completes).</summary>
    public void Add(TOp op)
    {
        _queue.Enqueue(op);
        if (Interlocked.CompareExchange(ref _draining, 1, 0) == 0) _ = DrainAsync();
    }

    private async Task DrainAsync()
    {
        do
        {
            var batch = new List<TOp>();
            try
            {
                // Not a caller's token: the batch holds other callers' work, and the lock is always released.
                await gate.WaitAsync(CancellationToken.None, operation);
                Action after;
                try
                {
                    while (_queue.TryDequeue(out var op)) batch.Add(op);
                    after = await underLock(batch);
                }
                finally
                {
                    gate.Release();
                }
                after();
            }
            catch (Exception e)
            {
                while (_queue.TryDequeue(out var op)) batch.Add(op);
                failed(batch, e);
            }
            Volatile.Write(ref _draining, 0);
        }
        while (!_queue.IsEmpty && Interlocked.CompareExchange(ref _draining, 1, 0) == 0);
    }
}
