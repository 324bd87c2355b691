using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.AspNetCore.Builder;
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
/// Issue 16, must-show 4: the official .NET OpenAI client against a standalone edge's <c>/v1</c> with
/// an endpoint key: chat, a stream with usage, <c>models.list()</c> showing only the key's models (a
/// second project's cluster's model absent), an unknown model → OpenAI's 404 <c>model_not_found</c>;
/// a raw stream that did not ask for usage never sees the usage chunk the edge asked for.
/// </summary>
public sealed class GatewayOpenAiTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("shoal-gateway");
    private WebApplication _sim = null!;

    public async Task InitializeAsync()
    {
        _sim = SimServer.Build(new SimOptions { Host = "127.0.0.1", Port = 0, PrefillPerToken = TimeSpan.Zero, DecodePerToken = TimeSpan.FromMilliseconds(0.2) },
            exit: code => throw new InvalidOperationException($"sim exit {code}"));
        await _sim.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _sim.DisposeAsync();
        _dir.Dispose();
    }

    [Fact]
    public async Task The_official_openai_client_works_against_the_edges_v1_with_an_endpoint_key()
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

        var agentUri = new Uri(server.ApiAddress.ToString().Replace("http://", "ws://", StringComparison.Ordinal).TrimEnd('/') + AgentProtocol.ConnectPath);
        var token = await ApiKeysTestTokens.CreateAsync(api);
        var (agent, _) = await WireAgent.RegisterAsync(agentUri, token, "node-g");
        await using (agent)
        {
            await agent!.SendAsync(WireAgent.Hello("node-g", ("rtx-4090", 2)));
            await agent.ReceiveAsync<WelcomeMessage>();
            await agent.ReceiveAsync<AssignmentsMessage>();
            // "llama" declares its model; "mistral" (another project) takes what its replica lists on /v1/models.
            foreach (var (name, project, declared) in new[] { ("llama", "alpha", (string[]?)["llama-3.1-8b"]), ("mistral", "beta", null) })
            {
                var created = await api.PostAsJsonAsync("/v1/clusters",
                    new CreateClusterRequest { Name = name, Project = project, Image = "shoal/sim", Gpu = "rtx-4090", Models = declared },
                    ShoalJsonContext.Default.CreateClusterRequest);
                created.EnsureSuccessStatusCode();
                var dto = (await created.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto))!;
                Assert.Equal(declared ?? [], dto.Models);
                Assert.Equal(declared is not null, dto.ModelsDeclared);
            }
            AssignmentsMessage assigned;
            do
            {
                assigned = await agent.ReceiveAsync<AssignmentsMessage>();
            }
            while (assigned.Replicas.Length < 2);
            var simPort = SimServer.Address(_sim).Port;
            await agent.SendAsync(new HeartbeatMessage
            {
                AppliedRevision = assigned.Revision,
                Replicas = [.. assigned.Replicas.Select(r => new ReplicaReport
                {
                    ReplicaId = r.ReplicaId, State = ReplicaState.Ready, Healthy = true, HostPort = simPort,
                    Models = r.Cluster == "mistral" ? ["mistral-7b"] : null,
                })],
            });

            var options = new OpenAIClientOptions { Endpoint = new Uri(edge.Address, "/v1") };
            var openai = new OpenAIClient(new ApiKeyCredential(alphaKey), options);

            // models.list(): only the key's project's model. A new key reaches the edge with its next key set:
            // until then, 401 (not yet).
            async Task<string[]> ModelsAsync(string key)
            {
                try
                {
                    return [.. (await new OpenAIClient(new ApiKeyCredential(key), options).GetOpenAIModelClient().GetModelsAsync()).Value.Select(m => m.Id)];
                }
                catch (ClientResultException e) when (e.Status == 401)
                {
                    return [];
                }
            }
            var models = await Eventually.GetAsync(() => ModelsAsync(alphaKey), ids => ids.Length > 0, what: "the edge lists the key's models");
            Assert.Equal(["llama-3.1-8b"], models);

            // Chat, and a stream with usage.
            var chat = openai.GetChatClient("llama-3.1-8b");
            ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("Hello")], new ChatCompletionOptions { MaxOutputTokenCount = 5 });
            Assert.False(string.IsNullOrEmpty(completion.Content[0].Text));
            Assert.Equal(5, completion.Usage.OutputTokenCount);
            var streamed = new StringBuilder();
            ChatTokenUsage? usage = null;
            await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Hello")], new ChatCompletionOptions { MaxOutputTokenCount = 6 }))
            {
                foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
                usage ??= update.Usage;
            }
            Assert.True(streamed.Length > 0);
            Assert.NotNull(usage);
            Assert.Equal(6, usage.OutputTokenCount);

            // Another project's model and an unknown one: OpenAI's 404.
            foreach (var model in new[] { "mistral-7b", "gpt-4o" })
            {
                var refused = await Assert.ThrowsAsync<ClientResultException>(() => openai.GetChatClient(model).CompleteChatAsync([new UserChatMessage("Hello")]));
                Assert.Equal(404, refused.Status);
                Assert.Contains("model_not_found", refused.Message, StringComparison.Ordinal);
            }

            // The replica-listed model: the cluster's models, and the beta key's list.
            var mistral = (await api.GetFromJsonAsync("/v1/clusters/mistral", ShoalJsonContext.Default.ClusterDto))!;
            Assert.Equal(["mistral-7b"], mistral.Models);
            Assert.False(mistral.ModelsDeclared);
            var betaKey = await ApiKeys.CreateAsync(api, ApiKeyRoles.Endpoint, "beta", "other-app");
            var betaModels = await Eventually.GetAsync(() => ModelsAsync(betaKey), ids => ids.Length > 0, what: "the edge lists the beta key's models");
            Assert.Equal(["mistral-7b"], betaModels);

            // A stream that did not ask for usage: the edge asked, and the client does not see that chunk.
            using var raw = new HttpClient { BaseAddress = edge.Address }.WithKey(alphaKey);
            var body = await (await raw.PostAsync("/v1/chat/completions", new StringContent(
                """{"model":"llama-3.1-8b","stream":true,"max_tokens":4,"messages":[{"role":"user","content":"Hi"}]}""", Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync();
            Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);
            Assert.DoesNotContain("\"usage\":{", body, StringComparison.Ordinal);

            // Declared models change without a new generation, and the edge routes the new name.
            var patched = await api.PatchAsJsonAsync("/v1/clusters/llama", new UpdateClusterRequest { Models = ["llama-3.1-8b", "llama-alias"] },
                ShoalJsonContext.Default.UpdateClusterRequest);
            patched.EnsureSuccessStatusCode();
            Assert.Equal(1, (await patched.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto))!.Generation);
            await Eventually.GetAsync(async () => (await openai.GetOpenAIModelClient().GetModelsAsync()).Value.Select(m => m.Id).ToArray(),
                ids => ids.Contains("llama-alias"), what: "the edge lists the new model name");
            ChatCompletion aliased = await openai.GetChatClient("llama-alias").CompleteChatAsync([new UserChatMessage("Hello")]);
            Assert.False(string.IsNullOrEmpty(aliased.Content[0].Text));

            // No key: 401 with code invalid_api_key.
            using var anonymous = new HttpClient { BaseAddress = edge.Address };
            var unauthorized = await anonymous.GetAsync("/v1/models");
            Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode);
            Assert.Contains("invalid_api_key", await unauthorized.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
    }
}
