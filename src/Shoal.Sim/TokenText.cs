namespace Shoal.Sim;

/// <summary>Deterministic stand-ins for a tokenizer and a model: token counts and generated text.</summary>
public static class TokenText
{
    /// <summary>Tokens the chat template adds around each message, as real templates do.</summary>
    public const int PerMessageOverhead = 4;

    private static readonly string[] s_words =
    [
        "the", "shoal", "moves", "as", "one", "through", "warm", "water", "and", "every", "fish", "keeps",
        "its", "place", "in", "a", "quiet", "current", "of", "light", "GPU", "tokens", "flow", "from",
        "node", "to", "edge", "while", "replicas", "answer", "fast", "under", "load", "with", "steady",
        "batches", "queue", "slots", "open", "again", "model", "weights", "stay", "hot", "requests",
        "arrive", "leave", "scale", "out", "over", "many", "small", "machines", "that", "share", "work",
        "reef", "tide", "deep", "blue", "silver", "swift", "calm", "bright",
    ];

    /// <summary>Approximate token count of a text: one per four characters, rounded up, at least one.</summary>
    public static int CountTokens(string text) => Math.Max(1, (text.Length + 3) / 4);

    /// <summary>Seed for the text of one request: the server seed, the request's own seed and its prompt.</summary>
    public static int TextSeed(int serverSeed, long? requestSeed, string prompt)
    {
        // FNV-1a, because string.GetHashCode is randomised per process and runs must repeat.
        const ulong Prime = 1099511628211;
        var hash = 14695981039346656037UL;
        hash = (hash ^ (uint)serverSeed) * Prime;
        hash = (hash ^ (ulong)(requestSeed ?? 0)) * Prime;
        foreach (var c in prompt)
        {
            hash = (hash ^ c) * Prime;
        }
        return (int)(hash ^ (hash >> 32));
    }

    /// <summary>A generator of output tokens; the same seed gives the same tokens.</summary>
    public static Func<int, string> Generator(int textSeed)
    {
        var random = new Random(textSeed);
        return index =>
        {
            var word = s_words[random.Next(s_words.Length)];
            return index == 0 ? word : " " + word;
        };
    }
}
