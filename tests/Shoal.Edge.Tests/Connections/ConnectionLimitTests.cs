using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Core.Tunnels;
using Shoal.Edge.Connections;
using Shoal.Edge.Tunnels;
using Shoal.Testing;

namespace Shoal.Edge.Tests.Connections;

/// <summary>
/// The edge's connection limits on a real edge over loopback TCP: the connection beyond a limit is
/// closed on arrival while those within it keep working, a connection that says nothing is closed
/// after the undecided timeout (and not before), and the automatic limit follows the file limit.
/// </summary>
public sealed class ConnectionLimitTests
{
    [Fact]
    public async Task The_connection_beyond_the_per_address_limit_is_closed_and_the_others_keep_working()
    {
        await using var edge = await TestEdge.StartAsync(new EdgeOptions { MaxConnectionsPerAddress = 3 });
        var limiter = edge.Services.GetRequiredService<EdgeConnectionLimiter>();
        var held = new List<TcpClient>();
        try
        {
            for (var i = 0; i < 3; i++) held.Add(await ConnectAsync(edge));
            await Eventually.UntilAsync(() => limiter.OpenFrom(IPAddress.Loopback) == 3, what: "three connections counted");

            Assert.True(await ConnectAndSeeClosedAsync(edge), "the fourth connection from one address is closed");
            Assert.Equal(1, limiter.RefusedPerAddress);
            Assert.Equal(0, limiter.RefusedAtLimit);

            // The three within the limit still serve requests.
            foreach (var client in held) Assert.StartsWith("HTTP/1.1 200", await GetAsync(client, "/healthz"));

            // One closes: its place is free again.
            held[0].Dispose();
            held.RemoveAt(0);
            await Eventually.UntilAsync(() => limiter.OpenFrom(IPAddress.Loopback) == 2, what: "the closed connection uncounted");
            using var again = await ConnectAsync(edge);
            Assert.StartsWith("HTTP/1.1 200", await GetAsync(again, "/healthz"));
            Assert.Contains("shoal_edge_connections_refused_total{limit=\"address\"} 1", await GetAsync(again, "/metrics"), StringComparison.Ordinal);
        }
        finally
        {
            foreach (var client in held) client.Dispose();
        }
    }

    [Fact]
    public async Task The_connection_beyond_the_overall_limit_is_closed()
    {
        await using var edge = await TestEdge.StartAsync(new EdgeOptions { MaxConnections = 2 });
        var limiter = edge.Services.GetRequiredService<EdgeConnectionLimiter>();
        Assert.Equal(2, limiter.MaxConnections);
        using var first = await ConnectAsync(edge);
        using var second = await ConnectAsync(edge);
        await Eventually.UntilAsync(() => limiter.Open == 2, what: "two connections counted");

        Assert.True(await ConnectAndSeeClosedAsync(edge), "the third connection is closed");
        Assert.Equal(1, limiter.RefusedAtLimit);
        Assert.StartsWith("HTTP/1.1 200", await GetAsync(first, "/healthz"));
        Assert.Contains("shoal_edge_connections 2\n", await GetAsync(second, "/metrics"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_connection_given_one_of_the_last_file_descriptors_is_closed_by_the_listener()
    {
        // A file limit so low that every descriptor this process gets lies in the headroom.
        var options = new EdgeOptions();
        var limiter = new EdgeConnectionLimiter(options, EdgeConnectionLimits.Headroom + 1, TimeProvider.System, NullLogger<EdgeConnectionLimiter>.Instance);
        await using var edge = await TestEdge.StartAsync(options, services: s => s.AddSingleton(limiter));
        Assert.True(await ConnectAndSeeClosedAsync(edge), "the connection is closed at once");
        Assert.True(limiter.RefusedForFiles >= 1);
        Assert.Equal(0, limiter.Open);
    }

    [Fact]
    public async Task A_connection_that_says_nothing_is_closed_after_the_undecided_timeout_and_not_before()
    {
        var time = new FakeTimeProvider();
        var options = new EdgeOptions { UndecidedConnectionTimeout = TimeSpan.FromSeconds(5) };
        await using var edge = await TestEdge.StartAsync(options, services: s =>
        {
            s.AddSingleton<TimeProvider>(time);
            s.AddShoalTunnels(new NodeCredentialHolder());
        });
        var tunnels = edge.Services.GetRequiredService<TunnelEndpoint>();

        // Silent for just under the timeout: still open, and it can still make its request.
        using (var patient = await ConnectAsync(edge))
        {
            await Eventually.UntilAsync(() => tunnels.Undecided == 1, what: "the connection waits for its first bytes");
            time.Advance(TimeSpan.FromSeconds(5) - TimeSpan.FromMilliseconds(1));
            Assert.StartsWith("HTTP/1.1 200", await GetAsync(patient, "/healthz"));
        }
        Assert.Equal(0, tunnels.UndecidedClosed);

        // Silent for the whole timeout: closed.
        using var silent = await ConnectAsync(edge);
        await Eventually.UntilAsync(() => tunnels.Undecided == 1, what: "the connection waits for its first bytes");
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(await ClosedByEdgeAsync(silent), "the silent connection is closed");
        Assert.Equal(1, tunnels.UndecidedClosed);
        var limiter = edge.Services.GetRequiredService<EdgeConnectionLimiter>();
        await Eventually.UntilAsync(() => limiter.Open == 0, what: "the closed connection uncounted");
    }

    [Theory]
    [InlineData(1024L, 1.0, 384)]
    [InlineData(1024L, 0.5, 192)]
    [InlineData(200L, 1.0, EdgeConnectionLimits.Floor)]
    [InlineData(1_048_576L, 1.0, EdgeConnectionLimits.Default)]
    [InlineData(null, 1.0, EdgeConnectionLimits.Default)]
    public void The_automatic_limit_leaves_room_in_the_file_limit(long? fileLimit, double share, int expected) =>
        Assert.Equal(expected, EdgeConnectionLimits.Automatic(fileLimit, share));

    [Fact]
    public void A_configured_limit_wins_over_the_automatic_one_and_the_file_limit_is_read_from_the_process()
    {
        Assert.Equal(50_000, EdgeConnectionLimits.Resolve(new EdgeOptions { MaxConnections = 50_000 }, 1024));
        Assert.Equal(192, EdgeConnectionLimits.Resolve(new EdgeOptions { FileLimitShare = 0.5 }, 1024));
        if (OperatingSystem.IsLinux()) Assert.True(EdgeConnectionLimits.ProcessFileLimit() > 0);
    }

    [Fact]
    public void Limits_are_validated()
    {
        var errors = new EdgeOptions { MaxConnections = 0, MaxConnectionsPerAddress = 0, MaxTunnelsPerNode = 0, UndecidedConnectionTimeout = TimeSpan.Zero, FileLimitShare = 2 }.Validate();
        Assert.Equal(5, errors.Count);
    }

    private static async Task<TcpClient> ConnectAsync(TestEdge edge)
    {
        var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, edge.Address.Port);
        return client;
    }

    /// <summary>
    /// Connects and waits: true when the edge closes or resets the connection, even so fast that the
    /// connect itself sees the reset; false if it sends something instead.
    /// </summary>
    private static async Task<bool> ConnectAndSeeClosedAsync(TestEdge edge)
    {
        TcpClient client;
        try
        {
            client = await ConnectAsync(edge);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionRefused)
        {
            return true;
        }
        using (client)
        {
            return await ClosedByEdgeAsync(client);
        }
    }

    /// <summary>True when the edge closes (or resets) the connection; false if it sends something instead.</summary>
    private static async Task<bool> ClosedByEdgeAsync(TcpClient client)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            return await client.GetStream().ReadAsync(new byte[1], timeout.Token) == 0;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>One HTTP/1.1 GET on the connection; the response's head and as much body as came with it.</summary>
    private static async Task<string> GetAsync(TcpClient client, string path)
    {
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TestEdge.MetricsKey}\r\n\r\n"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var buffer = new byte[64 * 1024];
        var received = new StringBuilder();
        while (true)
        {
            var n = await stream.ReadAsync(buffer, timeout.Token);
            if (n == 0) break;
            received.Append(Encoding.ASCII.GetString(buffer, 0, n));
            var text = received.ToString();
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end < 0) continue;
            var head = text[..end];
            var length = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
            if (length is not null && text.Length - end - 4 >= int.Parse(length["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture)) break;
            if (head.Contains("chunked", StringComparison.OrdinalIgnoreCase) && text.EndsWith("0\r\n\r\n", StringComparison.Ordinal)) break;
        }
        return received.ToString();
    }
}
