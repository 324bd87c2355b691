using System.Diagnostics;
using System.Globalization;
using System.Text;
using Shoal.Contracts;
using Shoal.Edge.Gateway;

namespace Shoal.Bench;

/// <summary>
/// What the gateway's token accounting adds to a request on the edge's path (issue 16), side by
/// side in one run: reading a chat body's figures (<c>OpenAiRequestInspector</c>), the same plus
/// the stream's usage rewrite, and an answer written through the usage tap against the same answer
/// written without it (a non-streamed JSON answer, and a 64-token SSE stream whose usage chunk is
/// stripped). Rounds alternate the variants; figures are µs per request (median and p99 of batches).
/// </summary>
internal static class GatewayTokensBench
{
    private const int Batch = 200;

    private static readonly byte[] s_chatBody = Encoding.UTF8.GetBytes(
        """{"model":"llama-3.1-8b","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about the sea, and explain its meter in two sentences."}],"max_tokens":64,"temperature":0.7}""");

    private static readonly byte[] s_streamBody = Encoding.UTF8.GetBytes(
        """{"model":"llama-3.1-8b","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about the sea, and explain its meter in two sentences."}],"max_tokens":64,"temperature":0.7}""");

    private static readonly byte[] s_jsonAnswer = Encoding.UTF8.GetBytes(
        """{"id":"chatcmpl-0123456789abcdef","object":"chat.completion","created":1733390000,"model":"llama-3.1-8b","system_fingerprint":"fp_shoal","choices":[{"index":0,"message":{"role":"assistant","content":""" + "\"" + new string('w', 300) + "\"" + """},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":38,"completion_tokens":64,"total_tokens":102}}""");

    // One write per event, as a replica flushes them.
    private static readonly byte[][] s_sseAnswer = BuildStream();

    private static byte[][] BuildStream()
    {
        var events = new List<byte[]>();
        const string head = """data: {"id":"chatcmpl-0123456789abcdef","object":"chat.completion.chunk","created":1733390000,"model":"llama-3.1-8b","choices":[{"index":0,"delta":""";
        events.Add(Encoding.UTF8.GetBytes(head + """{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}""" + "\n\n"));
        for (var i = 0; i < 64; i++) events.Add(Encoding.UTF8.GetBytes(head + """{"content":" word"},"logprobs":null,"finish_reason":null}],"usage":null}""" + "\n\n"));
        events.Add(Encoding.UTF8.GetBytes(head + """{},"logprobs":null,"finish_reason":"length"}],"usage":null}""" + "\n\n"));
        events.Add(Encoding.UTF8.GetBytes("""data: {"id":"chatcmpl-0123456789abcdef","object":"chat.completion.chunk","created":1733390000,"model":"llama-3.1-8b","choices":[],"usage":{"prompt_tokens":38,"completion_tokens":64,"total_tokens":102}}""" + "\n\n"));
        events.Add("data: [DONE]\n\n"u8.ToArray());
        return [.. events];
    }

    public static async Task RunAsync(int rounds)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"## Gateway: token accounting per request ({rounds} alternated rounds of {Batch * 50:N0} requests per variant)"));
        (string Name, Func<Stream, ValueTask> Run)[] variants =
        [
            ("inspect a chat body (227 B)", _ => { Inspect(s_chatBody); return ValueTask.CompletedTask; }),
            ("inspect a stream body + usage rewrite", _ => { InspectAndRewrite(); return ValueTask.CompletedTask; }),
            ("JSON answer (617 B), plain", sink => sink.WriteAsync(s_jsonAnswer)),
            ("JSON answer (617 B), through the tap", sink => TapJsonAsync(sink)),
            ("SSE answer (64 tokens, 68 events), plain", sink => WriteEventsAsync(sink)),
            ("SSE answer (64 tokens, 68 events), through the tap (usage chunk stripped)", sink => TapEventsAsync(sink)),
        ];
        var batches = variants.Select(_ => new List<double>()).ToArray();
        var sink = new MemoryStream(64 * 1024);
        for (var round = -1; round < rounds; round++)
        {
            for (var v = 0; v < variants.Length; v++)
            {
                for (var b = 0; b < 50; b++)
                {
                    var start = Stopwatch.GetTimestamp();
                    for (var i = 0; i < Batch; i++)
                    {
                        sink.Position = 0;
                        await variants[v].Run(sink);
                    }
                    if (round >= 0) batches[v].Add(Stopwatch.GetElapsedTime(start).TotalMicroseconds / Batch); // round -1 warms up (JIT tiering)
                }
            }
        }
        Console.WriteLine("| variant | µs/request median | p99 |");
        Console.WriteLine("|---|---:|---:|");
        for (var v = 0; v < variants.Length; v++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {variants[v].Name} | {Percentile(batches[v], 50):F2} | {Percentile(batches[v], 99):F2} |"));
        }
    }

    private static void Inspect(byte[] body)
    {
        var figures = OpenAiRequestInspector.Inspect(body, OpenAiOperation.ChatCompletions);
        if (figures.PromptEstimate == 0) throw new InvalidOperationException("no estimate");
    }

    private static void InspectAndRewrite()
    {
        var figures = OpenAiRequestInspector.Inspect(s_streamBody, OpenAiOperation.ChatCompletions);
        using var rewritten = OpenAiRequestInspector.Apply(s_streamBody, figures.UsageSplice);
    }

    private static GatewayCall NewCall() => new()
    {
        RequestId = "req_bench",
        Arrived = 0,
        ArrivedAt = DateTimeOffset.UnixEpoch,
        Project = "p",
        Route = s_route,
        Operation = OpenAiOperation.ChatCompletions,
        Inspected = true,
        Stream = true,
    };

    private static readonly ClusterRoute s_route = new() { Cluster = "c" };

    private static async ValueTask TapJsonAsync(Stream sink)
    {
        var call = NewCall();
        using var tap = new OpenAiUsageTap(sink, call, sse: false, strip: false);
        await tap.WriteAsync(s_jsonAnswer);
        await tap.FinishAsync(CancellationToken.None);
        if (call.CompletionTokens != 64) throw new InvalidOperationException("usage not read");
    }

    private static async ValueTask WriteEventsAsync(Stream sink)
    {
        foreach (var e in s_sseAnswer) await sink.WriteAsync(e);
    }

    private static async ValueTask TapEventsAsync(Stream sink)
    {
        var call = NewCall();
        using var tap = new OpenAiUsageTap(sink, call, sse: true, strip: true);
        foreach (var e in s_sseAnswer) await tap.WriteAsync(e);
        await tap.FinishAsync(CancellationToken.None);
        if (call.CompletionTokens != 64) throw new InvalidOperationException("usage not read");
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];
    }
}
