using System.Text;
using System.Text.Json;
using Shoal.Edge.Gateway;

namespace Shoal.Edge.Tests.Gateway;

public sealed class OpenAiRequestInspectorTests
{
    private static OpenAiRequestFigures Inspect(string json, OpenAiOperation operation = OpenAiOperation.ChatCompletions) =>
        OpenAiRequestInspector.Inspect(Encoding.UTF8.GetBytes(json), operation);

    private static string Rewrite(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var figures = OpenAiRequestInspector.Inspect(bytes, OpenAiOperation.ChatCompletions);
        Assert.False(figures.UsageSplice.IsNone);
        using var body = OpenAiRequestInspector.Apply(bytes, figures.UsageSplice);
        return Encoding.UTF8.GetString(body.Span);
    }

    [Fact]
    public void Reads_model_stream_max_tokens_and_estimates_the_prompt()
    {
        var f = Inspect("""{"model":"llama","messages":[{"role":"system","content":"12345678"},{"role":"user","content":[{"type":"text","text":"abcd"}]}],"max_tokens":20,"n":2,"temperature":0.5,"extra":{"model":"nested","stream":true}}""");
        Assert.Equal("llama", f.Model);
        Assert.False(f.Stream);
        Assert.Equal(40, f.MaxTokens);
        // 12 bytes of text → 3 tokens; 2 messages × 4; 3 for the reply.
        Assert.Equal(3 + 2 * 4 + 3, f.PromptEstimate);
        Assert.True(f.UsageSplice.IsNone);
    }

    [Fact]
    public void Completions_and_embeddings_count_text_and_token_ids()
    {
        var c = Inspect("""{"model":"m","prompt":["abcdefgh","ab"],"max_completion_tokens":5}""", OpenAiOperation.Completions);
        Assert.Equal(3, c.PromptEstimate);
        Assert.Equal(5, c.MaxTokens);
        var e = Inspect("""{"model":"e","input":[[1,2,3],[4]]}""", OpenAiOperation.Embeddings);
        Assert.Equal(4, e.PromptEstimate);
        Assert.Equal(0, e.MaxTokens);
        Assert.Null(Inspect("""{"model":"m","prompt":"x"}""", OpenAiOperation.Completions).MaxTokens);
    }

    [Fact]
    public void A_stream_without_usage_is_asked_for_it()
    {
        var rewritten = Rewrite("""{"model":"m","stream":true,"messages":[]}""");
        using var doc = JsonDocument.Parse(rewritten);
        Assert.True(doc.RootElement.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        Assert.Equal("m", doc.RootElement.GetProperty("model").GetString());
        Assert.True(Inspect(rewritten).UsageSplice.IsNone);
        Assert.True(Inspect(rewritten).ClientAskedUsage);
    }

    [Theory]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":false,"x":1}}""")]
    [InlineData("""{"stream":true,"stream_options":{"continuous_usage_stats":false}}""")]
    [InlineData("""{"stream":true,"stream_options":{}}""")]
    [InlineData("""{"stream":true,"stream_options":null}""")]
    [InlineData("""{ "stream" : true }""")]
    public void Every_shape_of_stream_options_ends_asking_for_usage(string json)
    {
        Assert.False(Inspect(json).ClientAskedUsage);
        var rewritten = Rewrite(json);
        using var doc = JsonDocument.Parse(rewritten);
        var options = doc.RootElement.GetProperty("stream_options");
        Assert.True(options.GetProperty("include_usage").GetBoolean());
        // Nothing else is lost.
        if (json.Contains("continuous_usage_stats", StringComparison.Ordinal)) Assert.False(options.GetProperty("continuous_usage_stats").GetBoolean());
        if (json.Contains("\"x\"", StringComparison.Ordinal)) Assert.Equal(1, options.GetProperty("x").GetInt32());
    }

    [Fact]
    public void A_client_that_asked_for_usage_keeps_its_body()
    {
        var f = Inspect("""{"model":"m","stream":true,"stream_options":{"include_usage":true}}""");
        Assert.True(f.Stream);
        Assert.True(f.ClientAskedUsage);
        Assert.True(f.UsageSplice.IsNone);
    }

    [Theory]
    [InlineData("""{"model":"m","stream":true,""")]
    [InlineData("""{"model":"m","stream":true} trailing""")]
    [InlineData("not json")]
    [InlineData("[1,2]")]
    [InlineData("")]
    public void Invalid_json_is_left_alone(string json)
    {
        var f = Inspect(json);
        Assert.True(f.UsageSplice.IsNone);
    }

    [Fact]
    public void Finds_the_model_without_reading_the_rest()
    {
        Assert.Equal("a", OpenAiRequestInspector.FindModel("""{"messages":[{"model":"x"}],"model":"a"}"""u8));
        Assert.Null(OpenAiRequestInspector.FindModel("""{"model":3}"""u8));
        Assert.Null(OpenAiRequestInspector.FindModel("""{"messages":["""u8));
    }
}
