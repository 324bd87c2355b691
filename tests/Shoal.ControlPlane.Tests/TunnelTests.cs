using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Shoal.Agent.Identity;
using Shoal.Agent.Tunnels;
using Shoal.Contracts;
using Shoal.Core.Security;
using Shoal.Edge.Tunnels;
using Shoal.Edge.Upstreams;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Tunnels between the agent's tunnel pool and the in-process edge, over real TCP connections on loopback:
/// a tunnel-mode node's replica is reached only through its tunnels, bad credentials are refused,
/// and a node whose tunnels close is unreachable at once.
/// </summary>
public sealed class TunnelTests : IAsyncLifetime
{
    private TestServer _server = null!;
    private LoopbackReplica _replica = null!;
    private int _replicaPort;

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync();
        _replica = await LoopbackReplica.StartAsync(async ctx =>
        {
            if (ctx.Request.Path == "/slow")
            {
                await Task.Delay(300);
                await ctx.Response.WriteAsync($"protocol={ctx.Request.Protocol}");
                return;
            }
            if (ctx.Request.Path == "/close")
            {
                // HTTP/1.0 style: the replica closes the connection after a large response.
                ctx.Response.Headers.Connection = "close";
                await ctx.Response.Body.WriteAsync(new byte[256 * 1024].Select((_, i) => (byte)('a' + i % 26)).ToArray());
                return;
            }
            if (ctx.Request.Path != "/stream")
            {
                await ctx.Response.WriteAsync($"path={ctx.Request.Path}");
                return;
            }
            ctx.Response.ContentType = "text/event-stream";
            for (var i = 0; i < 3; i++)
            {
                await ctx.Response.WriteAsync($"data: {i}\n\n");
                await ctx.Response.Body.FlushAsync();
            }
        });
        _replicaPort = _replica.Port;
    }

    public async Task DisposeAsync()
    {
        await _replica.DisposeAsync();
        await _server.DisposeAsync();
    }

    private TunnelRegistry Registry => _server.Server.EdgeServices!.GetRequiredService<TunnelRegistry>();

    /// <summary>The in-process edge's URL as agents are told it, which its tunnel credentials are derived for.</summary>
    private string LocalEdgeUrl => _server.Server.EdgeAddress!.ToString().TrimEnd('/');

    /// <summary>Registers a tunnel-mode node, deploys a one-replica cluster to it and reports the replica ready.</summary>
    private Task<(WireAgent Agent, NodeIdentity Identity, string[] Edges, string ReplicaId)> TunnelNodeWithReadyReplicaAsync() =>
        TunnelNodeWithReadyReplicaAsync(_server);

    private async Task<(WireAgent Agent, NodeIdentity Identity, string[] Edges, string ReplicaId)> TunnelNodeWithReadyReplicaAsync(TestServer server)
    {
        var token = await server.CreateTokenAsync();
        var (agent, _) = await WireAgent.RegisterAsync(server.AgentUri, token, "node-t");
        await agent!.SendAsync(WireAgent.Hello("node-t", ("rtx-4090", 1)) with { Tunnel = true });
        var welcome = await agent.ReceiveAsync<WelcomeMessage>();
        await agent.ReceiveAsync<AssignmentsMessage>();
        (await server.Http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "demo", Public = true, Image = "shoal/sim", Gpu = "rtx-4090", QueueTimeoutSeconds = 1 },
            ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
        var assigned = await agent.ReceiveAsync<AssignmentsMessage>();
        var replicaId = Assert.Single(assigned.Replicas).ReplicaId;
        await agent.SendAsync(new HeartbeatMessage
        {
            AppliedRevision = assigned.Revision,
            Replicas = [new ReplicaReport { ReplicaId = replicaId, State = ReplicaState.Ready, Healthy = true, HostPort = _replicaPort }],
        });
        return (agent, new NodeIdentity { NodeId = welcome.NodeId, NodeSecret = welcome.NodeSecret! }, welcome.Edges, replicaId);
    }

    private TunnelManager Tunnels(Func<int, bool>? isReplicaPort = null) =>
        new(new TunnelOptions { IdlePerEdge = 2 }, isReplicaPort ?? (p => p == _replicaPort), TimeProvider.System, NullLoggerFactory.Instance);

    [Fact]
    public async Task A_tunnel_node_is_reached_through_its_tunnels_and_becomes_unreachable_when_they_close()
    {
        var (agent, identity, edges, replicaId) = await TunnelNodeWithReadyReplicaAsync();
        await using var _ = agent;
        Assert.Equal([_server.Server.EdgeAddress!.ToString().TrimEnd('/')], edges);

        // The route says "tunnel", with the replica's port on the node's own loopback.
        var table = _server.Server.Services.GetRequiredService<Shoal.Core.Routing.RouteTableHolder>();
        var destination = await Eventually.GetAsync(() => Task.FromResult(table.Current.Clusters.GetValueOrDefault("demo")?.Destinations.SingleOrDefault()), d => d is not null, what: "routed");
        Assert.Equal(RouteVia.Tunnel, destination!.Via);
        var upstreams = _server.Server.EdgeServices!.GetRequiredService<IUpstreamConnector>();
        Assert.False(upstreams.IsReachable(destination), "no tunnel is open yet");

        var tunnels = Tunnels();
        tunnels.Update(identity, edges);
        await Eventually.UntilAsync(() => Registry.LiveCount(identity.NodeId) == 2, what: "two idle tunnels");
        Assert.True(upstreams.IsReachable(destination));

        using var edge = new HttpClient { BaseAddress = _server.Server.EdgeAddress };
        for (var i = 0; i < 20; i++)
        {
            var response = await edge.GetAsync($"/c/demo/v1/models/{i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal($"path=/v1/models/{i}", await response.Content.ReadAsStringAsync());
            Assert.Equal(replicaId, response.Headers.GetValues("x-shoal-replica").Single());
        }
        Assert.Equal(1, Registry.Opened);

        // Concurrent requests share that one tunnel (HTTP/2 multiplexed); the replica still gets HTTP/1.1.
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => edge.GetStringAsync("/c/demo/slow")));
        Assert.All(concurrent, body => Assert.Equal("protocol=HTTP/1.1", body));
        Assert.Equal(1, Registry.Opened);

        // Server-sent events pass through the tunnel in order.
        var stream = await edge.GetStringAsync("/c/demo/stream");
        Assert.Equal("data: 0\n\ndata: 1\n\ndata: 2\n\n", stream);

        // The agent goes away: its tunnels close, and the node is unreachable without waiting for any heartbeat.
        await tunnels.DisposeAsync();
        await Eventually.UntilAsync(() => !Registry.HasTunnels(identity.NodeId), what: "tunnels gone");
        Assert.False(upstreams.IsReachable(destination));
    }

    [Fact]
    public async Task Tunnels_to_an_https_edge_are_tls_and_carry_requests_and_streams()
    {
        // Plain TCP tunnels are served on their sockets; a TLS tunnel goes through its SslStream.
        await using var tls = await TlsEdgeServer.StartAsync();
        var server = tls.Server;
        var (agent, identity, edges, replicaId) = await TunnelNodeWithReadyReplicaAsync(server);
        await using var _ = agent;
        Assert.StartsWith("https://", Assert.Single(edges), StringComparison.Ordinal);

        await using var tunnels = new TunnelManager(new TunnelOptions { IdlePerEdge = 2, EdgeCertificateValidation = (_, cert, _, _) => tls.IsEdgeCertificate(cert) },
            p => p == _replicaPort, TimeProvider.System, NullLoggerFactory.Instance);
        tunnels.Update(identity, edges);
        var registry = server.Server.EdgeServices!.GetRequiredService<TunnelRegistry>();
        await Eventually.UntilAsync(() => registry.LiveCount(identity.NodeId) == 2, what: "two idle TLS tunnels");

        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, cert, _, _) => tls.IsEdgeCertificate(cert) },
        };
        using var edge = new HttpClient(handler) { BaseAddress = server.Server.EdgeAddress };
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 10).Select(async i =>
        {
            using var response = await edge.GetAsync($"/c/demo/v1/models/{i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(replicaId, response.Headers.GetValues("x-shoal-replica").Single());
            return await response.Content.ReadAsStringAsync();
        }));
        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"path=/v1/models/{i}"), concurrent);
        Assert.Equal("data: 0\n\ndata: 1\n\ndata: 2\n\n", await edge.GetStringAsync("/c/demo/stream"));
        Assert.Equal(1, registry.Opened);
    }

    [Theory]
    [InlineData("known-node-wrong-secret")]
    [InlineData("the-node-secret-itself")]
    [InlineData("credential-for-another-edge")]
    [InlineData("unknown-node")]
    [InlineData("no-credentials")]
    public async Task A_tunnel_without_valid_node_credentials_is_refused_and_nothing_is_routed_to_it(string kind)
    {
        var (agent, identity, _, _) = await TunnelNodeWithReadyReplicaAsync();
        await using var _ = agent;
        var greeting = kind switch
        {
            "unknown-node" => $"{EdgeProtocol.TunnelGreeting} n-doesnotexist {TunnelCredential.FromSecret(identity.NodeSecret, LocalEdgeUrl)}\n",
            "known-node-wrong-secret" => $"{EdgeProtocol.TunnelGreeting} {identity.NodeId} not-the-secret\n",
            // The control-plane secret is not a tunnel credential, nor is the credential for another edge.
            "the-node-secret-itself" => $"{EdgeProtocol.TunnelGreeting} {identity.NodeId} {identity.NodeSecret}\n",
            "credential-for-another-edge" => $"{EdgeProtocol.TunnelGreeting} {identity.NodeId} {TunnelCredential.FromSecret(identity.NodeSecret, "http://edge-2.example:8080")}\n",
            _ => $"{EdgeProtocol.TunnelGreeting}\n",
        };
        var (answer, closed) = await GreetAsync(greeting);
        Assert.Equal("error: tunnels need valid node credentials\n", answer);
        Assert.True(closed, "the edge closes a refused tunnel");
        Assert.Equal(0, Registry.TotalLive);
    }

    [Fact]
    public async Task A_greeting_that_arrives_byte_by_byte_opens_a_tunnel_and_http_on_the_same_port_is_untouched()
    {
        var (agent, identity, _, _) = await TunnelNodeWithReadyReplicaAsync();
        await using var _ = agent;
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, _server.Server.EdgeAddress!.Port);
        var stream = client.GetStream();
        foreach (var b in System.Text.Encoding.ASCII.GetBytes($"{EdgeProtocol.TunnelGreeting} {identity.NodeId} {TunnelCredential.FromSecret(identity.NodeSecret, LocalEdgeUrl)}\n"))
        {
            await stream.WriteAsync(new[] { b });
            await stream.FlushAsync();
        }
        var answer = new byte[3];
        await stream.ReadExactlyAsync(answer);
        Assert.Equal("ok\n", System.Text.Encoding.ASCII.GetString(answer));
        await Eventually.UntilAsync(() => Registry.LiveCount(identity.NodeId) == 1, what: "the tunnel joined the pool");

        // A request on the edge's port that is not a tunnel reaches the HTTP server as before.
        using var edge = new HttpClient { BaseAddress = _server.Server.EdgeAddress };
        Assert.Equal(HttpStatusCode.OK, (await edge.GetAsync("/healthz")).StatusCode);
        var (unknown, _) = await GreetAsync("SHOUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 ", unknown);
        Assert.Equal(1, Registry.LiveCount(identity.NodeId));

        // The tunnel's connection closes: it leaves the pool at once.
        client.Close();
        await Eventually.UntilAsync(() => !Registry.HasTunnels(identity.NodeId), what: "tunnel gone");
    }

    [Fact]
    public async Task A_node_holds_at_most_its_tunnel_limit_and_tunnels_do_not_count_towards_their_address()
    {
        // One connection per address: nodes behind one NAT address still get their tunnels.
        await using var server = await TestServer.StartAsync(configure: o =>
        {
            o.EdgeMaxTunnelsPerNode = 2;
            o.EdgeMaxConnectionsPerAddress = 1;
        });
        var (agent, identity, _, _) = await TunnelNodeWithReadyReplicaAsync(server);
        await using var _ = agent;
        var registry = server.Server.EdgeServices!.GetRequiredService<TunnelRegistry>();
        var greeting = $"{EdgeProtocol.TunnelGreeting} {identity.NodeId} {TunnelCredential.FromSecret(identity.NodeSecret, server.Server.EdgeAddress!.ToString().TrimEnd('/'))}\n";

        using var first = await OpenTunnelAsync(server, greeting);
        using var second = await OpenTunnelAsync(server, greeting);
        Assert.Equal(2, registry.LiveCount(identity.NodeId));

        var (answer, closed) = await GreetAsync(server, greeting);
        Assert.Equal($"error: node {identity.NodeId} holds 2 tunnels to this edge, the most allowed\n", answer);
        Assert.True(closed, "the edge closes the tunnel beyond the limit");
        Assert.Equal(2, registry.LiveCount(identity.NodeId));

        // One closes: the node may open another.
        first.Close();
        await Eventually.UntilAsync(() => registry.LiveCount(identity.NodeId) == 1, what: "the closed tunnel left the pool");
        using var third = await OpenTunnelAsync(server, greeting);
        Assert.Equal(2, registry.LiveCount(identity.NodeId));
    }

    private static async Task<System.Net.Sockets.TcpClient> OpenTunnelAsync(TestServer server, string greeting)
    {
        var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, server.Server.EdgeAddress!.Port);
        var stream = client.GetStream();
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(greeting));
        var answer = new byte[3];
        await stream.ReadExactlyAsync(answer);
        Assert.Equal("ok\n", System.Text.Encoding.ASCII.GetString(answer));
        return client;
    }

    /// <summary>Sends <paramref name="greeting"/> on a fresh connection to the edge; what came back, and whether the edge then closed.</summary>
    private Task<(string Answer, bool Closed)> GreetAsync(string greeting) => GreetAsync(_server, greeting);

    private static async Task<(string Answer, bool Closed)> GreetAsync(TestServer server, string greeting)
    {
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, server.Server.EdgeAddress!.Port);
        var stream = client.GetStream();
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(greeting));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var received = new MemoryStream();
        var buffer = new byte[1024];
        int n;
        while ((n = await stream.ReadAsync(buffer, timeout.Token)) > 0)
        {
            received.Write(buffer, 0, n);
            if (received.Length > 4096) return (System.Text.Encoding.ASCII.GetString(received.ToArray()), false);
        }
        return (System.Text.Encoding.ASCII.GetString(received.ToArray()), true);
    }

    [Fact]
    public async Task A_replica_that_closes_the_connection_after_its_response_still_delivers_all_of_it()
    {
        var (agent, identity, edges, _) = await TunnelNodeWithReadyReplicaAsync();
        await using var _ = agent;
        await using var tunnels = Tunnels();
        tunnels.Update(identity, edges);
        await Eventually.UntilAsync(() => Registry.LiveCount(identity.NodeId) == 2, what: "two idle tunnels");

        // The agent half-closes the tunnel right behind the body: the edge must deliver what came before.
        using var edge = new HttpClient { BaseAddress = _server.Server.EdgeAddress };
        for (var i = 0; i < 10; i++)
        {
            var body = await edge.GetByteArrayAsync("/c/demo/close");
            Assert.Equal(256 * 1024, body.Length);
            Assert.Equal((byte)('a' + (256 * 1024 - 1) % 26), body[^1]);
        }
    }

    [Fact]
    public async Task The_agent_opens_tunnels_only_to_its_own_replica_ports()
    {
        var (agent, identity, edges, _) = await TunnelNodeWithReadyReplicaAsync();
        await using var _ = agent;
        await using var tunnels = Tunnels(isReplicaPort: _ => false);
        tunnels.Update(identity, edges);
        await Eventually.UntilAsync(() => Registry.LiveCount(identity.NodeId) == 2, what: "two idle tunnels");

        using var edge = new HttpClient { BaseAddress = _server.Server.EdgeAddress, Timeout = TimeSpan.FromSeconds(30) };
        var response = await edge.GetAsync("/c/demo/v1/models");
        Assert.False(response.IsSuccessStatusCode);
        Assert.True(response.StatusCode is HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable, $"got {response.StatusCode}");
        // The refused tunnel is replaced: the pool is back to its size.
        await Eventually.UntilAsync(() => Registry.LiveCount(identity.NodeId) == 2, what: "pool refilled");
    }
}

/// <summary>What a standalone edge learns about nodes: verifiers of its own tunnel credentials, nothing of their secrets.</summary>
public sealed class EdgeTunnelCredentialTests
{
    [Fact]
    public async Task Each_standalone_edge_gets_verifiers_for_its_own_url_only_never_the_node_secret_hash()
    {
        await using var server = await TestServer.StartAsync();
        var (agent, _) = await WireAgent.RegisterAsync(server.AgentUri, await server.CreateTokenAsync(), "node-t");
        await using var _1 = agent;
        await agent!.SendAsync(WireAgent.Hello("node-t", ("rtx-4090", 1)) with { Tunnel = true });
        var welcome = await agent.ReceiveAsync<WelcomeMessage>();
        var edgeKey = File.ReadAllText(server.Server.EdgeKeyFile!).Trim();

        async Task<Dictionary<string, string>> NodesSeenByAsync(string advertised)
        {
            using var socket = new System.Net.WebSockets.ClientWebSocket();
            socket.Options.SetRequestHeader("Authorization", "Bearer " + edgeKey);
            socket.Options.SetRequestHeader(EdgeProtocol.AdvertiseHeader, advertised);
            var uri = new Uri(server.Server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + EdgeProtocol.ConnectPath);
            await socket.ConnectAsync(uri, CancellationToken.None);
            var buffer = new byte[1 << 20];
            var count = 0;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (true)
            {
                var result = await socket.ReceiveAsync(buffer.AsMemory(count), timeout.Token);
                count += result.Count;
                if (result.EndOfMessage) break;
            }
            var message = System.Text.Json.JsonSerializer.Deserialize(buffer.AsSpan(0, count), ShoalJsonContext.Default.EdgeMessage);
            socket.Abort();
            return Assert.IsType<NodeCredentialsMessage>(message).Nodes;
        }

        var first = await NodesSeenByAsync("http://127.0.0.1:18081/");
        var second = await NodesSeenByAsync("http://127.0.0.1:18082");
        var hash = Secrets.Hash(welcome.NodeSecret!);
        Assert.Equal(TunnelCredential.Verifier(hash, "http://127.0.0.1:18081"), first[welcome.NodeId]);
        Assert.Equal(TunnelCredential.Verifier(hash, "http://127.0.0.1:18082"), second[welcome.NodeId]);
        Assert.NotEqual(first[welcome.NodeId], second[welcome.NodeId]);
        Assert.DoesNotContain(hash, first.Values.Concat(second.Values));
        Assert.DoesNotContain(welcome.NodeSecret!, first.Values.Concat(second.Values));
    }
}
