using System.Text;
using Shoal.Contracts;
using Shoal.Edge.Gateway;

namespace Shoal.Edge.Tests.Gateway;

public sealed class OpenAiUsageTapTests
{
    private const string Chunk1 = """data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}""" + "\n\n";
    private const string Chunk2 = """data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}],"usage":null}""" + "\n\n";
    private const string Chunk3 = """data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo \"x\""},"finish_reason":null}]}""" + "\r\n\r\n";
    private const string Last = """data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}""" + "\n\n";
    private const string Usage = """data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":2,"total_tokens":13}}""" + "\n\n";
    private const string Done = "data: [DONE]\n\n";
    private const string Stream = Chunk1 + Chunk2 + Chunk3 + Last + Usage + Done;

    private static GatewayCall NewCall() => new()
    {
        RequestId = "req_1",
        Arrived = 0,
        ArrivedAt = DateTimeOffset.UnixEpoch,
        Project = "p",
        Route = new ClusterRoute { Cluster = "c" },
        Operation = OpenAiOperation.ChatCompletions,
    };

    private static async Task<(string Output, GatewayCall Call)> RunAsync(string input, bool sse, bool strip, params int[] splits)
    {
        var call = NewCall();
        var sink = new MemoryStream();
        using var tap = new OpenAiUsageTap(sink, call, sse, strip);
        var bytes = Encoding.UTF8.GetBytes(input);
        var at = 0;
        foreach (var split in splits.Append(bytes.Length))
        {
            await tap.WriteAsync(bytes.AsMemory(at, split - at));
            at = split;
        }
        await tap.FinishAsync(CancellationToken.None);
        return (Encoding.UTF8.GetString(sink.ToArray()), call);
    }

    [Fact]
    public async Task Every_split_of_a_stream_keeps_it_whole_and_reads_its_usage()
    {
        var length = Encoding.UTF8.GetByteCount(Stream);
        for (var split = 0; split <= length; split++)
        {
            var (output, call) = await RunAsync(Stream, sse: true, strip: false, split);
            Assert.Equal(Stream, output);
            Assert.True(call.UsageReported);
            Assert.Equal(11, call.PromptTokens);
            Assert.Equal(2, call.CompletionTokens);
        }
    }

    [Fact]
    public async Task Every_split_strips_the_usage_chunk_the_gateway_asked_for()
    {
        var length = Encoding.UTF8.GetByteCount(Stream);
        for (var split = 0; split <= length; split++)
        {
            for (var second = split; second <= length; second += 17)
            {
                var (output, call) = await RunAsync(Stream, sse: true, strip: true, split, second);
                Assert.Equal(Chunk1 + Chunk2 + Chunk3 + Last + Done, output);
                Assert.Equal(11, call.PromptTokens);
                Assert.Equal(2, call.CompletionTokens);
            }
        }
    }

    [Fact]
    public async Task Byte_by_byte_writes_strip_and_count()
    {
        var splits = Enumerable.Range(1, Encoding.UTF8.GetByteCount(Stream) - 1).ToArray();
        var (output, call) = await RunAsync(Stream, sse: true, strip: true, splits);
        Assert.Equal(Chunk1 + Chunk2 + Chunk3 + Last + Done, output);
        Assert.Equal(2, call.CompletionTokens);
    }

    [Fact]
    public async Task A_cut_stream_is_charged_for_the_chunks_delivered()
    {
        // Cut in the middle of the last chunk: that one never reached the client whole.
        var cut = Chunk1 + Chunk2 + Chunk3 + Last[..20];
        var call = NewCall();
        var sink = new MemoryStream();
        using var tap = new OpenAiUsageTap(sink, call, sse: true, strip: true);
        await tap.WriteAsync(Encoding.UTF8.GetBytes(cut));
        Assert.False(call.UsageReported);
        Assert.Equal(2, call.CompletionTokens);
        Assert.Equal(Chunk1 + Chunk2 + Chunk3, Encoding.UTF8.GetString(sink.ToArray()));
    }

    [Fact]
    public async Task Completions_chunks_count_by_text()
    {
        const string s = """data: {"choices":[{"index":0,"text":"a"}]}""" + "\n\n" + """data: {"choices":[{"index":0,"text":""}]}""" + "\n\n"
            + """data: {"choices":[{"index":0,"text":"b"},{"index":1,"text":"c"}]}""" + "\n\n" + Done;
        var (output, call) = await RunAsync(s, sse: true, strip: true, 7, 50);
        Assert.Equal(s, output);
        Assert.Equal(3, call.CompletionTokens);
        Assert.False(call.UsageReported);
    }

    [Fact]
    public async Task A_non_stream_answer_gives_its_usage_at_every_split()
    {
        const string body = """{"id":"x","choices":[{"message":{"content":"{\"usage\":{\"prompt_tokens\":99}}"},"usage":{"prompt_tokens":98}}],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":3}},"z":[1,{"completion_tokens":4}]}""";
        var length = Encoding.UTF8.GetByteCount(body);
        for (var split = 0; split <= length; split++)
        {
            var (output, call) = await RunAsync(body, sse: false, strip: false, split, Math.Min(length, split + 3));
            Assert.Equal(body, output);
            Assert.True(call.UsageReported);
            Assert.Equal(7, call.PromptTokens);
            Assert.Equal(5, call.CompletionTokens);
        }
    }

    [Theory]
    [InlineData("{\"usage\": nul")]
    [InlineData("not json at all")]
    [InlineData("{\"usage\":null}")]
    public async Task Invalid_or_usage_free_json_passes_untouched(string body)
    {
        var (output, call) = await RunAsync(body, sse: false, strip: false, 3);
        Assert.Equal(body, output);
        Assert.False(call.UsageReported);
    }

    [Fact]
    public async Task An_event_past_the_limit_passes_through_untapped()
    {
        var big = "data: {\"choices\":[{\"text\":\"" + new string('x', OpenAiUsageTap.MaxPending) + "\"}]}\n\n" + Done;
        var (output, _) = await RunAsync(big, sse: true, strip: true, 100, 40_000);
        Assert.Equal(big, output);
    }
}
