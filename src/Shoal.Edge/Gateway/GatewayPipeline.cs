using System.Globalization;
using System.Text.Json;
using Shoal.Contracts;

namespace Shoal.Edge.Gateway;

/// <summary>
/// The gateway on the edge's request path (issue 16), called by <see cref="EdgeProxy"/> at fixed
/// points: <see cref="Begin"/> when the request's cluster and key are known; <see cref="InspectBody"/>
/// when its body has been read (token figures, and the stream's usage request); <see cref="AdmitAsync"/>
/// before it goes out (rate limits, budgets: <see cref="IGatewayAdmission"/> stages);
/// <see cref="OnResponse"/> when a replica's answer is passed on (headers, the response's usage tap);
/// <see cref="Complete"/> once when it ends (settling reservations, the ledger row).
/// </summary>
public sealed class GatewayPipeline
{
    private readonly IGatewayAdmission[] _stages;
    // Null when no ledger is registered: then no usage record is built per request.
    private readonly IUsageLedger? _ledger;
    private readonly TimeProvider _time;
    private readonly string? _edgeName;
    private readonly GatewayMetrics _metrics;

    public GatewayPipeline(IEnumerable<IGatewayAdmission> stages, IEnumerable<IUsageLedger> ledgers, EdgeOptions options, TimeProvider time, GatewayMetrics metrics)
    {
        _metrics = metrics;
        _stages = [.. stages];
        var ledger = ledgers.LastOrDefault();
        _ledger = ledger is null or NullUsageLedger ? null : ledger;
        _time = time;
        _edgeName = string.IsNullOrWhiteSpace(options.Name) ? Environment.MachineName : options.Name;
    }

    /// <summary>Starts the gateway's record of a request to <paramref name="route"/> (forwarded as <paramref name="forwardPath"/>).</summary>
    public GatewayCall Begin(HttpContext context, ClusterRoute route, EndpointKeyGrant? grant, PathString forwardPath, long arrived)
    {
        var arrivedAt = _time.GetUtcNow();
        var call = new GatewayCall
        {
            RequestId = RequestIds.New(arrivedAt),
            Arrived = arrived,
            ArrivedAt = arrivedAt,
            Grant = grant,
            Project = route.Project,
            Route = route,
            Operation = OpenAiPaths.OperationOf(context.Request.Method, forwardPath),
        };
        context.Response.Headers[GatewayHeaders.RequestId] = call.RequestId;
        return call;
    }

    /// <summary>True when the body must be read and inspected before admission (a stage wants token figures).</summary>
    public bool NeedsBody(GatewayCall call)
    {
        if (call.Operation is OpenAiOperation.None or OpenAiOperation.Models) return false;
        foreach (var stage in _stages)
        {
            if (!stage.Skips(call) && stage.NeedsBody(call)) return true;
        }
        return false;
    }

    /// <summary>
    /// Reads the token figures of an OpenAI request body into the call; may replace the body (to ask a
    /// stream for its usage). Called once, when the body has been read whole (bodies over the replay
    /// buffer stream through uninspected).
    /// </summary>
    internal void InspectBody(GatewayCall call, ref BufferedBody? body)
    {
        if (call.Inspected || call.Operation is OpenAiOperation.None or OpenAiOperation.Models) return;
        if (body is null) return;
        call.Inspected = true;
        var figures = OpenAiRequestInspector.Inspect(body.Span, call.Operation);
        call.Model = figures.Model;
        call.Stream = figures.Stream;
        call.ClientAskedUsage = figures.ClientAskedUsage;
        call.PromptEstimate = figures.PromptEstimate;
        call.MaxTokens = figures.MaxTokens;
        if (figures.UsageSplice.IsNone) return;
        // A stream whose client did not ask for usage: the gateway asks (and strips that chunk from the answer).
        var rewritten = OpenAiRequestInspector.Apply(body.Span, figures.UsageSplice);
        body.Dispose();
        body = rewritten;
    }

    /// <summary>Runs the admission stages; false when one refused (the refusal is written, earlier stages' reservations released).</summary>
    public async ValueTask<bool> AdmitAsync(HttpContext context, GatewayCall call)
    {
        for (var i = 0; i < _stages.Length; i++)
        {
            var stage = _stages[i];
            if (stage.Skips(call)) continue;
            var result = await stage.AdmitAsync(call, context.RequestAborted);
            if (result.Admitted)
            {
                call.AdmittedStages |= 1 << i;
                continue;
            }
            _metrics.CountRefused(call, stage.Name, result.Status);
            // Headers of every stage that looked at the call, the refusing one included.
            stage.WriteHeaders(call, context.Response.Headers);
            ReleaseAdmitted(call, context.Response.Headers);
            if (result.RetryAfter is { } after) context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(after.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            await WriteOpenAiErrorAsync(context, result.Status, result.Type ?? "requests", result.Code, result.Message ?? "refused by the gateway");
            return false;
        }
        return true;
    }

    /// <summary>A replica's answer is about to be passed on: the stages' headers, and the usage tap on its body.</summary>
    public void OnResponse(HttpContext context, GatewayCall call, HttpResponseMessage response)
    {
        for (var i = 0; i < _stages.Length; i++)
        {
            if ((call.AdmittedStages & (1 << i)) != 0) _stages[i].WriteHeaders(call, context.Response.Headers);
        }
        if (call.Operation is OpenAiOperation.None or OpenAiOperation.Models || response.StatusCode is < System.Net.HttpStatusCode.OK or >= System.Net.HttpStatusCode.Ambiguous
            || response.Content.Headers.ContentEncoding.Count > 0)
        {
            return;
        }
        var mediaType = response.Content.Headers.ContentType?.MediaType;
        var sse = string.Equals(mediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase);
        if (!sse && !string.Equals(mediaType, "application/json", StringComparison.OrdinalIgnoreCase)) return;
        // The usage chunk the gateway asked for is left out; not from a body of declared length (it would no longer match).
        var strip = sse && call.Inspected && call.Stream && !call.ClientAskedUsage && context.Response.ContentLength is null;
        var tap = new OpenAiUsageTap(context.Response.Body, call, sse, strip);
        call.Tap = tap;
        context.Response.Body = tap;
        context.Response.RegisterForDispose(tap);
    }

    /// <summary>The replica's answer was passed on whole: the usage tap lets out what it held back.</summary>
    public ValueTask OnResponseEndAsync(GatewayCall call, CancellationToken ct) =>
        call.Tap is { } tap ? tap.FinishAsync(ct) : ValueTask.CompletedTask;

    /// <summary>The request ended (answered, refused, failed or abandoned): settles the stages and writes the ledger row. Once per call.</summary>
    public void Complete(HttpContext context, GatewayCall call)
    {
        if (Interlocked.Exchange(ref call.Completed, 1) != 0) return;
        var now = _time.GetTimestamp();
        // Only a request that went to a replica costs anything; its time there starts with its first attempt.
        if (call.Route.Price is not null && call.Sent != 0) call.CostUsd = Cost.Of(call, _time.GetElapsedTime(call.Sent, now));
        for (var i = 0; i < _stages.Length; i++)
        {
            if ((call.AdmittedStages & (1 << i)) != 0) _stages[i].Complete(call);
        }
        call.AdmittedStages = 0;
        var promptTokens = Cost.PromptTokens(call);
        _metrics.CountCompleted(call, promptTokens, call.CompletionTokens);
        _ledger?.Record(new UsageRecord
        {
            RequestId = call.RequestId,
            At = call.ArrivedAt,
            KeyId = call.KeyId,
            Project = call.Project,
            Cluster = call.Cluster,
            Model = call.Model,
            ReplicaId = call.ReplicaId,
            NodeId = call.NodeId,
            PromptTokens = promptTokens,
            CompletionTokens = call.CompletionTokens,
            TimeToFirstTokenMs = call.FirstByte == 0 ? null : Milliseconds(_time.GetElapsedTime(call.Arrived, call.FirstByte)),
            DurationMs = Milliseconds(_time.GetElapsedTime(call.Arrived, now)),
            Status = context.Response.StatusCode,
            Attempts = call.Attempts,
            Streamed = call.Stream,
            Cut = call.Cut,
            CostUsd = call.CostUsd,
            Edge = _edgeName,
        });
    }

    /// <summary>
    /// Milliseconds to the microsecond (rounded up, so a request that took any time shows some), as the
    /// store keeps them: a short number is faster to write into the spool than a double's every digit.
    /// </summary>
    internal static double Milliseconds(TimeSpan elapsed) => elapsed <= TimeSpan.Zero ? 0 : Math.Ceiling(elapsed.TotalMicroseconds) / 1000;

    private void ReleaseAdmitted(GatewayCall call, IHeaderDictionary headers)
    {
        for (var i = 0; i < _stages.Length; i++)
        {
            if ((call.AdmittedStages & (1 << i)) == 0) continue;
            _stages[i].WriteHeaders(call, headers);
            _stages[i].Complete(call);
        }
        call.AdmittedStages = 0;
    }

    /// <summary>Writes OpenAI's error body (<c>{"error": {...}}</c>) with <paramref name="status"/>.</summary>
    public static Task WriteOpenAiErrorAsync(HttpContext context, int status, string type, string? code, string message, string? param = null)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body,
            new OpenAiErrorResponse(new OpenAiError { Message = message, Type = type, Code = code, Param = param }),
            ShoalJsonContext.Default.OpenAiErrorResponse, context.RequestAborted);
    }
}

/// <summary>The OpenAI paths the gateway understands.</summary>
public static class OpenAiPaths
{
    public const string ChatCompletions = "/v1/chat/completions";
    public const string Completions = "/v1/completions";
    public const string Embeddings = "/v1/embeddings";
    public const string Models = "/v1/models";

    public static OpenAiOperation OperationOf(string method, PathString path)
    {
        if (HttpMethods.IsPost(method))
        {
            if (path.Equals(ChatCompletions, StringComparison.Ordinal)) return OpenAiOperation.ChatCompletions;
            if (path.Equals(Completions, StringComparison.Ordinal)) return OpenAiOperation.Completions;
            if (path.Equals(Embeddings, StringComparison.Ordinal)) return OpenAiOperation.Embeddings;
        }
        else if (HttpMethods.IsGet(method) && path.Equals(Models, StringComparison.Ordinal))
        {
            return OpenAiOperation.Models;
        }
        return OpenAiOperation.None;
    }
}
