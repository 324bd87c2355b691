using System.Text;
using System.Text.Json;

namespace Shoal.Sim;

/// <summary>Which OpenAI endpoint a request came to.</summary>
public enum CompletionKind
{
    Chat,
    Text,
}

/// <summary>The parts of an OpenAI completion request that the simulator uses.</summary>
public sealed record CompletionRequest(
    CompletionKind Kind,
    string Prompt,
    int PromptTokens,
    int MaxTokens,
    bool Stream,
    bool IncludeUsage,
    long? Seed)
{
    /// <summary>
    /// Reads a chat (<c>messages</c>) or text (<c>prompt</c>) completion request. Throws
    /// <see cref="FormatException"/> with a message fit for a 400 answer when a field is missing or wrong.
    /// </summary>
    public static CompletionRequest Parse(JsonElement root, CompletionKind kind, int defaultMaxTokens)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException("the request body must be a JSON object");
        }
        if (root.TryGetProperty("model", out var model) && model.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
        {
            throw new FormatException("'model' must be a string");
        }

        string prompt;
        int promptTokens;
        if (kind == CompletionKind.Chat)
        {
            (prompt, promptTokens) = ReadMessages(root);
        }
        else
        {
            (prompt, promptTokens) = ReadPrompt(root);
        }

        var maxTokens = defaultMaxTokens;
        foreach (var name in (ReadOnlySpan<string>)["max_tokens", "max_completion_tokens"])
        {
            if (root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null)
            {
                if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var n) || n < 1)
                {
                    throw new FormatException($"'{name}' must be a positive integer");
                }
                maxTokens = (int)Math.Min(n, SimOptions.MaxTokensCap);
            }
        }

        if (root.TryGetProperty("n", out var count) && count.ValueKind != JsonValueKind.Null &&
            (count.ValueKind != JsonValueKind.Number || !count.TryGetInt32(out var choices) || choices != 1))
        {
            throw new FormatException("'n' must be 1: the simulator answers with one choice");
        }

        var stream = ReadBool(root, "stream");
        var includeUsage = false;
        if (root.TryGetProperty("stream_options", out var options) && options.ValueKind != JsonValueKind.Null)
        {
            if (options.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException("'stream_options' must be an object");
            }
            includeUsage = ReadBool(options, "include_usage");
        }

        long? seed = null;
        if (root.TryGetProperty("seed", out var seedValue) && seedValue.ValueKind != JsonValueKind.Null)
        {
            if (seedValue.ValueKind != JsonValueKind.Number || !seedValue.TryGetInt64(out var s))
            {
                throw new FormatException("'seed' must be an integer");
            }
            seed = s;
        }

        return new CompletionRequest(kind, prompt, promptTokens, maxTokens, stream, includeUsage, seed);
    }

    private static (string Prompt, int Tokens) ReadMessages(JsonElement root)
    {
        if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array)
        {
            throw new FormatException("'messages' is required and must be an array");
        }
        if (messages.GetArrayLength() == 0)
        {
            throw new FormatException("'messages' must not be empty");
        }
        var text = new StringBuilder();
        var tokens = 0;
        var index = 0;
        foreach (var message in messages.EnumerateArray())
        {
            if (message.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException($"messages[{index}] must be an object");
            }
            if (!message.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(role.GetString()))
            {
                throw new FormatException($"messages[{index}].role is required and must be a string");
            }
            var content = ReadContent(message, index);
            text.Append(role.GetString()).Append(": ").Append(content).Append('\n');
            tokens += TokenText.CountTokens(content) + TokenText.PerMessageOverhead;
            index++;
        }
        return (text.ToString(), tokens);
    }

    private static string ReadContent(JsonElement message, int index)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
        {
            // Assistant messages with tool calls carry no content; that is allowed.
            return "";
        }
        if (content.ValueKind == JsonValueKind.String)
        {
            return content.GetString()!;
        }
        if (content.ValueKind != JsonValueKind.Array)
        {
            throw new FormatException($"messages[{index}].content must be a string or an array of parts");
        }
        var text = new StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException($"messages[{index}].content parts must be objects");
            }
            if (part.TryGetProperty("text", out var partText) && partText.ValueKind == JsonValueKind.String)
            {
                text.Append(partText.GetString());
            }
        }
        return text.ToString();
    }

    private static (string Prompt, int Tokens) ReadPrompt(JsonElement root)
    {
        if (!root.TryGetProperty("prompt", out var prompt))
        {
            throw new FormatException("'prompt' is required");
        }
        switch (prompt.ValueKind)
        {
            case JsonValueKind.String:
                var text = prompt.GetString()!;
                if (text.Length == 0)
                {
                    throw new FormatException("'prompt' must not be empty");
                }
                return (text, TokenText.CountTokens(text));
            case JsonValueKind.Array when prompt.GetArrayLength() == 0:
                throw new FormatException("'prompt' must not be empty");
            case JsonValueKind.Array when prompt.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number):
                // Token ids: the count is exact.
                return (prompt.GetRawText(), prompt.GetArrayLength());
            case JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String:
                var only = prompt[0].GetString()!;
                return (only, TokenText.CountTokens(only));
            case JsonValueKind.Array:
                throw new FormatException("'prompt' must be a string, an array of token ids, or an array of one string (batched prompts are not simulated)");
            default:
                throw new FormatException("'prompt' must be a string or an array of token ids");
        }
    }

    private static bool ReadBool(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return false;
        }
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new FormatException($"'{name}' must be true or false"),
        };
    }
}
