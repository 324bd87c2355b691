using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Shoal.Edge.Gateway;

/// <summary>What the gateway reads from an OpenAI request body.</summary>
internal struct OpenAiRequestFigures
{
    public string? Model;
    public bool Stream;
    public bool ClientAskedUsage;
    public long PromptEstimate;
    /// <summary><c>max_tokens</c> / <c>max_completion_tokens</c> times <c>n</c>; 0 for embeddings; null when absent.</summary>
    public long? MaxTokens;
    /// <summary>Where to splice the stream's usage request into the body; <see cref="Splice.None"/> when none is needed.</summary>
    public Splice UsageSplice;
}

/// <summary>Replace <see cref="Length"/> bytes at <see cref="At"/> with <see cref="Insert"/>.</summary>
internal readonly record struct Splice(int At, int Length, byte[]? Insert)
{
    public static readonly Splice None = new(-1, 0, null);

    public bool IsNone => Insert is null;
}

/// <summary>
/// Reads an OpenAI request body (chat completions, completions, embeddings) in one forward pass with
/// <see cref="Utf8JsonReader"/>, allocation-free except the model name: <c>model</c>, <c>stream</c>,
/// <c>stream_options.include_usage</c>, <c>max_tokens</c>/<c>max_completion_tokens</c>, <c>n</c>, and a
/// prompt-token estimate. Invalid JSON leaves the figures it read so far and no splice (the replica answers 400).
/// </summary>
/// <remarks>
/// Prompt estimate (documented in docs/gateway.md): the bytes of the prompt text as sent (JSON
/// string values of <c>messages[].content</c> — also <c>content[].text</c> parts —, <c>prompt</c>,
/// <c>input</c>; escapes counted as sent) divided by 4, rounded up; token-id arrays count one token
/// per number; chat adds 4 tokens per message and 3 for the reply's priming.
/// </remarks>
internal static class OpenAiRequestInspector
{
    public const int BytesPerToken = 4;
    public const int TokensPerMessage = 4;
    public const int ReplyPrimingTokens = 3;

    private static readonly byte[] s_usageObject = "{\"include_usage\":true}"u8.ToArray();
    private static readonly byte[] s_usageAtRoot = "\"stream_options\":{\"include_usage\":true},"u8.ToArray();
    private static readonly byte[] s_usageInOptions = "\"include_usage\":true,"u8.ToArray();
    private static readonly byte[] s_usageInEmptyOptions = "\"include_usage\":true"u8.ToArray();
    private static readonly byte[] s_true = "true"u8.ToArray();

    /// <summary>Reads the figures of <paramref name="body"/> for <paramref name="operation"/>.</summary>
    public static OpenAiRequestFigures Inspect(ReadOnlySpan<byte> body, OpenAiOperation operation)
    {
        var figures = new OpenAiRequestFigures { UsageSplice = Splice.None };
        long maxTokens = -1, n = 1, textBytes = 0, tokenIds = 0, messages = 0;
        var rootStart = -1;
        // Positions for the usage splice: the stream_options value (object start/end, or null), include_usage's false literal.
        int optionsStart = -1, optionsNull = -1, usageFalse = -1;
        var optionsEmpty = true;
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, MaxDepth = 256 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return figures;
            rootStart = (int)reader.TokenStartIndex;
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == 0) break;
                if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != 1) continue;
                // A top-level property: read its value.
                if (reader.ValueTextEquals("model"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.String) figures.Model = reader.GetString();
                    else reader.Skip();
                }
                else if (reader.ValueTextEquals("stream"u8))
                {
                    reader.Read();
                    figures.Stream = reader.TokenType == JsonTokenType.True;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("stream_options"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Null) optionsNull = (int)reader.TokenStartIndex;
                    else if (reader.TokenType == JsonTokenType.StartObject)
                    {
                        optionsStart = (int)reader.TokenStartIndex;
                        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
                        {
                            optionsEmpty = false;
                            if (reader.TokenType != JsonTokenType.PropertyName) continue;
                            var isUsage = reader.ValueTextEquals("include_usage"u8);
                            reader.Read();
                            if (isUsage && reader.TokenType == JsonTokenType.True) figures.ClientAskedUsage = true;
                            else if (isUsage && reader.TokenType == JsonTokenType.False) usageFalse = (int)reader.TokenStartIndex;
                            else reader.Skip();
                        }
                    }
                    else reader.Skip();
                }
                else if (reader.ValueTextEquals("max_tokens"u8) || reader.ValueTextEquals("max_completion_tokens"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var max) && max >= 0) maxTokens = max;
                    else reader.Skip();
                }
                else if (reader.ValueTextEquals("n"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var count) && count >= 1) n = count;
                    else reader.Skip();
                }
                else if (reader.ValueTextEquals("messages"u8))
                {
                    reader.Read();
                    CountMessages(ref reader, ref textBytes, ref messages);
                }
                else if (reader.ValueTextEquals("prompt"u8) || reader.ValueTextEquals("input"u8))
                {
                    reader.Read();
                    CountText(ref reader, ref textBytes, ref tokenIds);
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
            if (reader.TokenType != JsonTokenType.EndObject || reader.CurrentDepth != 0) return Partial(figures);
            // Anything but whitespace after the object throws.
            if (reader.Read()) return Partial(figures);
        }
        catch (JsonException)
        {
            return Partial(figures);
        }

        figures.PromptEstimate = (textBytes + BytesPerToken - 1) / BytesPerToken + tokenIds
            + (messages > 0 ? messages * TokensPerMessage + ReplyPrimingTokens : 0);
        if (operation == OpenAiOperation.Embeddings)
        {
            figures.MaxTokens = 0;
            figures.Stream = false;
        }
        else if (maxTokens >= 0)
        {
            figures.MaxTokens = maxTokens * n;
        }
        if (figures.Stream && !figures.ClientAskedUsage)
        {
            figures.UsageSplice = usageFalse >= 0 ? new Splice(usageFalse, 5, s_true)
                : optionsNull >= 0 ? new Splice(optionsNull, 4, s_usageObject)
                : optionsStart >= 0 ? new Splice(optionsStart + 1, 0, optionsEmpty ? s_usageInEmptyOptions : s_usageInOptions)
                : new Splice(rootStart + 1, 0, s_usageAtRoot);
        }
        return figures;
    }

    /// <summary>Invalid JSON: what was read, but no rewrite (the body goes as it came).</summary>
    private static OpenAiRequestFigures Partial(OpenAiRequestFigures figures)
    {
        figures.UsageSplice = Splice.None;
        return figures;
    }

    /// <summary>Only the top-level <c>model</c> (for the facade's routing), stopping once found.</summary>
    public static string? FindModel(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, MaxDepth = 256 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isModel = reader.ValueTextEquals("model"u8);
                reader.Read();
                if (isModel) return reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                reader.Skip();
            }
        }
        catch (JsonException)
        {
        }
        return null;
    }

    /// <summary>Applies <paramref name="splice"/> to <paramref name="body"/> into a new pooled buffer.</summary>
    public static BufferedBody Apply(ReadOnlySpan<byte> body, Splice splice)
    {
        var length = body.Length - splice.Length + splice.Insert!.Length;
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        body[..splice.At].CopyTo(buffer);
        splice.Insert.CopyTo(buffer.AsSpan(splice.At));
        body[(splice.At + splice.Length)..].CopyTo(buffer.AsSpan(splice.At + splice.Insert.Length));
        return new BufferedBody(buffer, length);
    }

    // messages: [{role, content: "..." | [{type:"text", text:"..."}, ...]}, ...]
    private static void CountMessages(ref Utf8JsonReader reader, ref long textBytes, ref long messages)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            reader.Skip();
            return;
        }
        var arrayDepth = reader.CurrentDepth;
        while (reader.Read() && !(reader.TokenType == JsonTokenType.EndArray && reader.CurrentDepth == arrayDepth))
        {
            if (reader.TokenType == JsonTokenType.StartObject && reader.CurrentDepth == arrayDepth + 1) messages++;
            else if (reader.TokenType == JsonTokenType.PropertyName && (reader.ValueTextEquals("content"u8) || reader.ValueTextEquals("text"u8)))
            {
                reader.Read();
                // A string counts; an array of parts goes on through the loop (its parts' "text" count).
                if (reader.TokenType == JsonTokenType.String) textBytes += reader.ValueSpan.Length;
            }
        }
    }

    // prompt / input: "..." | ["...", ...] | [1, 2, ...] | [[1, 2], ...]
    private static void CountText(ref Utf8JsonReader reader, ref long textBytes, ref long tokenIds)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            textBytes += reader.ValueSpan.Length;
            return;
        }
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            reader.Skip();
            return;
        }
        var depth = reader.CurrentDepth;
        while (reader.Read() && !(reader.TokenType == JsonTokenType.EndArray && reader.CurrentDepth == depth))
        {
            if (reader.TokenType == JsonTokenType.String) textBytes += reader.ValueSpan.Length;
            else if (reader.TokenType == JsonTokenType.Number) tokenIds++;
        }
    }

    /// <summary>For tests and docs: the estimate of a plain text.</summary>
    public static long EstimateText(string text) => (Encoding.UTF8.GetByteCount(text) + BytesPerToken - 1) / BytesPerToken;
}
