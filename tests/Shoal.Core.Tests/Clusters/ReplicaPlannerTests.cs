using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.Core.Tests.Clusters;

public sealed class ReplicaPlannerTests
{
    private static readonly DateTimeOffset s_t0 = new(2026, 11, 23, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Pending_and_unhealthy_replicas_go_before_ready_ones()
    {
        var replicas = new[]
        {
            new ReplicaView("ready", "n1", ReplicaState.Ready, s_t0),
            new ReplicaView("pending", null, ReplicaState.Pending, s_t0),
            new ReplicaView("sick", "n2", ReplicaState.Unhealthy, s_t0),
        };
        Assert.Equal(["pending", "sick"], ReplicaPlanner.ChooseForRemoval(replicas, 2));
    }

    [Fact]
    public void Among_ready_replicas_the_crowded_node_loses_one_first_then_the_newest()
    {
        var replicas = new[]
        {
            new ReplicaView("a", "n1", ReplicaState.Ready, s_t0),
            new ReplicaView("b", "n1", ReplicaState.Ready, s_t0.AddSeconds(1)),
            new ReplicaView("c", "n2", ReplicaState.Ready, s_t0.AddSeconds(5)),
        };
        Assert.Equal(["b"], ReplicaPlanner.ChooseForRemoval(replicas, 1));
        Assert.Empty(ReplicaPlanner.ChooseForRemoval(replicas, 0));
    }
}
