using Shoal.Cli.Parsing;

namespace Shoal.Cli.Tests.Parsing;

public sealed class DurationParserTests
{
    [Theory]
    [InlineData("500ms", 500)]
    [InlineData("30s", 30_000)]
    [InlineData("5m", 300_000)]
    [InlineData("1h", 3_600_000)]
    [InlineData("1h30m", 5_400_000)]
    [InlineData("1.5s", 1_500)]
    [InlineData("2d", 172_800_000)]
    [InlineData(" 10S ", 10_000)]
    public void Parses_durations_with_units(string text, long expectedMs)
    {
        Assert.True(DurationParser.TryParse(text, out var value, out var error), error);
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), value);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("5", "no unit")]
    [InlineData("5x", "unknown unit 'x'")]
    [InlineData("abc", "'abc' is not")]
    [InlineData("-5s", "'-5s' is not")]
    [InlineData("1h5", "no unit")]
    public void Rejects_bad_durations_with_a_clear_message(string text, string expectedFragment)
    {
        Assert.False(DurationParser.TryParse(text, out _, out var error));
        Assert.Contains(expectedFragment, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_throws_a_format_exception_with_the_message()
    {
        var ex = Assert.Throws<FormatException>(() => DurationParser.Parse("10 parsecs"));
        Assert.Contains("10 parsecs", ex.Message, StringComparison.Ordinal);
    }
}
