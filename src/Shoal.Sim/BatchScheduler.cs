using System.Runtime.CompilerServices;

namespace Shoal.Sim;

/// <summary>
/// A fixed number of batch slots with a bounded FIFO queue in front of them. A released slot is
/// handed straight to the oldest waiter; a waiter whose request is cancelled leaves the queue at once.
/// </summary>
public sealed class BatchScheduler
{
    private readonly Lock _lock = new();
    private readonly LinkedList<TaskCompletionSource<SlotLease>> _queue = new();
    private int _running;

    public BatchScheduler(int slots, int maxQueue)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxQueue);
        Slots = slots;
        MaxQueue = maxQueue;
    }

    public int Slots { get; }

    public int MaxQueue { get; }

    /// <summary>Requests holding a slot.</summary>
    public int Running
    {
        get
        {
            lock (_lock)
            {
                return _running;
            }
        }
    }

    /// <summary>Requests waiting for a slot.</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>
    /// Takes a slot, waiting in line when all are busy. Returns null at once when the queue is full.
    /// Throws <see cref="OperationCanceledException"/> if <paramref name="ct"/> fires while waiting.
    /// </summary>
    public Task<SlotLease?> AcquireAsync(CancellationToken ct)
    {
        if (ct.IsCancellationRequested)
        {
            return Task.FromCanceled<SlotLease?>(ct);
        }
        LinkedListNode<TaskCompletionSource<SlotLease>> node;
        lock (_lock)
        {
            if (_running < Slots && _queue.Count == 0)
            {
                _running++;
                return Task.FromResult<SlotLease?>(new SlotLease(this));
            }
            if (_queue.Count >= MaxQueue)
            {
                return Task.FromResult<SlotLease?>(null);
            }
            // Continuations run inline on purpose: the waiter is admitted (and starts its clock) within
            // the Release call that handed it the slot, which keeps timing exact under a fake clock.
            node = _queue.AddLast(new TaskCompletionSource<SlotLease>());
        }
        return WaitAsync(node, ct);
    }

    private async Task<SlotLease?> WaitAsync(LinkedListNode<TaskCompletionSource<SlotLease>> node, CancellationToken ct)
    {
        var registration = ct.Register(() =>
        {
            lock (_lock)
            {
                // Only a waiter still in line is cancelled; one already handed a slot keeps it and
                // releases it through its lease.
                if (node.List is null)
                {
                    return;
                }
                _queue.Remove(node);
            }
            node.Value.TrySetCanceled(ct);
        });
        try
        {
            return await node.Value.Task.ConfigureAwait(false);
        }
        finally
        {
            // Unregister rather than Dispose: this may run inside the callback itself, which Dispose would wait for.
            registration.Unregister();
        }
    }

    internal void Release()
    {
        TaskCompletionSource<SlotLease>? next = null;
        lock (_lock)
        {
            if (_queue.First is { } first)
            {
                _queue.RemoveFirst();
                next = first.Value;
            }
            else
            {
                _running--;
            }
        }
        if (next is null)
        {
            return;
        }
        if (RuntimeHelpers.TryEnsureSufficientExecutionStack())
        {
            next.TrySetResult(new SlotLease(this));
        }
        else
        {
            // A chain of requests that finish without ever waiting (zero delays) would otherwise
            // admit each other deeper and deeper on one stack.
            ThreadPool.QueueUserWorkItem(static state => state.Next.TrySetResult(new SlotLease(state.Owner)), (Next: next, Owner: this), preferLocal: false);
        }
    }
}

/// <summary>One batch slot; disposing it (once or more) gives the slot back.</summary>
public sealed class SlotLease : IDisposable
{
    private BatchScheduler? _owner;

    internal SlotLease(BatchScheduler owner) => _owner = owner;

    public void Dispose() => Interlocked.Exchange(ref _owner, null)?.Release();
}
