namespace Shoal.Sim.Tests;

public sealed class TokenTextTests
{
    private static string Text(int seed, int count)
    {
        var next = TokenText.Generator(seed);
        return string.Concat(Enumerable.Range(0, count).Select(next));
    }

    [Fact]
    public void Text_is_deterministic_per_seed_and_prompt()
    {
        var seed = TokenText.TextSeed(42, null, "hello");
        Assert.Equal(Text(seed, 20), Text(TokenText.TextSeed(42, null, "hello"), 20));
        Assert.NotEqual(Text(seed, 20), Text(TokenText.TextSeed(43, null, "hello"), 20));
        Assert.NotEqual(Text(seed, 20), Text(TokenText.TextSeed(42, null, "hello!"), 20));
        Assert.NotEqual(Text(seed, 20), Text(TokenText.TextSeed(42, 5, "hello"), 20));
    }

    [Fact]
    public void Tokens_are_words_separated_by_spaces()
    {
        var text = Text(1, 10);
        Assert.Equal(10, text.Split(' ').Length);
        Assert.DoesNotContain("  ", text, StringComparison.Ordinal);
        Assert.False(text.StartsWith(' '));
    }

    [Theory]
    [InlineData("", 1)]
    [InlineData("abc", 1)]
    [InlineData("abcd", 1)]
    [InlineData("abcde", 2)]
    [InlineData("The quick brown fox jumps over the lazy dog", 11)]
    public void Prompt_tokens_are_about_four_characters_each(string text, int tokens)
    {
        Assert.Equal(tokens, TokenText.CountTokens(text));
    }
}
