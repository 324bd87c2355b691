using Microsoft.Extensions.Time.Testing;
using Shoal.Edge.Routing;

namespace Shoal.Edge.Tests.Routing;

public sealed class PassiveHealthTests
{
    private readonly FakeTimeProvider _time = new();
    private readonly RoutingSignal _signal = new();
    private readonly PassiveHealth _health;
    private readonly EdgeReplica _replica = new("demo", "r1");

    public PassiveHealthTests() => _health = new PassiveHealth(new EdgeOptions(), _time, _signal);

    private void Fail(int times, bool refused = false)
    {
        for (var i = 0; i < times; i++) _health.ReportFailure(_replica, refused);
    }

    [Fact]
    public void Three_failures_in_a_row_eject_for_one_second_and_a_success_in_between_starts_the_count_again()
    {
        Fail(2);
        _health.ReportSuccess(_replica);
        Fail(2);
        Assert.False(_health.IsEjected(_replica));

        Assert.True(_health.ReportFailure(_replica, connectionRefused: false));
        Assert.True(_health.IsEjected(_replica));
        Assert.Equal(1, _replica.Ejections);

        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.True(_health.IsEjected(_replica));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.False(_health.IsEjected(_replica));
    }

    [Fact]
    public void A_refused_connection_ejects_at_once()
    {
        Assert.True(_health.ReportFailure(_replica, connectionRefused: true));
        Assert.True(_health.IsEjected(_replica));
    }

    [Fact]
    public void Back_off_doubles_while_the_replica_keeps_failing_up_to_thirty_seconds_and_resets_on_success()
    {
        var expected = new[] { 1, 2, 4, 8, 16, 30, 30 };
        Fail(3);
        foreach (var seconds in expected)
        {
            Assert.Equal(TimeSpan.FromSeconds(seconds), _health.EjectedFor(_replica));
            _time.Advance(TimeSpan.FromSeconds(seconds));
            Assert.False(_health.IsEjected(_replica));
            // Back from an ejection, one failure is enough to go out again, for twice as long.
            Assert.True(_health.ReportFailure(_replica, connectionRefused: false));
        }

        _time.Advance(TimeSpan.FromSeconds(30));
        _health.ReportSuccess(_replica);
        Fail(2);
        Assert.False(_health.IsEjected(_replica));
        Fail(1);
        Assert.Equal(TimeSpan.FromSeconds(1), _health.EjectedFor(_replica));
    }

    [Fact]
    public void Failures_of_requests_already_in_flight_do_not_extend_an_ejection()
    {
        Fail(3);
        Assert.False(_health.ReportFailure(_replica, connectionRefused: true));
        Fail(5);
        Assert.Equal(1, _replica.Ejections);
        Assert.Equal(TimeSpan.FromSeconds(1), _health.EjectedFor(_replica));
    }

    [Fact]
    public async Task The_end_of_an_ejection_wakes_held_requests()
    {
        var wake = _signal.Next;
        Fail(1, refused: true);
        Assert.False(wake.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.False(wake.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        await wake.WaitAsync(TimeSpan.FromSeconds(5));
    }
}
