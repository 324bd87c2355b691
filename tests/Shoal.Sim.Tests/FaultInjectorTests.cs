namespace Shoal.Sim.Tests;

public sealed class FaultInjectorTests
{
    [Fact]
    public void Error_and_hang_rates_are_honoured()
    {
        var faults = new FaultInjector(seed: 7, errorRate: 0.2, hangRate: 0.1, crashAfter: null);
        var draws = Enumerable.Range(0, 10_000).Select(_ => faults.Next()).ToList();
        var errors = draws.Count(f => f == Fault.Error);
        var hangs = draws.Count(f => f == Fault.Hang);
        Assert.InRange(errors, 1800, 2200);
        Assert.InRange(hangs, 850, 1150);
    }

    [Fact]
    public void Zero_rates_never_inject_and_full_rate_always_does()
    {
        var none = new FaultInjector(1, 0, 0, null);
        var all = new FaultInjector(1, 1, 0, null);
        Assert.All(Enumerable.Range(0, 1000).Select(_ => none.Next()), f => Assert.Equal(Fault.None, f));
        Assert.All(Enumerable.Range(0, 1000).Select(_ => all.Next()), f => Assert.Equal(Fault.Error, f));
    }

    [Fact]
    public void The_same_seed_gives_the_same_faults()
    {
        var a = new FaultInjector(99, 0.3, 0.3, null);
        var b = new FaultInjector(99, 0.3, 0.3, null);
        var c = new FaultInjector(100, 0.3, 0.3, null);
        var seqA = Enumerable.Range(0, 200).Select(_ => a.Next()).ToList();
        var seqB = Enumerable.Range(0, 200).Select(_ => b.Next()).ToList();
        var seqC = Enumerable.Range(0, 200).Select(_ => c.Next()).ToList();
        Assert.Equal(seqA, seqB);
        Assert.NotEqual(seqA, seqC);
    }

    [Fact]
    public void Crash_is_signalled_exactly_on_the_nth_request()
    {
        var faults = new FaultInjector(1, 0, 0, crashAfter: 3);
        Assert.False(faults.CountRequest());
        Assert.False(faults.CountRequest());
        Assert.True(faults.CountRequest());
        Assert.False(faults.CountRequest());
        Assert.Equal(4, faults.Requests);
    }
}
