namespace Shoal.Edge.Routing;

/// <summary>How a held request left the <see cref="HoldQueue"/>.</summary>
public enum HoldOutcome
{
    /// <summary>A replica may take it now (or the cluster changed so that waiting makes no sense): look again.</summary>
    Released,
    /// <summary>Its queue timeout passed.</summary>
    TimedOut,
    /// <summary>The client went away; nothing is left to answer.</summary>
    Aborted,
    /// <summary>The queue was full: the request was never queued.</summary>
    Full,
}

/// <summary>
/// One cluster's requests waiting for a ready replica, in arrival order, bounded. A request leaves
/// it when a release pass hands it on (oldest first), when its queue timeout passes (one timer per
/// queue, set to the earliest deadline, not one per request) or at once when its client disconnects
/// (which frees its slot). The request path only reads <see cref="Count"/> unless it holds.
/// </summary>
public sealed class HoldQueue
{
    private readonly object _lock = new();
    private readonly TimeProvider _time;
    private Held? _head;
    private Held? _tail;
    private int _count;
    // False once an entry was queued with an earlier deadline than one before it (the queue timeout
    // was shortened): expiry then scans the whole queue instead of stopping at the first live entry.
    private bool _deadlinesInOrder = true;
    private ITimer? _timer;
    // Timestamp the timer is set for; long.MaxValue when it is not set.
    private long _timerDue = long.MaxValue;
    internal int _passRequests;

    public HoldQueue(TimeProvider time) => _time = time;

    /// <summary>Requests held now.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Queues a request that arrived at <paramref name="arrived"/> (a <see cref="TimeProvider"/>
    /// timestamp) until <paramref name="deadline"/>, after every request that arrived before it;
    /// null when <paramref name="max"/> requests are held already. The entry completes with
    /// <see cref="HoldOutcome.Aborted"/> as soon as <paramref name="aborted"/> fires. The holder
    /// awaits the entry's task and disposes the entry after it completed.
    /// </summary>
    public Held? TryEnqueue(long arrived, long deadline, int max, CancellationToken aborted)
    {
        var entry = new Held(this, arrived, deadline);
        lock (_lock)
        {
            if (_count >= Math.Max(0, max)) return null;
            // Sorted by arrival: new arrivals go last; one that waits again after a failed attempt goes back near the front.
            var after = _tail;
            while (after is not null && after.Arrived > arrived) after = after.Prev;
            if (after is not null && after.Deadline > deadline) _deadlinesInOrder = false;
            var before = after is null ? _head : after.Next;
            if (before is not null && before.Deadline < deadline) _deadlinesInOrder = false;
            entry.Prev = after;
            entry.Next = after is null ? _head : after.Next;
            if (entry.Next is null) _tail = entry;
            else entry.Next.Prev = entry;
            if (after is null) _head = entry;
            else after.Next = entry;
            entry.Linked = true;
            Volatile.Write(ref _count, _count + 1);
            if (deadline < _timerDue) ScheduleLocked(deadline);
        }
        if (aborted.CanBeCanceled)
        {
            // Registered after queueing: a token that already fired runs the callback here and removes the entry at once.
            entry.Registration = aborted.UnsafeRegister(static e => ((Held)e!).Finish(HoldOutcome.Aborted), entry);
        }
        return entry;
    }

    /// <summary>Takes the oldest request out of the queue and lets it go on; false when none is held.</summary>
    /// <remarks>
    /// Its continuation runs on the calling thread up to its first wait (the request is then on its
    /// way to a replica), so requests released one after another reach replicas in that order.
    /// </remarks>
    public bool ReleaseOldest()
    {
        Held? head;
        lock (_lock)
        {
            head = _head;
            if (head is null) return false;
            UnlinkLocked(head);
        }
        head.Complete(HoldOutcome.Released);
        return true;
    }

    private void OnTimer()
    {
        List<Held>? expired = null;
        lock (_lock)
        {
            _timerDue = long.MaxValue;
            // Within a millisecond counts as due: a timer may fire a hair early.
            var now = _time.GetTimestamp() + _time.TimestampFrequency / 1000;
            var next = long.MaxValue;
            for (var e = _head; e is not null;)
            {
                var following = e.Next;
                if (e.Deadline <= now)
                {
                    UnlinkLocked(e);
                    (expired ??= []).Add(e);
                }
                else
                {
                    next = Math.Min(next, e.Deadline);
                    if (_deadlinesInOrder) break;
                }
                e = following;
            }
            if (_head is null) _deadlinesInOrder = true;
            if (next != long.MaxValue) ScheduleLocked(next);
        }
        if (expired is null) return;
        // Each on the thread pool: answering thousands of 503s on the timer's thread one after the
        // other would make the last ones late; their order does not matter.
        foreach (var e in expired) ThreadPool.UnsafeQueueUserWorkItem(static e => e.Complete(HoldOutcome.TimedOut), e, preferLocal: false);
    }

    private void ScheduleLocked(long due)
    {
        _timerDue = due;
        var wait = _time.GetElapsedTime(_time.GetTimestamp(), due);
        if (wait < TimeSpan.Zero) wait = TimeSpan.Zero;
        if (_timer is null) _timer = _time.CreateTimer(static q => ((HoldQueue)q!).OnTimer(), this, wait, Timeout.InfiniteTimeSpan);
        else _timer.Change(wait, Timeout.InfiniteTimeSpan);
    }

    private void UnlinkLocked(Held e)
    {
        if (!e.Linked) return;
        if (e.Prev is null) _head = e.Next;
        else e.Prev.Next = e.Next;
        if (e.Next is null) _tail = e.Prev;
        else e.Next.Prev = e.Prev;
        e.Prev = e.Next = null;
        e.Linked = false;
        Volatile.Write(ref _count, _count - 1);
    }

    /// <summary>One held request: its place in the queue and the task its request awaits (continuations run where it completes).</summary>
    public sealed class Held : TaskCompletionSource<HoldOutcome>, IDisposable
    {
        private readonly HoldQueue _queue;

        internal Held(HoldQueue queue, long arrived, long deadline)
        {
            _queue = queue;
            Arrived = arrived;
            Deadline = deadline;
        }

        internal long Arrived { get; }
        internal long Deadline { get; }
        internal Held? Prev;
        internal Held? Next;
        internal bool Linked;
        internal CancellationTokenRegistration Registration;

        /// <summary>Leaves the queue (if still in it) and completes; the first outcome wins.</summary>
        internal void Finish(HoldOutcome outcome)
        {
            bool removed;
            lock (_queue._lock)
            {
                removed = Linked;
                _queue.UnlinkLocked(this);
            }
            if (removed) Complete(outcome);
        }

        // Never under the queue's lock: the continuation runs here and may queue again.
        internal void Complete(HoldOutcome outcome) => TrySetResult(outcome);

        /// <summary>Drops the disconnect callback (by the holder, after <see cref="TaskCompletionSource{T}.Task"/> completed).</summary>
        public void Dispose() => Registration.Dispose();
    }
}
