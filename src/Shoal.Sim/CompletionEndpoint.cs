using System.Text;
using System.Text.Json;

namespace Shoal.Sim;

/// <summary>
/// <c>POST /v1/chat/completions</c> and <c>/v1/completions</c>: validation, failure injection, then a
/// generation on the <see cref="SimEngine"/> answered as one JSON body or as server-sent events.
/// </summary>
internal sealed partial class CompletionEndpoint
{
    private readonly SimEngine _engine;
    private readonly Action<int> _exit;
    private readonly ILogger _logger;

    public CompletionEndpoint(SimEngine engine, Action<int> exit, ILogger logger)
    {
        _engine = engine;
        _exit = exit;
        _logger = logger;
    }

    public async Task HandleAsync(HttpContext ctx, CompletionKind kind)
    {
        var ct = ctx.RequestAborted;
        var options = _engine.Options;
        // The simulator's own warm-up requests run the whole path during the model load, and inject no fault.
        var warmUp = _engine.WarmUpToken is not null && _engine.IsWarmUp(ctx.Request.Headers[SimServer.WarmUpHeader]);
        if (!_engine.Startup.IsReady && !warmUp)
        {
            await OpenAiJson.WriteErrorAsync(ctx, StatusCodes.Status503ServiceUnavailable, "the model is still loading", "service_unavailable", "model_loading");
            return;
        }

        CompletionRequest request;
        try
        {
            if (ctx.Request.ContentLength is > SimOptions.MaxBodyBytes and var length)
            {
                // Read the body (and drop it) before answering, as servers with a lingering close do: an answer
                // sent while the client still sends reaches it only by luck (the close can reset the connection
                // and take the answer with it). Bounded: a body past 64 MiB is not read.
                if (length <= 64L * 1024 * 1024 && ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
                {
                    limit.MaxRequestBodySize = length;
                    await ctx.Request.Body.CopyToAsync(Stream.Null, ct);
                }
                await WriteTooLargeAsync(ctx);
                return;
            }
            using var doc = await JsonDocument.ParseAsync(ctx.Request.Body, default, ct);
            request = CompletionRequest.Parse(doc.RootElement, kind, options.DefaultMaxTokens);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await WriteTooLargeAsync(ctx);
            return;
        }
        catch (JsonException e)
        {
            await OpenAiJson.WriteErrorAsync(ctx, StatusCodes.Status400BadRequest, "the request body is not valid JSON: " + e.Message, "invalid_request_error", "invalid_json");
            return;
        }
        catch (FormatException e)
        {
            await OpenAiJson.WriteErrorAsync(ctx, StatusCodes.Status400BadRequest, e.Message, "invalid_request_error", "invalid_request");
            return;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException && ct.IsCancellationRequested)
        {
            return;
        }

        if (!warmUp && _engine.Faults.CountRequest())
        {
            // Crash once this request has been answered, off the request thread: a graceful host
            // shutdown would otherwise wait for the very request that asked for it.
            var count = options.CrashAfterRequests ?? 0;
            ctx.Response.OnCompleted(() =>
            {
                LogCrash(_logger, count);
                _ = Task.Run(() => _exit(1), CancellationToken.None);
                return Task.CompletedTask;
            });
        }

        switch (warmUp ? Fault.None : _engine.Faults.Next())
        {
            case Fault.Error:
                await OpenAiJson.WriteErrorAsync(ctx, StatusCodes.Status500InternalServerError, "injected failure (SIM_ERROR_RATE)", "server_error", "injected_error");
                return;
            case Fault.Hang:
                try
                {
                    await Task.Delay(Timeout.Infinite, ct);
                }
                catch (OperationCanceledException)
                {
                }
                return;
        }

        var generation = new GenerationRequest(request.PromptTokens, request.MaxTokens, TokenText.TextSeed(options.Seed, request.Seed, request.Prompt));
        var answer = new Answer(ctx, request, options, _engine.Time);
        try
        {
            var admitted = await _engine.GenerateAsync(generation, answer.OnTokenAsync, ct);
            if (!admitted)
            {
                ctx.Response.Headers.RetryAfter = "1";
                await OpenAiJson.WriteErrorAsync(ctx, StatusCodes.Status429TooManyRequests,
                    $"the request queue is full ({options.MaxQueue} waiting)", "server_overloaded", "queue_full");
                return;
            }
            await answer.FinishAsync(ct);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException && ct.IsCancellationRequested)
        {
            // The client went away; the engine has already given its slot back.
        }
    }

    private static Task WriteTooLargeAsync(HttpContext ctx) =>
        OpenAiJson.WriteErrorAsync(ctx, StatusCodes.Status413PayloadTooLarge,
            $"the request body is larger than {SimOptions.MaxBodyBytes} bytes", "invalid_request_error", "body_too_large");

    /// <summary>Collects or streams the tokens of one answer.</summary>
    private sealed class Answer
    {
        private readonly HttpContext _ctx;
        private readonly CompletionRequest _request;
        private readonly SimOptions _options;
        private readonly string _id;
        private readonly long _created;
        private readonly StringBuilder _text = new();
        private Utf8JsonWriter? _json;
        private int _tokens;

        public Answer(HttpContext ctx, CompletionRequest request, SimOptions options, TimeProvider time)
        {
            _ctx = ctx;
            _request = request;
            _options = options;
            _id = (request.Kind == CompletionKind.Chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            _created = time.GetUtcNow().ToUnixTimeSeconds();
        }

        private bool IsChat => _request.Kind == CompletionKind.Chat;

        private string ChunkKind => IsChat ? "chat.completion.chunk" : "text_completion";

        public async ValueTask OnTokenAsync(string token, CancellationToken ct)
        {
            _tokens++;
            if (!_request.Stream)
            {
                _text.Append(token);
                return;
            }
            var pipe = _ctx.Response.BodyWriter;
            if (_json is null)
            {
                // Headers go out with the first token, not before: a request that never got a slot can
                // still be refused with a status code.
                _ctx.Response.StatusCode = StatusCodes.Status200OK;
                _ctx.Response.ContentType = "text/event-stream";
                _ctx.Response.Headers.CacheControl = "no-cache";
                _json = new Utf8JsonWriter(pipe);
                if (IsChat)
                {
                    WriteChunk(pipe, role: true, content: "", finishReason: null);
                }
            }
            WriteChunk(pipe, role: false, content: token, finishReason: null);
            await pipe.FlushAsync(ct);
        }

        public async Task FinishAsync(CancellationToken ct)
        {
            if (_request.Stream)
            {
                var pipe = _ctx.Response.BodyWriter;
                _json ??= new Utf8JsonWriter(pipe);
                WriteChunk(pipe, role: false, content: IsChat ? null : "", finishReason: "length");
                if (_request.IncludeUsage)
                {
                    OpenAiJson.BeginEvent(pipe, _json);
                    _json.WriteStartObject();
                    OpenAiJson.WriteHeader(_json, _id, ChunkKind, _created, _options);
                    _json.WriteStartArray("choices");
                    _json.WriteEndArray();
                    OpenAiJson.WriteUsage(_json, _request.PromptTokens, _tokens);
                    _json.WriteEndObject();
                    OpenAiJson.EndEvent(pipe, _json);
                }
                OpenAiJson.WriteDone(pipe);
                await pipe.FlushAsync(ct);
                await _json.DisposeAsync();
                return;
            }

            _ctx.Response.StatusCode = StatusCodes.Status200OK;
            _ctx.Response.ContentType = OpenAiJson.JsonContentType;
            await using var json = new Utf8JsonWriter(_ctx.Response.BodyWriter);
            json.WriteStartObject();
            OpenAiJson.WriteHeader(json, _id, IsChat ? "chat.completion" : "text_completion", _created, _options);
            json.WriteStartArray("choices");
            json.WriteStartObject();
            json.WriteNumber("index", 0);
            if (IsChat)
            {
                json.WriteStartObject("message");
                json.WriteString("role", "assistant");
                json.WriteString("content", _text.ToString());
                json.WriteEndObject();
            }
            else
            {
                json.WriteString("text", _text.ToString());
            }
            json.WriteNull("logprobs");
            json.WriteString("finish_reason", "length");
            json.WriteEndObject();
            json.WriteEndArray();
            OpenAiJson.WriteUsage(json, _request.PromptTokens, _tokens);
            json.WriteEndObject();
            await json.FlushAsync(ct);
            await _ctx.Response.BodyWriter.FlushAsync(ct);
        }

        private void WriteChunk(System.IO.Pipelines.PipeWriter pipe, bool role, string? content, string? finishReason)
        {
            var json = _json!;
            OpenAiJson.BeginEvent(pipe, json);
            json.WriteStartObject();
            OpenAiJson.WriteHeader(json, _id, ChunkKind, _created, _options);
            json.WriteStartArray("choices");
            json.WriteStartObject();
            json.WriteNumber("index", 0);
            if (IsChat)
            {
                json.WriteStartObject("delta");
                if (role)
                {
                    json.WriteString("role", "assistant");
                }
                if (content is not null)
                {
                    json.WriteString("content", content);
                }
                json.WriteEndObject();
            }
            else
            {
                json.WriteString("text", content ?? "");
            }
            json.WriteNull("logprobs");
            if (finishReason is null)
            {
                json.WriteNull("finish_reason");
            }
            else
            {
                json.WriteString("finish_reason", finishReason);
            }
            json.WriteEndObject();
            json.WriteEndArray();
            if (_request.IncludeUsage)
            {
                json.WriteNull("usage");
            }
            json.WriteEndObject();
            OpenAiJson.EndEvent(pipe, json);
        }
    }
}
