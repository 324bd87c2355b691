using Shoal.Cli.Parsing;

namespace Shoal.Cli.Tests.Parsing;

public sealed class EnvParserTests
{
    [Fact]
    public void Splits_at_the_first_equals_sign_and_keeps_empty_values()
    {
        Assert.True(EnvParser.TryParse(["MODEL=llama", "OPTS=a=b=c", "EMPTY=", "_X1=1"], out var env, out var error), error);
        Assert.Equal(4, env.Count);
        Assert.Equal("llama", env["MODEL"]);
        Assert.Equal("a=b=c", env["OPTS"]);
        Assert.Equal("", env["EMPTY"]);
        Assert.Equal("1", env["_X1"]);
    }

    [Theory]
    [InlineData("FOO", "is not KEY=VALUE")]
    [InlineData("=bar", "has no name")]
    [InlineData("1ABC=x", "not valid")]
    [InlineData("MY-VAR=x", "not valid")]
    public void Rejects_bad_items_naming_them(string item, string expectedFragment)
    {
        Assert.False(EnvParser.TryParse(["OK=1", item], out _, out var error));
        Assert.Contains(expectedFragment, error, StringComparison.Ordinal);
        Assert.Contains(item.Split('=')[0], error, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_a_name_given_twice()
    {
        Assert.False(EnvParser.TryParse(["A=1", "A=2"], out _, out var error));
        Assert.Contains("more than once", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Secret_env_takes_inline_values_or_the_named_shell_variable()
    {
        var shell = new Dictionary<string, string> { ["FROM_SHELL"] = "shell=value" };
        Assert.True(EnvParser.TryParseSecret(["INLINE=a=b", "FROM_SHELL", "EMPTY="], name => shell.GetValueOrDefault(name), out var env, out var error), error);
        Assert.Equal(new Dictionary<string, string> { ["INLINE"] = "a=b", ["FROM_SHELL"] = "shell=value", ["EMPTY"] = "" }, env);
    }

    [Theory]
    [InlineData("MISSING", "$MISSING is not set")]
    [InlineData("1BAD=hidden-value", "name '1BAD' is not valid")]
    [InlineData("=hidden-value", "has no name")]
    [InlineData("A=hidden-value", "more than once")]
    public void Secret_env_errors_never_quote_a_value(string item, string expectedFragment)
    {
        Assert.False(EnvParser.TryParseSecret(["A=1", item], _ => null, out _, out var error));
        Assert.Contains(expectedFragment, error, StringComparison.Ordinal);
        Assert.DoesNotContain("hidden-value", error, StringComparison.Ordinal);
    }
}
