using Shoal.Agent.Runtimes;

namespace Shoal.Agent.Tests.Runtimes;

public class CommandLineTests
{
    [Fact]
    public void Splits_words_and_quotes()
    {
        Assert.Equal(
            ["python3", "-m", "http.server", "a b", "it's", "x\"y", "c\\d"],
            CommandLine.Split("  python3 -m http.server 'a b' \"it's\" \"x\\\"y\" c\\\\d  "));
    }

    [Fact]
    public void Unclosed_quote_is_an_error()
    {
        Assert.Throws<FormatException>(() => CommandLine.Split("echo 'oops"));
    }

    [Fact]
    public void Quote_round_trips()
    {
        string[] words = ["/opt/my dir/dotnet", "it's", "$PORT", "plain"];

        var line = string.Join(' ', words.Select(CommandLine.Quote));

        Assert.Equal(words, CommandLine.Split(line));
    }

    [Fact]
    public void Expands_known_variables_only()
    {
        var vars = new Dictionary<string, string> { ["PORT"] = "8123", ["SHOAL_CLUSTER"] = "demo" };

        Assert.Equal("8123", CommandLine.Expand("$PORT", vars));
        Assert.Equal("--port=8123/demo", CommandLine.Expand("--port=${PORT}/$SHOAL_CLUSTER", vars));
        Assert.Equal("$HOME and $", CommandLine.Expand("$HOME and $", vars));
    }
}
