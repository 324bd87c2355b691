using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.Edge;
using Shoal.Edge.Gateway;
using Shoal.Edge.Metrics;
using Shoal.Server;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Issue 16, must-show 1 in small: three standalone edges sharing one real redis-server, many
/// concurrent clients on one key limited to a small RPM: no more admitted than the limit across the
/// edges, every refusal a 429 with Retry-After, OpenAI's error and the x-ratelimit headers. Then Redis
/// hangs (SIGSTOP) for a moment: every edge refuses (429) rather than admit on its share. Then Redis is killed: no edge fails, each admits within its share (limit ÷ 3) and answers the rest with 429,
/// and the edges' metrics show the fallback.
/// </summary>
public sealed class GatewayLimitsEndToEndTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("shoal-limits");
    private RedisServer _redis = null!;
    private LoopbackReplica _replica = null!;

    public async Task InitializeAsync()
    {
        _redis = await RedisServer.StartAsync();
        _replica = await LoopbackReplica.StartAsync(ctx => ctx.Response.WriteAsync("ok"));
    }

    public async Task DisposeAsync()
    {
        await _replica.DisposeAsync();
        await _redis.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task Three_edges_sharing_redis_admit_no_more_than_the_limit_and_fall_back_to_their_share_when_redis_dies()
    {
        await using var server = await ShoalServer.StartAsync(
            new ServerOptions { Listen = "127.0.0.1:0", NoEdge = true, DataDir = _dir.Path, LogLevel = LogLevel.Warning, AllowLoopbackNodes = true, AllowSimulatedGpus = true },
            logging: l => l.SetMinimumLevel(LogLevel.Warning));
        using var api = server.ApiClient();
        var edges = new List<EdgeServer>();
        try
        {
            for (var i = 1; i <= 3; i++)
            {
                edges.Add(await EdgeServer.StartAsync(new EdgeServerOptions
                {
                    Server = server.ApiAddress.ToString(),
                    Key = File.ReadAllText(server.EdgeKeyFile!),
                    Edge = new EdgeOptions { Listen = "127.0.0.1:0", Redis = _redis.Configuration, Name = $"edge-{i}" },
                    LogLevel = LogLevel.Warning,
                }, logging: l => l.SetMinimumLevel(LogLevel.Warning)));
            }
            (await api.PostAsJsonAsync("/v1/projects", new CreateProjectRequest { Name = "alpha" }, ShoalJsonContext.Default.CreateProjectRequest)).EnsureSuccessStatusCode();
            var limited = await CreateKeyAsync(api, "limited", new GatewayLimits { RequestsPerMinute = 20 });
            var share = await CreateKeyAsync(api, "share", new GatewayLimits { RequestsPerMinute = 9 });
            var probe = await CreateKeyAsync(api, "probe", null);

            // One node runs the cluster's replica (a loopback echo).
            var agentUri = new Uri(server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + AgentProtocol.ConnectPath);
            var (agent, _) = await WireAgent.RegisterAsync(agentUri, await ApiKeysTestTokens.CreateAsync(api), "node-l");
            await using var _agent = agent!;
            await agent!.SendAsync(WireAgent.Hello("node-l", ("rtx-4090", 1)));
            await agent.ReceiveAsync<WelcomeMessage>();
            await agent.ReceiveAsync<AssignmentsMessage>();
            (await api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "echo", Project = "alpha", Image = "shoal/sim", Gpu = "rtx-4090" },
                ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            AssignmentsMessage assigned;
            do assigned = await agent.ReceiveAsync<AssignmentsMessage>();
            while (assigned.Replicas.Length < 1);
            await agent.SendAsync(new HeartbeatMessage
            {
                AppliedRevision = assigned.Revision,
                Replicas = [.. assigned.Replicas.Select(r => new ReplicaReport { ReplicaId = r.ReplicaId, State = ReplicaState.Ready, Healthy = true, HostPort = _replica.Port })],
            });
            foreach (var edge in edges)
            {
                using var http = new HttpClient { BaseAddress = edge.Address }.WithKey(probe);
                await Eventually.GetAsync(() => http.GetAsync("/c/echo/x"), r => r.IsSuccessStatusCode, what: $"{edge.Address} serves the cluster");
                var keys = edge.Services.GetRequiredService<Shoal.Core.Access.IEndpointKeySource>();
                await Eventually.UntilAsync(() => keys.EndpointKeys.Values.Count(g => g.Limits is not null) == 2, what: "the keys' limits at the edge");
            }
            var counters = edges.Select(e => (RedisRateCounters)e.Services.GetRequiredService<IRateCounters>()).ToList();
            foreach (var c in counters) await c.RegisterAsync();
            foreach (var c in counters) await c.RegisterAsync();
            Assert.All(counters, c => Assert.Equal(3, c.Edges));

            // 30 concurrent clients, 4 requests each, spread over the three edges: 120 tries in far less than a minute.
            var clients = edges.Select(e => new HttpClient { BaseAddress = e.Address }.WithKey(limited)).ToArray();
            var results = await Task.WhenAll(Enumerable.Range(0, 30).Select(async c =>
            {
                var mine = new List<HttpResponseMessage>();
                for (var i = 0; i < 4; i++) mine.Add(await clients[(c + i) % 3].GetAsync("/c/echo/x"));
                return mine;
            }));
            var all = results.SelectMany(r => r).ToList();
            Assert.Equal(20, all.Count(r => r.StatusCode == HttpStatusCode.OK));
            Assert.Equal(100, all.Count(r => r.StatusCode == HttpStatusCode.TooManyRequests));
            foreach (var ok in all.Where(r => r.StatusCode == HttpStatusCode.OK))
            {
                Assert.Equal("20", Header(ok, GatewayHeaders.LimitRequests));
                Assert.NotNull(Header(ok, GatewayHeaders.RemainingRequests));
                Assert.NotNull(Header(ok, GatewayHeaders.ResetRequests));
            }
            foreach (var refused in all.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests))
            {
                Assert.Equal("20", Header(refused, GatewayHeaders.LimitRequests));
                Assert.Equal("0", Header(refused, GatewayHeaders.RemainingRequests));
                Assert.EndsWith("s", Header(refused, GatewayHeaders.ResetRequests), StringComparison.Ordinal);
                Assert.True(int.Parse(Header(refused, "Retry-After")!, System.Globalization.CultureInfo.InvariantCulture) is > 0 and <= 60);
                var error = (await refused.Content.ReadFromJsonAsync(ShoalJsonContext.Default.OpenAiErrorResponse))!.Error;
                Assert.Equal(("requests", "rate_limit_exceeded"), (error.Type, error.Code));
                Assert.Contains("limit 20", error.Message, StringComparison.Ordinal);
            }

            // Redis hangs (SIGSTOP) with the edges still connected: each waits 5 s for it, then refuses (429 with the
            // headers), never admits on its share: the other edges could still be counting in Redis.
            var shareClients = edges.Select(e => new HttpClient { BaseAddress = e.Address }.WithKey(share)).ToArray();
            await _redis.PauseAsync();
            HttpResponseMessage[] unconfirmed;
            try
            {
                unconfirmed = await Task.WhenAll(shareClients.Select(http => http.GetAsync("/c/echo/x")));
            }
            finally
            {
                await _redis.ResumeAsync();
            }
            foreach (var refused in unconfirmed)
            {
                Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
                Assert.Equal(("1", "9", "0"), (Header(refused, "Retry-After"), Header(refused, GatewayHeaders.LimitRequests), Header(refused, GatewayHeaders.RemainingRequests)));
                var error = (await refused.Content.ReadFromJsonAsync(ShoalJsonContext.Default.OpenAiErrorResponse))!.Error;
                Assert.Equal("rate_limit_exceeded", error.Code);
                Assert.Contains("did not confirm", error.Message, StringComparison.Ordinal);
            }
            foreach (var edge in edges)
            {
                var metrics = edge.Services.GetRequiredService<EdgeMetrics>().Render();
                Assert.Contains("shoal_edge_gateway_limits_unanswered_total 1", metrics, StringComparison.Ordinal);
                Assert.Contains("shoal_edge_gateway_limits_fallback_total 0", metrics, StringComparison.Ordinal);
            }

            // Redis dies: each edge decides alone on its share of the 9 (3), answers every request, fails none.
            await _redis.KillAsync();
            var perEdge = await Task.WhenAll(shareClients.Select(async http =>
            {
                var statuses = new List<HttpStatusCode>();
                for (var i = 0; i < 6; i++) statuses.Add((await http.GetAsync("/c/echo/x")).StatusCode);
                return statuses;
            }));
            Assert.All(perEdge, statuses =>
            {
                Assert.All(statuses, s => Assert.True(s is HttpStatusCode.OK or HttpStatusCode.TooManyRequests, $"got {(int)s}"));
                Assert.Equal(3, statuses.Count(s => s == HttpStatusCode.OK));
            });
            foreach (var edge in edges)
            {
                var metrics = edge.Services.GetRequiredService<EdgeMetrics>().Render();
                Assert.Contains("shoal_edge_gateway_limits_shared 0", metrics, StringComparison.Ordinal);
                Assert.Matches(@"shoal_edge_gateway_limits_fallback_total [1-9]", metrics);
                Assert.Contains("shoal_edge_gateway_limits_edges 3", metrics, StringComparison.Ordinal);
                Assert.Matches("shoal_edge_gateway_limited_total\\{scope=\"key\",kind=\"requests\"\\} [1-9]", metrics);
            }
            // A key without limits is not held up by the outage.
            using (var free = new HttpClient { BaseAddress = edges[0].Address }.WithKey(probe))
            {
                Assert.Equal(HttpStatusCode.OK, (await free.GetAsync("/c/echo/x")).StatusCode);
            }
        }
        finally
        {
            foreach (var edge in edges) await edge.DisposeAsync();
        }
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.First() : null;

    private static async Task<string> CreateKeyAsync(HttpClient api, string name, GatewayLimits? limits)
    {
        var response = await api.PostAsJsonAsync("/v1/keys", new CreateApiKeyRequest { Name = name, Role = ApiKeyRoles.Endpoint, Project = "alpha", Limits = limits },
            ShoalJsonContext.Default.CreateApiKeyRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyCreatedDto))!.Key;
    }
}
