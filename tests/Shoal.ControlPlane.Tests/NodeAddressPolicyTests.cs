using System.Net;
using Shoal.ControlPlane.State;

namespace Shoal.ControlPlane.Tests;

/// <summary>Where edges may connect to a direct-mode node: the operator's networks, never the server's machine unless local use is allowed.</summary>
public sealed class NodeAddressPolicyTests
{
    private static readonly IPAddress s_own = IPAddress.Parse("192.168.7.7");

    private static NodeAddressPolicy Policy(bool allowLoopback = false) =>
        new([IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("fd00::/8"), IPNetwork.Parse("192.168.0.0/16")], allowLoopback, [s_own]);

    [Theory]
    [InlineData("10.1.2.3")]
    [InlineData("fd00::5")]
    [InlineData("::ffff:10.1.2.3")]
    [InlineData("192.168.7.8")]
    public void An_address_in_the_node_networks_of_a_node_allowed_direct_mode_is_accepted(string address)
    {
        Assert.Null(Policy().CheckAddress(address, directAllowed: true));
    }

    [Theory]
    [InlineData("127.0.0.1", "loopback")]
    [InlineData("127.8.9.10", "loopback")]
    [InlineData("::1", "loopback")]
    [InlineData("::ffff:127.0.0.1", "loopback")]
    [InlineData("0.0.0.0", "loopback")]
    [InlineData("::", "loopback")]
    [InlineData("192.168.7.7", "the server's own")]
    [InlineData("169.254.169.254", "link-local")]
    [InlineData("::ffff:169.254.169.254", "link-local")]
    [InlineData("fe80::1%2", "link-local")]
    [InlineData("224.0.0.1", "multicast")]
    [InlineData("172.16.0.1", "not in the server's node networks")]
    [InlineData("metadata.google.internal", "not an IP address")]
    [InlineData("", "not an IP address")]
    public void Refused_addresses_say_why(string address, string why)
    {
        Assert.Contains(why, Policy().CheckAddress(address, directAllowed: true), StringComparison.Ordinal);
    }

    [Fact]
    public void Direct_mode_needs_the_operators_permission()
    {
        Assert.Contains("direct mode is not allowed", Policy().CheckAddress("10.1.2.3", directAllowed: false), StringComparison.Ordinal);
    }

    [Fact]
    public void Local_use_allows_loopback_and_own_addresses_but_never_link_local_or_the_servers_ports()
    {
        var policy = Policy(allowLoopback: true);
        policy.AddServerPort(7400);
        policy.AddServerPort(8080);
        Assert.Null(policy.CheckAddress("127.0.0.1", directAllowed: false));
        Assert.Null(policy.CheckAddress("192.168.7.7", directAllowed: false));
        Assert.NotNull(policy.CheckAddress("169.254.169.254", directAllowed: true));

        Assert.Null(policy.CheckPort("127.0.0.1", 9000));
        Assert.Contains("server's own", policy.CheckPort("127.0.0.1", 7400), StringComparison.Ordinal);
        Assert.Contains("server's own", policy.CheckPort("192.168.7.7", 8080), StringComparison.Ordinal);
        // Another machine may use the same port number.
        Assert.Null(policy.CheckPort("10.1.2.3", 7400));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(65536)]
    public void Ports_outside_1_to_65535_are_refused(int port)
    {
        Assert.Contains("between 1 and 65535", Policy().CheckPort("10.1.2.3", port), StringComparison.Ordinal);
    }

    [Fact]
    public void Without_node_networks_no_direct_address_is_reached()
    {
        var policy = new NodeAddressPolicy([], allowLoopback: false, []);
        Assert.Contains("none set", policy.CheckAddress("10.1.2.3", directAllowed: true), StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_node_networks_are_an_option_error()
    {
        var errors = new ServerOptions { NodeNetworks = ["10.0.0.0/8", "not-a-network", "10.0.0.0/99"] }.Validate();
        Assert.Equal(2, errors.Count(e => e.Contains("--node-networks", StringComparison.Ordinal)));
    }
}
