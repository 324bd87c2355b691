using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using OpenAI;
using OpenAI.Chat;
using Shoal.Contracts;
using Shoal.Edge;
using Shoal.Server;
using Shoal.Sim;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Endpoints through a standalone edge: a project's endpoint key opens its clusters (and the real
/// OpenAI client works with it as its api_key); no key is 401; another project's key is 404 as for an
/// unknown cluster; a public cluster needs none; a revoked key stops working within a second.
/// </summary>
public sealed class EndpointKeyTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("shoal-keys");
    private WebApplication _sim = null!;
    private LoopbackReplica _echo = null!;

    public async Task InitializeAsync()
    {
        _sim = SimServer.Build(new SimOptions { Host = "127.0.0.1", Port = 0, PrefillPerToken = TimeSpan.Zero, DecodePerToken = TimeSpan.FromMilliseconds(0.2) },
            exit: code => throw new InvalidOperationException($"sim exit {code}"));
        await _sim.StartAsync();
        // Says which Authorization header reached the replica.
        _echo = await LoopbackReplica.StartAsync(ctx => ctx.Response.WriteAsync("auth=" + ctx.Request.Headers.Authorization));
    }

    public async Task DisposeAsync()
    {
        await _echo.DisposeAsync();
        await _sim.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task Endpoint_keys_open_their_projects_clusters_at_a_standalone_edge_and_a_revoked_key_stops_within_a_second()
    {
        await using var server = await ShoalServer.StartAsync(
            new ServerOptions { Listen = "127.0.0.1:0", NoEdge = true, DataDir = _dir.Path, LogLevel = LogLevel.Warning, AllowLoopbackNodes = true, AllowSimulatedGpus = true },
            logging: l => l.SetMinimumLevel(LogLevel.Warning));
        using var api = server.ApiClient();
        await using var edge = await EdgeServer.StartAsync(new EdgeServerOptions
        {
            Server = server.ApiAddress.ToString(),
            Key = File.ReadAllText(server.EdgeKeyFile!),
            Edge = new EdgeOptions { Listen = "127.0.0.1:0" },
            LogLevel = LogLevel.Warning,
        }, logging: l => l.SetMinimumLevel(LogLevel.Warning));
        await edge.Control.FirstTable.WaitAsync(TimeSpan.FromSeconds(10));

        foreach (var project in new[] { "alpha", "beta" })
        {
            (await api.PostAsJsonAsync("/v1/projects", new CreateProjectRequest { Name = project }, ShoalJsonContext.Default.CreateProjectRequest)).EnsureSuccessStatusCode();
        }
        var alphaKey = await ApiKeys.CreateAsync(api, ApiKeyRoles.Endpoint, "alpha", "app");
        var betaKey = await ApiKeys.CreateAsync(api, ApiKeyRoles.Endpoint, "beta", "other-app");

        // One direct-mode node runs a replica of each cluster: the simulator, and an echo (private and public).
        var agentUri = new Uri(server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + AgentProtocol.ConnectPath);
        var token = await ApiKeysTestTokens.CreateAsync(api);
        var (agent, _) = await WireAgent.RegisterAsync(agentUri, token, "node-k");
        await using (agent)
        {
            await agent!.SendAsync(WireAgent.Hello("node-k", ("rtx-4090", 3)));
            await agent.ReceiveAsync<WelcomeMessage>();
            await agent.ReceiveAsync<AssignmentsMessage>();
            foreach (var (name, isPublic) in new[] { ("chat", false), ("echo", false), ("open", true) })
            {
                (await api.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = name, Project = "alpha", Public = isPublic, Image = "shoal/sim", Gpu = "rtx-4090" },
                    ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            }
            AssignmentsMessage assigned;
            do
            {
                assigned = await agent.ReceiveAsync<AssignmentsMessage>();
            }
            while (assigned.Replicas.Length < 3);
            var simPort = SimServer.Address(_sim).Port;
            await agent.SendAsync(new HeartbeatMessage
            {
                AppliedRevision = assigned.Revision,
                Replicas = [.. assigned.Replicas.Select(r => new ReplicaReport
                {
                    ReplicaId = r.ReplicaId, State = ReplicaState.Ready, Healthy = true, HostPort = r.Cluster == "chat" ? simPort : _echo.Port,
                })],
            });

            using var anonymous = new HttpClient { BaseAddress = edge.Address };
            await Eventually.GetAsync(() => anonymous.GetAsync("/c/open/x"), r => r.IsSuccessStatusCode, what: "the edge routes the public cluster");

            // No key: 401 with the error JSON. Another project's key: the 404 of an unknown cluster.
            var none = await anonymous.GetAsync("/c/echo/x");
            Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
            Assert.Equal(ErrorCodes.Unauthorized, (await none.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Code);
            using var beta = new HttpClient { BaseAddress = edge.Address }.WithKey(betaKey);
            var foreign = await beta.GetAsync("/c/echo/x");
            var unknown = await beta.GetAsync("/c/no-such-cluster/x");
            Assert.Equal(HttpStatusCode.NotFound, foreign.StatusCode);
            Assert.Equal((await unknown.Content.ReadAsStringAsync()).Replace("no-such-cluster", "echo", StringComparison.Ordinal), await foreign.Content.ReadAsStringAsync());
            using var wrong = new HttpClient { BaseAddress = edge.Address }.WithKey("shoal_sk_" + new string('x', 43));
            Assert.Equal(HttpStatusCode.Unauthorized, (await wrong.GetAsync("/c/echo/x")).StatusCode);

            // The right key: served, and the replica never sees it. A public cluster passes Authorization through untouched.
            using var alpha = new HttpClient { BaseAddress = edge.Address }.WithKey(alphaKey);
            Assert.Equal("auth=", await alpha.GetStringAsync("/c/echo/x"));
            Assert.Equal("auth=", await anonymous.GetStringAsync("/c/open/x"));
            Assert.Equal("auth=Bearer own-token", await new HttpClient { BaseAddress = edge.Address }.WithKey("own-token").GetStringAsync("/c/open/x"));

            // The real OpenAI client with the endpoint key as its api_key: a completion and a stream.
            var openai = new ChatClient("shoal-sim", new ApiKeyCredential(alphaKey), new OpenAIClientOptions { Endpoint = new Uri(edge.Address, "/c/chat/v1") });
            ChatCompletion completion = await openai.CompleteChatAsync([new UserChatMessage("Hello")]);
            Assert.False(string.IsNullOrEmpty(completion.Content[0].Text));
            var streamed = new StringBuilder();
            await foreach (var update in openai.CompleteChatStreamingAsync([new UserChatMessage("Hello")]))
            {
                foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            }
            Assert.True(streamed.Length > 0);
            var rejected = new ChatClient("shoal-sim", new ApiKeyCredential(betaKey), new OpenAIClientOptions { Endpoint = new Uri(edge.Address, "/c/chat/v1") });
            var refused = await Assert.ThrowsAsync<ClientResultException>(() => rejected.CompleteChatAsync([new UserChatMessage("Hello")]));
            Assert.Equal(404, refused.Status);

            // Revoked: refused at the standalone edge within a second.
            var keyId = (await api.GetFromJsonAsync("/v1/keys", ShoalJsonContext.Default.ApiKeyDtoArray))!.Single(k => k.Name == "app").Id;
            var clock = Stopwatch.StartNew();
            (await api.DeleteAsync($"/v1/keys/{keyId}")).EnsureSuccessStatusCode();
            while ((await alpha.GetAsync("/c/echo/x")).StatusCode != HttpStatusCode.Unauthorized)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "the revoked key still works after 5 s");
                await Task.Delay(10);
            }
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"the revoked key was refused only after {clock.ElapsedMilliseconds} ms");
        }
    }
}

/// <summary>Provisioning tokens through an API client that carries the operator key.</summary>
internal static class ApiKeysTestTokens
{
    public static async Task<string> CreateAsync(HttpClient api)
    {
        var response = await api.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 1, TtlSeconds = 600 }, ShoalJsonContext.Default.CreateTokenRequest);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!.Token;
    }
}
