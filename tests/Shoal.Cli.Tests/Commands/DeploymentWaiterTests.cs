using Microsoft.Extensions.Time.Testing;
using Shoal.Cli.Client;
using Shoal.Cli.Commands;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Commands;

public sealed class DeploymentWaiterTests
{
    private readonly FakeTimeProvider _time = new(Samples.T0);

    [Fact]
    public async Task Returns_ready_as_soon_as_every_replica_is_ready()
    {
        var statuses = new Queue<ClusterStatusDto>(
        [
            Samples.Status(Samples.Cluster(), Samples.Replica("a", ReplicaState.Pending, nodeName: null)),
            Samples.Status(Samples.Cluster(), Samples.Replica("a", ReplicaState.Ready), Samples.Replica("b", ReplicaState.Starting)),
            Samples.Status(Samples.Cluster(), Samples.Replica("a", ReplicaState.Ready), Samples.Replica("b", ReplicaState.Ready)),
            Samples.Status(Samples.Cluster(), Samples.Replica("a", ReplicaState.Failed)),
        ]);
        var updates = 0;

        var outcome = await DeploymentWaiter.WaitAsync(
            _ => Task.FromResult(statuses.Dequeue()), TimeSpan.FromMinutes(5), TimeSpan.Zero, _time, _ => updates++, CancellationToken.None);

        Assert.True(outcome.Ready);
        Assert.Equal(3, updates);
        Assert.Single(statuses);
    }

    [Fact]
    public async Task Gives_up_at_the_deadline_on_the_fake_clock()
    {
        var polls = 0;
        var pending = Samples.Status(Samples.Cluster(replicas: 1), Samples.Replica("a", ReplicaState.Pending, "no rtx-4090 free", nodeName: null));

        var outcome = await DeploymentWaiter.WaitAsync(
            _ =>
            {
                polls++;
                _time.Advance(TimeSpan.FromSeconds(10));
                return Task.FromResult(pending);
            },
            TimeSpan.FromSeconds(30),
            TimeSpan.Zero,
            _time,
            null,
            CancellationToken.None);

        Assert.False(outcome.Ready);
        Assert.Equal(3, polls);
        Assert.Same(pending, outcome.Last);
        Assert.Equal(["a: pending (no rtx-4090 free)"], DeploymentWaiter.DescribePending(outcome.Last!));
    }

    [Fact]
    public async Task Keeps_polling_through_a_server_blip_after_the_first_answer()
    {
        var calls = 0;
        var outcome = await DeploymentWaiter.WaitAsync(
            _ => ++calls switch
            {
                1 => Task.FromResult(Samples.Status(Samples.Cluster(replicas: 1), Samples.Replica("a", ReplicaState.Starting))),
                2 => throw new ShoalServerUnreachableException(new Uri("http://x"), null),
                _ => Task.FromResult(Samples.Status(Samples.Cluster(replicas: 1), Samples.Replica("a", ReplicaState.Ready))),
            },
            TimeSpan.FromMinutes(1),
            TimeSpan.Zero,
            _time,
            null,
            CancellationToken.None);

        Assert.True(outcome.Ready);
        Assert.Equal(3, calls);
    }

    [Fact]
    public void Polls_fast_for_the_first_seconds_then_at_the_given_interval()
    {
        var interval = TimeSpan.FromMilliseconds(500);
        Assert.Equal(DeploymentWaiter.FastInterval, DeploymentWaiter.NextDelay(TimeSpan.Zero, interval));
        Assert.Equal(DeploymentWaiter.FastInterval, DeploymentWaiter.NextDelay(DeploymentWaiter.FastPeriod - TimeSpan.FromMilliseconds(1), interval));
        Assert.Equal(interval, DeploymentWaiter.NextDelay(DeploymentWaiter.FastPeriod, interval));
        Assert.Equal(interval, DeploymentWaiter.NextDelay(TimeSpan.FromMinutes(1), interval));
        // An interval already shorter is kept.
        Assert.Equal(TimeSpan.FromMilliseconds(10), DeploymentWaiter.NextDelay(TimeSpan.Zero, TimeSpan.FromMilliseconds(10)));
    }

    [Fact]
    public void Describes_missing_replicas_and_where_pending_ones_run()
    {
        var status = Samples.Status(Samples.Cluster(replicas: 3), Samples.Replica("a", ReplicaState.Pulling, "pulling shoal/sim"));
        Assert.Equal(["a: pulling on gpu-box-1 (pulling shoal/sim)", "2 replica(s) not created yet"], DeploymentWaiter.DescribePending(status));
    }
}
