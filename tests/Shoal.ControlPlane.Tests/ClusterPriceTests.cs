using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.ControlPlane.Tests;

/// <summary>A cluster's price (issue 16) through the control plane's state: stored in the spec, on the routes, changed without a rollout.</summary>
public sealed class ClusterPriceTests
{
    [Fact]
    public async Task The_price_and_gpus_per_replica_reach_the_route_and_survive_a_restart_and_a_price_update_is_no_rollout()
    {
        await using var h = await StateHarness.StartAsync();
        var price = new ClusterPrice { InputPerMillion = 0.15m, OutputPerMillion = 0.6m, PerGpuSecond = 0.0004m };
        await h.State.CreateClusterAsync(new ClusterSpec { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", GpuCount = 2, Replicas = 1, Price = price }, default);

        var route = (await h.State.BuildRouteTableAsync(1, default)).Clusters["demo"];
        Assert.Equal(price, route.Price);
        Assert.Equal(2, route.GpuCount);

        var generation = (await h.ClusterAsync()).Cluster.Generation;
        var outcome = await h.State.UpdateClusterAsync("demo", new UpdateClusterRequest { Price = new ClusterPrice { OutputPerMillion = 1.2m } }, default);
        Assert.Null(outcome.Error);
        var changed = price with { OutputPerMillion = 1.2m };
        Assert.Equal(changed, (await h.ClusterAsync()).Cluster.Spec.Price);
        Assert.Equal(generation, (await h.ClusterAsync()).Cluster.Generation);
        Assert.Equal(changed, (await h.State.BuildRouteTableAsync(2, default)).Clusters["demo"].Price);

        await h.RestartAsync();
        Assert.Equal(changed, (await h.ClusterAsync()).Cluster.Spec.Price);
    }
}
