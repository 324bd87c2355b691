namespace Shoal.Sim.Tests;

public sealed class BatchSchedulerTests
{
    [Fact]
    public async Task Requests_beyond_the_slots_wait_and_are_served_in_order()
    {
        var scheduler = new BatchScheduler(slots: 2, maxQueue: 10);
        var a = await scheduler.AcquireAsync(CancellationToken.None);
        var b = await scheduler.AcquireAsync(CancellationToken.None);
        var c = scheduler.AcquireAsync(CancellationToken.None);
        var d = scheduler.AcquireAsync(CancellationToken.None);

        Assert.NotNull(a);
        Assert.NotNull(b);
        Assert.Equal(2, scheduler.Running);
        Assert.Equal(2, scheduler.Waiting);
        Assert.False(c.IsCompleted);
        Assert.False(d.IsCompleted);

        a!.Dispose();
        var cLease = await c.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.NotNull(cLease);
        Assert.False(d.IsCompleted);
        Assert.Equal(2, scheduler.Running);
        Assert.Equal(1, scheduler.Waiting);

        b!.Dispose();
        cLease!.Dispose();
        (await d.WaitAsync(TimeSpan.FromSeconds(5)))!.Dispose();
        Assert.Equal(0, scheduler.Running);
        Assert.Equal(0, scheduler.Waiting);
    }

    [Fact]
    public async Task A_full_queue_refuses_at_once()
    {
        var scheduler = new BatchScheduler(slots: 1, maxQueue: 1);
        using var first = await scheduler.AcquireAsync(CancellationToken.None);
        var queued = scheduler.AcquireAsync(CancellationToken.None);
        var refused = await scheduler.AcquireAsync(CancellationToken.None);

        Assert.Null(refused);
        Assert.False(queued.IsCompleted);
        Assert.Equal(1, scheduler.Waiting);
    }

    [Fact]
    public async Task With_no_queue_a_busy_scheduler_refuses()
    {
        var scheduler = new BatchScheduler(slots: 1, maxQueue: 0);
        using var first = await scheduler.AcquireAsync(CancellationToken.None);
        Assert.Null(await scheduler.AcquireAsync(CancellationToken.None));
    }

    [Fact]
    public async Task A_cancelled_waiter_leaves_the_queue_at_once()
    {
        var scheduler = new BatchScheduler(slots: 1, maxQueue: 10);
        var first = await scheduler.AcquireAsync(CancellationToken.None);
        using var cts = new CancellationTokenSource();
        var cancelled = scheduler.AcquireAsync(cts.Token);
        var next = scheduler.AcquireAsync(CancellationToken.None);
        Assert.Equal(2, scheduler.Waiting);

        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal(1, scheduler.Waiting);
        first!.Dispose();
        Assert.NotNull(await next.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(1, scheduler.Running);
        Assert.Equal(0, scheduler.Waiting);
    }

    [Fact]
    public async Task Disposing_a_lease_twice_frees_one_slot()
    {
        var scheduler = new BatchScheduler(slots: 2, maxQueue: 0);
        var a = await scheduler.AcquireAsync(CancellationToken.None);
        using var b = await scheduler.AcquireAsync(CancellationToken.None);
        a!.Dispose();
        a.Dispose();
        Assert.Equal(1, scheduler.Running);
    }
}
