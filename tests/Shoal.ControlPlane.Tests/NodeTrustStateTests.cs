using Shoal.Contracts;
using Shoal.Core.Clusters;

namespace Shoal.ControlPlane.Tests;

/// <summary>The operator's node policy, step by step on the control plane's state (fake clock, agents played by calls).</summary>
public sealed class NodeTrustStateTests
{
    private static async Task CreateAsync(StateHarness h, CreateClusterRequest request)
    {
        var spec = ClusterSpecValidator.Validate(request);
        Assert.True(spec.IsValid, spec.Message);
        await h.State.CreateClusterAsync(spec.Value!, default);
    }

    [Fact]
    public async Task A_serving_node_that_comes_back_with_a_refused_address_keeps_its_replica_out_of_routing_and_an_event_says_why()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("node-1");
        await CreateAsync(h, new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090" });
        await h.ReconcileAsync();
        var replica = Assert.Single(await h.ReplicasAsync()).Replica.Id;
        await h.ReadyAsync(replica);
        Assert.Equal([replica], await h.RoutedAsync());

        await h.ReconnectAsync("node-1", hello => hello with { Address = "169.254.169.254" });

        Assert.Empty(await h.RoutedAsync());
        var unroutable = Assert.Single(await h.EventsAsync(), e => e.Type == ClusterEventTypes.Unroutable);
        Assert.Contains("169.254.169.254 is link-local", unroutable.Message, StringComparison.Ordinal);
        Assert.Equal(0, (await h.ClusterAsync()).Replicas.Count(r => r.Routable));
        var node = Assert.Single(await h.State.ListNodesAsync(default));
        Assert.Contains("link-local", node.AddressRefused, StringComparison.Ordinal);

        // Back at an address the policy allows (loopback: this harness runs as for local use): routed again.
        await h.ReconnectAsync("node-1", hello => hello);
        Assert.Equal([replica], await h.RoutedAsync());
    }

    [Fact]
    public async Task A_cluster_whose_spec_explicitly_asks_for_no_label_runs_on_any_node_with_its_credentials()
    {
        await using var h = await StateHarness.StartAsync();
        await h.AddNodeAsync("node-1");
        var auth = new RegistryCredentials { Username = "bot", Password = "pw" };
        await CreateAsync(h, new CreateClusterRequest { Name = "private", Image = "ghcr.io/org/m:1", Gpu = "rtx-4090", RegistryAuth = auth });
        await CreateAsync(h, new CreateClusterRequest { Name = "chosen", Image = "ghcr.io/org/m:1", Gpu = "rtx-4090", RegistryAuth = auth, NodeLabels = [] });
        await h.ReconcileAsync();

        // The default (trusted) finds no node; the operator's explicit "none" does.
        var pending = Assert.Single(await h.ReplicasAsync("private")).Replica;
        Assert.Null(pending.NodeId);
        Assert.Contains("label trusted", pending.Reason, StringComparison.Ordinal);
        var placed = Assert.Single(await h.ReplicasAsync("chosen")).Replica;
        Assert.Equal(auth, (await h.AssignmentAsync(placed)).RegistryAuth);
    }
}
