using System.Net;
using System.Net.Sockets;
using Shoal.Contracts;

namespace Shoal.Agent.Tests.Tunnels;

public sealed class TunnelWireTests
{
    [Theory]
    [InlineData("http://edge.example:8080", "edge.example", 8080, false)]
    [InlineData("https://edge.example", "edge.example", 443, true)]
    [InlineData("http://127.0.0.1:9/base/path", "127.0.0.1", 9, false)]
    [InlineData(" https://[::1]:8443/ ", "::1", 8443, true)]
    public void An_edge_url_gives_the_tunnel_endpoint_and_whether_it_is_tls(string url, string host, int port, bool tls)
    {
        Assert.True(TunnelWire.TryParseEdge(url, out var h, out var p, out var t));
        Assert.Equal((host, port, tls), (h.Trim('[', ']'), p, t));
    }

    [Theory]
    [InlineData("http://edge.example:8080", true)]
    [InlineData("http://10.0.0.5:8080", true)]
    [InlineData("https://edge.example", false)]
    [InlineData("http://127.0.0.1:8080", false)]
    [InlineData("http://localhost:8080", false)]
    [InlineData("http://[::1]:8080", false)]
    public void Plain_tunnels_are_flagged_unless_they_stay_on_the_node(string url, bool flagged) =>
        Assert.Equal(flagged, Shoal.Agent.Tunnels.TunnelPool.PlainOverNetwork(url));

    [Theory]
    [InlineData("http://edge.example:8080", false, true)]
    [InlineData("http://10.0.0.5:8080", false, true)]
    [InlineData("http://10.0.0.5:8080", true, false)]
    [InlineData("https://edge.example", false, false)]
    [InlineData("http://127.0.0.1:8080", false, false)]
    public void Plain_tunnels_across_the_network_are_refused_unless_the_node_operator_allows_them(string url, bool allowed, bool refused) =>
        Assert.Equal(refused, Shoal.Agent.Tunnels.TunnelPool.RefusesPlain(url, new Shoal.Agent.Tunnels.TunnelOptions { AllowPlainOverNetwork = allowed }));

    [Theory]
    [InlineData("ws://edge:8080")]
    [InlineData("edge:8080")]
    [InlineData("")]
    [InlineData("ftp://edge")]
    public void Anything_but_an_absolute_http_url_is_not_an_edge(string url) =>
        Assert.False(TunnelWire.TryParseEdge(url, out _, out _, out _));

    [Fact]
    public async Task Keep_alive_probes_idle_tunnels_and_bounds_unacknowledged_bytes()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync((IPEndPoint)listener.LocalEndpoint);
        TunnelWire.KeepAlive(socket);

        Assert.Equal(1, (int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive)!);
        Assert.Equal(5, (int)socket.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime)!);
        Assert.Equal(2, (int)socket.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval)!);
        Assert.Equal(3, (int)socket.GetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount)!);
        var userTimeout = new byte[4];
        Assert.Equal(4, socket.GetRawSocketOption(6, 18, userTimeout));
        Assert.Equal(15_000, BitConverter.ToInt32(userTimeout));
    }
}
