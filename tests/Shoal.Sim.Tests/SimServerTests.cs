using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Shoal.Testing;

namespace Shoal.Sim.Tests;

public sealed class SimServerTests
{
    private static readonly object s_chat = new
    {
        model = "shoal-sim",
        messages = new[] { new { role = "user", content = "Hello there" } },
        max_tokens = 5,
    };

    [Fact]
    public async Task Chat_completion_has_the_openai_shape_and_usage()
    {
        var options = SimHost.FastOptions();
        options.ReplicaId = "replica-a";
        await using var sim = await SimHost.StartAsync(options);

        using var response = await sim.ChatAsync(s_chat);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("replica-a", response.Headers.GetValues("X-Shoal-Replica").Single());
        var json = await SimHost.JsonAsync(response);
        Assert.StartsWith("chatcmpl-", json.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("chat.completion", json.GetProperty("object").GetString());
        Assert.Equal("shoal-sim", json.GetProperty("model").GetString());
        Assert.Equal("replica-a", json.GetProperty("system_fingerprint").GetString());
        Assert.True(json.GetProperty("created").GetInt64() > 1_600_000_000);
        var choice = json.GetProperty("choices").EnumerateArray().Single();
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        var content = choice.GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal(5, content.Split(' ').Length);
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var usage = json.GetProperty("usage");
        // "Hello there" is 11 characters: 3 tokens, plus 4 for the chat template around the message.
        Assert.Equal(7, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(5, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(12, usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task Text_is_deterministic_for_a_seed_across_servers()
    {
        await using var a = await SimHost.StartAsync();
        await using var b = await SimHost.StartAsync();
        var otherOptions = SimHost.FastOptions();
        otherOptions.Seed = 7;
        await using var other = await SimHost.StartAsync(otherOptions);

        static async Task<string> ContentAsync(SimHost sim, object body)
        {
            using var response = await sim.ChatAsync(body);
            response.EnsureSuccessStatusCode();
            var json = await SimHost.JsonAsync(response);
            return json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        }

        var first = await ContentAsync(a, s_chat);
        Assert.Equal(first, await ContentAsync(a, s_chat));
        Assert.Equal(first, await ContentAsync(b, s_chat));
        Assert.NotEqual(first, await ContentAsync(other, s_chat));
        var differentPrompt = new { messages = new[] { new { role = "user", content = "Something else entirely" } }, max_tokens = 5 };
        Assert.NotEqual(first, await ContentAsync(a, differentPrompt));
    }

    [Fact]
    public async Task Text_completion_has_the_openai_shape()
    {
        await using var sim = await SimHost.StartAsync();
        using var response = await sim.Client.PostAsJsonAsync("/v1/completions", new { model = "shoal-sim", prompt = "Once upon a time", max_tokens = 3 });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await SimHost.JsonAsync(response);
        Assert.StartsWith("cmpl-", json.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("text_completion", json.GetProperty("object").GetString());
        Assert.Equal("shoal-sim", json.GetProperty("system_fingerprint").GetString());
        var choice = json.GetProperty("choices")[0];
        Assert.Equal(3, choice.GetProperty("text").GetString()!.Split(' ').Length);
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(4, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(3, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(7, json.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task Max_tokens_is_capped_and_defaults_apply()
    {
        var options = SimHost.FastOptions();
        options.DecodePerToken = TimeSpan.Zero;
        options.DefaultMaxTokens = 9;
        await using var sim = await SimHost.StartAsync(options);

        using var capped = await sim.Client.PostAsJsonAsync("/v1/completions", new { prompt = "x", max_tokens = 100_000 });
        Assert.Equal(SimOptions.MaxTokensCap, (await SimHost.JsonAsync(capped)).GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        using var defaulted = await sim.Client.PostAsJsonAsync("/v1/completions", new { prompt = "x" });
        Assert.Equal(9, (await SimHost.JsonAsync(defaulted)).GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    private static async Task<List<string>> ReadEventsAsync(HttpResponseMessage response)
    {
        var events = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                events.Add(line["data: ".Length..]);
            }
            else
            {
                Assert.Equal("", line);
            }
        }
        return events;
    }

    [Fact]
    public async Task Streaming_chat_sends_a_chunk_per_token_usage_and_done()
    {
        await using var sim = await SimHost.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new
            {
                messages = new[] { new { role = "user", content = "Hello there" } },
                max_tokens = 5,
                stream = true,
                stream_options = new { include_usage = true },
            }),
        };
        using var response = await sim.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await ReadEventsAsync(response);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
        // role chunk, 5 token chunks, finish chunk, usage chunk
        Assert.Equal(8, chunks.Count);
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        var text = string.Concat(chunks.Skip(1).Take(5).Select(c => c.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString()));
        Assert.Equal("length", chunks[6].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(JsonValueKind.Null, chunks[0].GetProperty("usage").ValueKind);
        Assert.Empty(chunks[7].GetProperty("choices").EnumerateArray());
        Assert.Equal(5, chunks[7].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(7, chunks[7].GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // The stream carries the same text as the plain answer to the same request.
        using var plain = await sim.ChatAsync(s_chat);
        var plainText = (await SimHost.JsonAsync(plain)).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
        Assert.Equal(plainText, text);
    }

    [Fact]
    public async Task Streaming_completion_without_include_usage_has_no_usage()
    {
        await using var sim = await SimHost.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { prompt = "Once upon a time", max_tokens = 4, stream = true }),
        };
        using var response = await sim.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);

        var events = await ReadEventsAsync(response);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
        Assert.Equal(5, chunks.Count);
        Assert.All(chunks, c => Assert.False(c.TryGetProperty("usage", out _)));
        Assert.All(chunks, c => Assert.Equal("text_completion", c.GetProperty("object").GetString()));
        Assert.Equal(4, chunks.Take(4).Count(c => c.GetProperty("choices")[0].GetProperty("text").GetString()!.Length > 0));
        Assert.Equal("length", chunks[4].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Models_lists_the_served_model()
    {
        var options = SimHost.FastOptions();
        options.Model = "llama-sim";
        await using var sim = await SimHost.StartAsync(options);
        var json = await sim.Client.GetFromJsonAsync<JsonElement>("/v1/models");
        Assert.Equal("list", json.GetProperty("object").GetString());
        var model = json.GetProperty("data").EnumerateArray().Single();
        Assert.Equal("llama-sim", model.GetProperty("id").GetString());
        Assert.Equal("model", model.GetProperty("object").GetString());
    }

    [Fact]
    public async Task Health_is_503_until_the_startup_delay_has_passed()
    {
        var time = new FakeTimeProvider();
        var options = SimHost.FastOptions();
        options.StartupDelay = TimeSpan.FromSeconds(30);
        options.DecodePerToken = TimeSpan.Zero;
        await using var sim = await SimHost.StartAsync(options, time);

        using (var loading = await sim.Client.GetAsync("/health"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, loading.StatusCode);
        }
        using (var early = await sim.ChatAsync(s_chat))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, early.StatusCode);
            Assert.Equal("model_loading", (await SimHost.JsonAsync(early)).GetProperty("error").GetProperty("code").GetString());
        }

        time.Advance(TimeSpan.FromSeconds(29));
        using (var stillLoading = await sim.Client.GetAsync("/health"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, stillLoading.StatusCode);
        }

        time.Advance(TimeSpan.FromSeconds(1));
        using (var ready = await sim.Client.GetAsync("/health"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        }
        using var answered = await sim.ChatAsync(s_chat);
        Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
    }

    [Fact]
    public async Task Warm_up_requests_pass_the_loading_gate_only_with_the_secret_inject_no_fault_and_leave_no_metrics()
    {
        var time = new FakeTimeProvider();
        var options = SimHost.FastOptions();
        options.StartupDelay = TimeSpan.FromSeconds(30);
        options.DecodePerToken = TimeSpan.Zero;
        options.ErrorRate = 1;
        await using var sim = await SimHost.StartAsync(options, time);
        sim.Engine.BeginWarmUp("secret");

        async Task<HttpStatusCode> SendAsync(string? token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(s_chat) };
            if (token is not null) request.Headers.Add(SimServer.WarmUpHeader, token);
            using var response = await sim.Client.SendAsync(request);
            return response.StatusCode;
        }

        // Answered while the model loads, and not with the injected failure every other request gets.
        Assert.Equal(HttpStatusCode.OK, await SendAsync("secret"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, await SendAsync("guess"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, await SendAsync(null));
        Assert.Equal(1, sim.Engine.Metrics.RequestsSucceeded);

        sim.Engine.EndWarmUp();
        Assert.Equal(0, sim.Engine.Metrics.RequestsSucceeded);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, await SendAsync("secret"));
        time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.InternalServerError, await SendAsync(null));
    }

    [Fact]
    public async Task Metrics_show_running_and_waiting_under_load()
    {
        var time = new FakeTimeProvider();
        var options = SimHost.FastOptions();
        options.BatchSlots = 1;
        options.DecodePerToken = TimeSpan.FromMilliseconds(10);
        await using var sim = await SimHost.StartAsync(options, time);
        const string Running = "vllm:num_requests_running{model_name=\"shoal-sim\"}";
        const string Waiting = "vllm:num_requests_waiting{model_name=\"shoal-sim\"}";

        var idle = await sim.Client.GetStringAsync("/metrics");
        Assert.Equal(0, SimHost.Metric(idle, Running));
        Assert.Equal(0, SimHost.Metric(idle, Waiting));

        var body = new { messages = new[] { new { role = "user", content = "Hello there" } }, max_tokens = 2 };
        var first = sim.ChatAsync(body);
        var second = sim.ChatAsync(body);

        var loaded = await Eventually.GetAsync(
            () => sim.Client.GetStringAsync("/metrics"),
            m => SimHost.Metric(m, Running) == 1 && SimHost.Metric(m, Waiting) == 1,
            what: "one running and one waiting");
        Assert.True(SimHost.Metric(loaded, "vllm:gpu_cache_usage_perc{model_name=\"shoal-sim\"}") > 0);
        using var response = await sim.Client.GetAsync("/metrics");
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);

        while (!(first.IsCompleted && second.IsCompleted))
        {
            time.Advance(TimeSpan.FromMilliseconds(10));
            await Task.WhenAny(Task.WhenAll(first, second), Task.Delay(20));
        }
        (await first).EnsureSuccessStatusCode();
        (await second).EnsureSuccessStatusCode();

        var done = await sim.Client.GetStringAsync("/metrics");
        Assert.Equal(0, SimHost.Metric(done, Running));
        Assert.Equal(0, SimHost.Metric(done, Waiting));
        Assert.Equal(0, SimHost.Metric(done, "vllm:gpu_cache_usage_perc{model_name=\"shoal-sim\"}"));
        Assert.Equal(14, SimHost.Metric(done, "vllm:prompt_tokens_total{model_name=\"shoal-sim\"}"));
        Assert.Equal(4, SimHost.Metric(done, "vllm:generation_tokens_total{model_name=\"shoal-sim\"}"));
        Assert.Equal(2, SimHost.Metric(done, "vllm:time_to_first_token_seconds_count{model_name=\"shoal-sim\"}"));
        Assert.Equal(2, SimHost.Metric(done, "vllm:e2e_request_latency_seconds_count{model_name=\"shoal-sim\"}"));
        Assert.Equal(2, SimHost.Metric(done, "vllm:e2e_request_latency_seconds_bucket{model_name=\"shoal-sim\",le=\"+Inf\"}"));
        Assert.True(SimHost.Metric(done, "vllm:time_to_first_token_seconds_sum{model_name=\"shoal-sim\"}") >= 0.010 + 0.030 - 1e-9);
        Assert.Contains("# TYPE vllm:time_to_first_token_seconds histogram", done, StringComparison.Ordinal);
        Assert.Contains("# TYPE vllm:num_requests_running gauge", done, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_full_queue_is_refused_with_429()
    {
        var time = new FakeTimeProvider();
        var options = SimHost.FastOptions();
        options.BatchSlots = 1;
        options.MaxQueue = 0;
        options.DecodePerToken = TimeSpan.FromMilliseconds(10);
        await using var sim = await SimHost.StartAsync(options, time);

        var first = sim.ChatAsync(s_chat);
        await Eventually.GetAsync(() => Task.FromResult(sim.Engine.Scheduler.Running), n => n == 1, what: "first request running");
        using var refused = await sim.ChatAsync(s_chat);

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("queue_full", (await SimHost.JsonAsync(refused)).GetProperty("error").GetProperty("code").GetString());
        time.Advance(TimeSpan.FromSeconds(1));
        (await first).EnsureSuccessStatusCode();
    }

    [Fact]
    public async Task A_client_that_goes_away_frees_its_slot_at_once()
    {
        var time = new FakeTimeProvider();
        var options = SimHost.FastOptions();
        options.BatchSlots = 1;
        options.DecodePerToken = TimeSpan.FromSeconds(1);
        await using var sim = await SimHost.StartAsync(options, time);

        using var cts = new CancellationTokenSource();
        var abandoned = sim.ChatAsync(s_chat, cts.Token);
        await Eventually.GetAsync(() => Task.FromResult(sim.Engine.Scheduler.Running), n => n == 1, what: "request running");

        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);
        await Eventually.GetAsync(() => Task.FromResult(sim.Engine.Scheduler.Running), n => n == 0, what: "slot freed without the clock moving");
    }

    [Fact]
    public async Task Injected_errors_follow_the_rate_and_repeat_with_the_seed()
    {
        static async Task<List<HttpStatusCode>> StatusesAsync()
        {
            var options = SimHost.FastOptions();
            options.DecodePerToken = TimeSpan.Zero;
            options.ErrorRate = 0.3;
            options.Seed = 5;
            await using var sim = await SimHost.StartAsync(options);
            var statuses = new List<HttpStatusCode>();
            for (var i = 0; i < 100; i++)
            {
                using var response = await sim.Client.PostAsJsonAsync("/v1/completions", new { prompt = "hi", max_tokens = 1 });
                statuses.Add(response.StatusCode);
                if (response.StatusCode == HttpStatusCode.InternalServerError)
                {
                    var error = (await SimHost.JsonAsync(response)).GetProperty("error");
                    Assert.Equal("server_error", error.GetProperty("type").GetString());
                }
            }
            return statuses;
        }

        var first = await StatusesAsync();
        Assert.InRange(first.Count(s => s == HttpStatusCode.InternalServerError), 15, 45);
        Assert.All(first, s => Assert.Contains(s, new[] { HttpStatusCode.OK, HttpStatusCode.InternalServerError }));
        Assert.Equal(first, await StatusesAsync());
    }

    [Fact]
    public async Task Hung_requests_never_answer_until_the_client_gives_up()
    {
        var options = SimHost.FastOptions();
        options.HangRate = 1;
        await using var sim = await SimHost.StartAsync(options);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sim.ChatAsync(s_chat, cts.Token));
        Assert.Equal(0, sim.Engine.Scheduler.Running);
    }

    [Fact]
    public async Task Crash_after_n_requests_calls_exit_with_1_once()
    {
        var exits = new List<int>();
        var exited = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var options = SimHost.FastOptions();
        options.CrashAfterRequests = 2;
        await using var sim = await SimHost.StartAsync(options, exit: code =>
        {
            lock (exits)
            {
                exits.Add(code);
            }
            exited.TrySetResult(code);
        });

        using (var one = await sim.ChatAsync(s_chat))
        {
            one.EnsureSuccessStatusCode();
        }
        Assert.Equal(1, sim.Engine.Faults.Requests);
        Assert.False(exited.Task.IsCompleted);

        using (var two = await sim.ChatAsync(s_chat))
        {
            two.EnsureSuccessStatusCode();
        }
        Assert.Equal(1, await exited.Task.WaitAsync(TimeSpan.FromSeconds(10)));

        using (var three = await sim.ChatAsync(s_chat))
        {
            three.EnsureSuccessStatusCode();
        }
        lock (exits)
        {
            Assert.Equal([1], exits);
        }
    }

    [Theory]
    [InlineData("/v1/chat/completions", "not json", "invalid_json")]
    [InlineData("/v1/chat/completions", "", "invalid_json")]
    [InlineData("/v1/chat/completions", "[]", "invalid_request")]
    [InlineData("/v1/chat/completions", "{}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"messages\":[]}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"messages\":\"hi\"}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"messages\":[{\"content\":\"hi\"}]}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":0}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":\"many\"}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":\"yes\"}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", "invalid_request")]
    [InlineData("/v1/chat/completions", "{\"model\":7,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "invalid_request")]
    [InlineData("/v1/completions", "{}", "invalid_request")]
    [InlineData("/v1/completions", "{\"prompt\":\"\"}", "invalid_request")]
    [InlineData("/v1/completions", "{\"prompt\":{\"text\":\"hi\"}}", "invalid_request")]
    [InlineData("/v1/completions", "{\"prompt\":[\"a\",\"b\"]}", "invalid_request")]
    public async Task Bad_input_is_a_400_with_an_openai_error(string path, string body, string code)
    {
        await using var sim = await SimHost.StartAsync();
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await sim.Client.PostAsync(path, content);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = (await SimHost.JsonAsync(response)).GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
    }

    [Fact]
    public async Task A_body_over_one_mebibyte_is_a_413()
    {
        await using var sim = await SimHost.StartAsync();
        var big = "{\"prompt\":\"" + new string('a', SimOptions.MaxBodyBytes) + "\"}";
        using var content = new StringContent(big, Encoding.UTF8, "application/json");
        using var response = await sim.Client.PostAsync("/v1/completions", content);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("body_too_large", (await SimHost.JsonAsync(response)).GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_chunked_body_over_one_mebibyte_is_a_413()
    {
        await using var sim = await SimHost.StartAsync();
        var big = Encoding.UTF8.GetBytes("{\"prompt\":\"" + new string('a', SimOptions.MaxBodyBytes) + "\"}");
        using var content = new StreamContent(new MemoryStream(big));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await sim.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }
}
