using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Shoal.Contracts;
using Shoal.Core.Access;
using Shoal.Core.Security;
using Shoal.Edge.Access;
using Shoal.Edge.Gateway;
using Shoal.Sim;

namespace Shoal.Edge.Tests.Gateway;

/// <summary>
/// The /v1 facade and the gateway's token figures with a real simulator replica behind a real edge:
/// routing by model among the key's project's clusters, OpenAI's error shapes, the usage the edge
/// asks a stream for (and strips), and the figures the ledger gets equal to what the client received.
/// </summary>
public sealed class GatewayFacadeTests : IAsyncLifetime
{
    private const string AlphaKey = "shoal_ek_alpha_test_key";
    private const string BetaKey = "shoal_ek_beta_test_key";
    private readonly CapturingLedger _ledger = new();
    private WebApplication _sim = null!;
    private TestEdge _edge = null!;

    public async Task InitializeAsync()
    {
        _sim = SimServer.Build(new SimOptions { Host = "127.0.0.1", Port = 0, PrefillPerToken = TimeSpan.Zero, DecodePerToken = TimeSpan.FromMilliseconds(0.2) },
            exit: code => throw new InvalidOperationException($"sim exit {code}"));
        await _sim.StartAsync();
        var keys = new EndpointKeyHolder();
        keys.Update(new Dictionary<string, EndpointKeyGrant>(StringComparer.Ordinal)
        {
            [Secrets.Hash(AlphaKey)] = new("alpha", null) { KeyId = "key-alpha" },
            [Secrets.Hash(BetaKey)] = new("beta", null) { KeyId = "key-beta" },
        });
        _edge = await TestEdge.StartAsync(services: s =>
        {
            s.AddSingleton<IEndpointKeySource>(keys);
            s.AddSingleton<IUsageLedger>(_ledger);
        });
        var sim = SimServer.Address(_sim);
        ClusterRoute Route(string name, string project, string[] models, bool isPublic = false) => TestEdge.Route(name, [("r-" + name, sim)]) with
        {
            Project = project, Public = isPublic, Models = models,
        };
        _edge.Routes.Update(new RouteTable
        {
            Version = 1,
            Clusters = new Dictionary<string, ClusterRoute>(StringComparer.Ordinal)
            {
                ["chat"] = Route("chat", "alpha", ["llama-8b", "shared"]),
                ["chat-b"] = Route("chat-b", "alpha", ["shared"]) with { Destinations = [] },
                ["other"] = Route("other", "beta", ["mistral-7b"]),
                ["open"] = Route("open", "beta", ["public-model"], isPublic: true),
            },
        });
    }

    public async Task DisposeAsync()
    {
        await _edge.DisposeAsync();
        await _sim.DisposeAsync();
    }

    private HttpClient Client(string? key)
    {
        var client = _edge.Client();
        if (key is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Models_lists_only_the_keys_project_and_requests_route_by_model()
    {
        using var alpha = Client(AlphaKey);
        using var models = JsonDocument.Parse(await alpha.GetStringAsync("/v1/models"));
        Assert.Equal("list", models.RootElement.GetProperty("object").GetString());
        var ids = models.RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!).ToArray();
        Assert.Equal(["llama-8b", "shared"], ids);
        Assert.All(models.RootElement.GetProperty("data").EnumerateArray(), m => Assert.Equal("model", m.GetProperty("object").GetString()));

        // "shared" is served by two clusters: the one with a ready replica answers.
        foreach (var model in new[] { "llama-8b", "shared" })
        {
            var response = await alpha.PostAsync("/v1/chat/completions", Json($$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"""));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("r-chat", response.Headers.GetValues(EdgeProxy.ReplicaHeader).Single());
        }

        // Another project's model, a public cluster's of another project, an unknown one, none: OpenAI's 404.
        foreach (var body in new[] { """{"model":"mistral-7b","messages":[]}""", """{"model":"public-model","messages":[]}""", """{"model":"nope","messages":[]}""", """{"messages":[]}""", "not json" })
        {
            var response = await alpha.PostAsync("/v1/chat/completions", Json(body));
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            var e = error.RootElement.GetProperty("error");
            Assert.Equal("model_not_found", e.GetProperty("code").GetString());
            Assert.Equal("invalid_request_error", e.GetProperty("type").GetString());
            Assert.Equal("model", e.GetProperty("param").GetString());
        }
        using var unknown = JsonDocument.Parse(await (await alpha.PostAsync("/v1/chat/completions", Json("""{"model":"nope"}"""))).Content.ReadAsStringAsync());
        Assert.Equal("The model 'nope' does not exist or you do not have access to it.", unknown.RootElement.GetProperty("error").GetProperty("message").GetString());

        using var beta = Client(BetaKey);
        var betaIds = JsonDocument.Parse(await beta.GetStringAsync("/v1/models")).RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!);
        Assert.Equal(["mistral-7b", "public-model"], betaIds);

        // No key, a wrong key: 401 in OpenAI's shape.
        foreach (var key in new[] { null, "shoal_ek_wrong" })
        {
            using var client = Client(key);
            var response = await client.GetAsync("/v1/models");
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal("invalid_api_key", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        }
    }

    [Fact]
    public async Task A_body_over_the_replay_buffer_is_413_in_openai_shape()
    {
        using var alpha = Client(AlphaKey);
        var big = "{\"model\":\"llama-8b\",\"prompt\":\"" + new string('a', EdgeOptions.ReplayBufferBytes) + "\"}";
        var response = await alpha.PostAsync("/v1/completions", Json(big));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("request_too_large", error.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Usage_figures_equal_what_the_client_received()
    {
        using var alpha = Client(AlphaKey);
        // Not streamed: the answer's usage.
        var plain = await alpha.PostAsync("/v1/chat/completions", Json("""{"model":"llama-8b","messages":[{"role":"user","content":"Hello there"}],"max_tokens":5}"""));
        var requestId = plain.Headers.GetValues(GatewayHeaders.RequestId).Single();
        using (var doc = JsonDocument.Parse(await plain.Content.ReadAsStringAsync()))
        {
            var usage = doc.RootElement.GetProperty("usage");
            var row = await _ledger.WaitAsync(requestId);
            Assert.Equal(usage.GetProperty("prompt_tokens").GetInt64(), row.PromptTokens);
            Assert.Equal(usage.GetProperty("completion_tokens").GetInt64(), row.CompletionTokens);
            Assert.Equal("llama-8b", row.Model);
            Assert.Equal("key-alpha", row.KeyId);
            Assert.False(row.Streamed);
        }

        // Streamed without asking for usage: the edge asks, counts, and the client never sees the usage chunk.
        var (events, id) = await StreamAsync(alpha, """{"model":"llama-8b","stream":true,"messages":[{"role":"user","content":"Hello there"}],"max_tokens":7}""");
        Assert.DoesNotContain(events, e => e.Contains("\"usage\":{", StringComparison.Ordinal));
        Assert.Equal("[DONE]", events[^1]);
        var contentChunks = events.Count(e => e.Contains("\"content\":\"", StringComparison.Ordinal) && !e.Contains("\"content\":\"\"", StringComparison.Ordinal));
        var streamed = await _ledger.WaitAsync(id);
        Assert.Equal(7, streamed.CompletionTokens);
        Assert.Equal(contentChunks, streamed.CompletionTokens);
        Assert.True(streamed.PromptTokens > 0);
        Assert.True(streamed.Streamed);

        // Streamed asking for usage: the client gets it, and the figures agree.
        (events, id) = await StreamAsync(alpha, """{"model":"llama-8b","stream":true,"stream_options":{"include_usage":true},"prompt":"Hello there","max_tokens":4}""", "/v1/completions");
        var usageEvent = Assert.Single(events, e => e.Contains("\"usage\":{", StringComparison.Ordinal));
        using (var doc = JsonDocument.Parse(usageEvent))
        {
            var row = await _ledger.WaitAsync(id);
            Assert.Equal(doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt64(), row.CompletionTokens);
            Assert.Equal(doc.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt64(), row.PromptTokens);
        }

        // The per-cluster path gets the same accounting.
        (events, id) = await StreamAsync(alpha, """{"model":"x","stream":true,"messages":[{"role":"user","content":"Hi"}],"max_tokens":3}""", "/c/chat/v1/chat/completions");
        Assert.DoesNotContain(events, e => e.Contains("\"usage\":{", StringComparison.Ordinal));
        Assert.Equal(3, (await _ledger.WaitAsync(id)).CompletionTokens);
    }

    [Fact]
    public async Task A_stream_whose_last_event_has_no_blank_line_reaches_the_client_whole()
    {
        // Events split across writes, and a last one the tap holds until the answer ends.
        const string stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"del" + "ta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]";
        await using var replica = await TestReplica.StartAsync("raw", async ctx =>
        {
            ctx.Response.ContentType = "text/event-stream";
            foreach (var part in new[] { stream[..30], stream[30..70], stream[70..] })
            {
                await ctx.Response.WriteAsync(part);
                await ctx.Response.Body.FlushAsync();
            }
        });
        _edge.Routes.Update(_edge.Routes.Current with
        {
            Version = 2,
            Clusters = new Dictionary<string, ClusterRoute>(_edge.Routes.Current.Clusters, StringComparer.Ordinal) { ["raw"] = TestEdge.Route("raw", [replica.Route]) },
        });
        using var client = Client(null);
        var response = await client.PostAsync("/c/raw/v1/chat/completions", Json("""{"model":"m","stream":true,"messages":[]}"""));
        Assert.Equal(stream, await response.Content.ReadAsStringAsync());
        var row = await _ledger.WaitAsync(response.Headers.GetValues(GatewayHeaders.RequestId).Single());
        Assert.Equal(2, row.CompletionTokens);
        Assert.False(row.Cut);
    }

    private static async Task<(List<string> Events, string RequestId)> StreamAsync(HttpClient client, string body, string path = "/v1/chat/completions")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(body) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var id = response.Headers.GetValues(GatewayHeaders.RequestId).Single();
        var text = await response.Content.ReadAsStringAsync();
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.StartsWith("data: ", StringComparison.Ordinal) ? e[6..] : e).ToList();
        return (events, id);
    }

    private sealed class CapturingLedger : IUsageLedger
    {
        private readonly ConcurrentDictionary<string, UsageRecord> _rows = new(StringComparer.Ordinal);

        public void Record(UsageRecord record) => _rows[record.RequestId] = record;

        public async Task<UsageRecord> WaitAsync(string requestId)
        {
            // The row is written when the edge finishes the request, just after the client has the last byte.
            await Shoal.Testing.Eventually.UntilAsync(() => _rows.ContainsKey(requestId), TimeSpan.FromSeconds(5), what: $"the ledger row of {requestId}");
            return _rows[requestId];
        }
    }
}
