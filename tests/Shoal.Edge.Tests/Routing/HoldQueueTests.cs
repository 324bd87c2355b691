using Microsoft.Extensions.Time.Testing;
using Shoal.Edge.Routing;

namespace Shoal.Edge.Tests.Routing;

public sealed class HoldQueueTests
{
    private readonly CountingTime _time = new();
    private readonly HoldQueue _queue;

    public HoldQueueTests() => _queue = new HoldQueue(_time);

    private long Now => _time.GetTimestamp();

    private long After(TimeSpan t) => Now + (long)(t.TotalSeconds * _time.TimestampFrequency);

    private HoldQueue.Held Hold(TimeSpan timeout, int max = 100, long? arrived = null, CancellationToken aborted = default) =>
        _queue.TryEnqueue(arrived ?? Now, (arrived ?? Now) + (long)(timeout.TotalSeconds * _time.TimestampFrequency), max, aborted)
            ?? throw new InvalidOperationException("queue full");

    [Fact]
    public async Task Requests_leave_in_arrival_order_and_one_that_waits_again_goes_back_to_its_place()
    {
        var order = new List<int>();
        var first = _queue.TryEnqueue(Now, After(TimeSpan.FromSeconds(10)), 10, default)!;
        var early = Now;
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var held = Enumerable.Range(1, 4).Select(i =>
        {
            _time.Advance(TimeSpan.FromMilliseconds(1));
            var h = Hold(TimeSpan.FromSeconds(10));
            _ = h.Task.ContinueWith(_ => order.Add(i), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return h;
        }).ToList();
        _ = first.Task.ContinueWith(_ => order.Add(0), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        // One that arrived before the four and queues again (its replica failed) goes before them.
        Assert.True(_queue.ReleaseOldest());
        var again = Hold(TimeSpan.FromSeconds(10), arrived: early);
        _ = again.Task.ContinueWith(_ => order.Add(-1), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

        while (_queue.ReleaseOldest())
        {
        }
        Assert.Equal([0, -1, 1, 2, 3, 4], order);
        foreach (var h in held)
        {
            Assert.True(h.Task.IsCompleted);
            Assert.Equal(HoldOutcome.Released, await h.Task);
        }
        Assert.Equal(0, _queue.Count);
    }

    [Fact]
    public void The_queue_holds_at_most_max_and_a_freed_slot_can_be_taken_again()
    {
        var held = Enumerable.Range(0, 3).Select(_ => Hold(TimeSpan.FromSeconds(5), max: 3)).ToList();
        Assert.Null(_queue.TryEnqueue(Now, After(TimeSpan.FromSeconds(5)), 3, default));
        Assert.Equal(3, _queue.Count);

        Assert.True(_queue.ReleaseOldest());
        Assert.NotNull(_queue.TryEnqueue(Now, After(TimeSpan.FromSeconds(5)), 3, default));
        Assert.Null(_queue.TryEnqueue(Now, After(TimeSpan.FromSeconds(5)), 3, default));
    }

    [Fact]
    public async Task A_disconnected_client_leaves_the_queue_at_once_and_frees_its_slot()
    {
        using var gone = new CancellationTokenSource();
        var first = Hold(TimeSpan.FromSeconds(5), max: 2);
        var leaving = Hold(TimeSpan.FromSeconds(5), max: 2, aborted: gone.Token);
        Assert.Equal(2, _queue.Count);

        gone.Cancel();
        Assert.True(leaving.Task.IsCompleted);
        Assert.Equal(HoldOutcome.Aborted, await leaving.Task);
        Assert.Equal(1, _queue.Count);
        Assert.NotNull(_queue.TryEnqueue(Now, After(TimeSpan.FromSeconds(5)), 2, default));
        Assert.False(first.Task.IsCompleted);

        // A token that fired already: never held.
        var dead = _queue.TryEnqueue(Now, After(TimeSpan.FromSeconds(5)), 10, gone.Token)!;
        Assert.True(dead.Task.IsCompleted);
        Assert.Equal(HoldOutcome.Aborted, await dead.Task);
        Assert.Equal(2, _queue.Count);
    }

    [Fact]
    public async Task Each_request_times_out_at_its_own_deadline_with_one_timer_for_the_queue()
    {
        var a = Hold(TimeSpan.FromSeconds(2));
        _time.Advance(TimeSpan.FromMilliseconds(500));
        var b = Hold(TimeSpan.FromSeconds(2));
        // The timeout was shortened: a later arrival with an earlier deadline.
        var c = Hold(TimeSpan.FromMilliseconds(800));

        _time.Advance(TimeSpan.FromMilliseconds(1290));
        // Out of the queue at once; answered on the thread pool, so awaited.
        Assert.Equal(2, _queue.Count);
        Assert.Equal(HoldOutcome.TimedOut, await c.Task.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.False(a.Task.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(210));
        Assert.Equal(1, _queue.Count);
        Assert.Equal(HoldOutcome.TimedOut, await a.Task.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.False(b.Task.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(HoldOutcome.TimedOut, await b.Task.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0, _queue.Count);
        Assert.Equal(1, _time.Timers);
    }

    [Fact]
    public async Task An_earlier_arrival_queued_again_with_a_later_deadline_does_not_delay_the_timeout_of_those_behind_it()
    {
        var early = Now;
        _time.Advance(TimeSpan.FromMilliseconds(100));
        var b = Hold(TimeSpan.FromSeconds(1));
        // Arrived first, with a longer timeout: it goes to the front, and its deadline is after b's.
        var a = Hold(TimeSpan.FromSeconds(5), arrived: early);

        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, _queue.Count);
        Assert.Equal(HoldOutcome.TimedOut, await b.Task.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.False(a.Task.IsCompleted);
        Assert.True(_queue.ReleaseOldest());
        Assert.Equal(HoldOutcome.Released, await a.Task);
    }

    private sealed class CountingTime : FakeTimeProvider
    {
        public int Timers { get; private set; }

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Timers++;
            return base.CreateTimer(callback, state, dueTime, period);
        }
    }
}
