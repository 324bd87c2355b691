using Shoal.Agent.Replicas;
using Shoal.Contracts;

namespace Shoal.Agent.Tests.Replicas;

public class ConvergerTests
{
    internal static Assignment A(string id, string image = "shoal/sim") => new()
    {
        ReplicaId = id,
        Cluster = "demo",
        Image = image,
        Gpu = "rtx-4090",
        GpuIndexes = [0],
    };

    [Fact]
    public void Starts_missing_stops_unlisted_leaves_the_rest()
    {
        var plan = Converger.Plan(["r1", "r2"], [A("r2"), A("r3")]);

        Assert.Equal(["r3"], plan.ToStart.Select(a => a.ReplicaId));
        Assert.Equal(["r1"], plan.ToStop);
        Assert.Equal(["r2"], plan.Unchanged);
    }

    [Fact]
    public void Identical_set_does_nothing()
    {
        var plan = Converger.Plan(["r1", "r2"], [A("r1"), A("r2")]);

        Assert.True(plan.IsEmpty);
    }

    [Fact]
    public void Empty_set_stops_everything()
    {
        var plan = Converger.Plan(["r2", "r1"], []);

        Assert.Equal(["r1", "r2"], plan.ToStop);
        Assert.Empty(plan.ToStart);
    }

    [Fact]
    public void Duplicate_ids_start_once()
    {
        var plan = Converger.Plan([], [A("r1"), A("r1", "other/image")]);

        var start = Assert.Single(plan.ToStart);
        Assert.Equal("shoal/sim", start.Image);
    }
}
