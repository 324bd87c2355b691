using System.Reflection;
using Shoal.ControlPlane.State;
using Shoal.Core.Access;
using Shoal.Core.Autoscaling;
using Shoal.Core.Gateway;
using Shoal.Core.Metrics;
using Shoal.Core.Routing;
using Shoal.Core.Tunnels;
using Shoal.Edge;
using Shoal.Server;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Issue 12: the control plane and the edge know each other only through the contracts in Shoal.Core;
/// <c>shoal server</c>'s composition of both (API app and in-process edge) lives in Shoal.Server.
/// </summary>
public sealed class ProjectReferencesTests
{
    private static string[] References(Assembly assembly) => [.. assembly.GetReferencedAssemblies().Select(a => a.Name ?? "")];

    [Fact]
    public void The_control_plane_does_not_reference_the_edge()
    {
        var references = References(typeof(ControlPlaneState).Assembly);
        Assert.Contains("Shoal.Core", references);
        Assert.DoesNotContain("Shoal.Edge", references);
        Assert.DoesNotContain("Shoal.Server", references);
    }

    [Fact]
    public void The_edge_does_not_reference_the_control_plane()
    {
        var references = References(typeof(EdgeServer).Assembly);
        Assert.Contains("Shoal.Core", references);
        Assert.DoesNotContain("Shoal.ControlPlane", references);
        Assert.DoesNotContain("Shoal.Store", references);
        Assert.DoesNotContain("Shoal.Server", references);
    }

    [Fact]
    public void The_contracts_between_them_live_in_core()
    {
        Type[] contracts = [typeof(IRouteTableSource), typeof(RouteTableHolder), typeof(IEndpointKeySource), typeof(IProjectGrantSource),
            typeof(BudgetWindow), typeof(IEdgeDemandSink), typeof(IMetricsSource), typeof(INodeCredentialSource)];
        Assert.All(contracts, t => Assert.Equal("Shoal.Core", t.Assembly.GetName().Name));
    }

    [Fact]
    public void The_server_composes_both()
    {
        var references = References(typeof(ShoalServer).Assembly);
        Assert.Contains("Shoal.ControlPlane", references);
        Assert.Contains("Shoal.Edge", references);
    }
}
