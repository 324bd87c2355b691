using Shoal.Cli.Tests.Infrastructure;
using Shoal.Testing;

namespace Shoal.Cli.Tests.Commands;

/// <summary><c>shoal agent</c> options that refuse to start: a clear error, exit code 2, nothing run.</summary>
public sealed class AgentCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new("shoal-cli-agent");
    private readonly CliHarness _cli = new();

    public void Dispose()
    {
        _cli.Dispose();
        _dir.Dispose();
    }

    private string[] Agent(params string[] more) =>
        ["agent", "--server", "http://127.0.0.1:9", "--data-dir", _dir.Combine("data"), "--simulate-gpus", "rtx-4090:1", .. more];

    [Fact]
    public async Task Host_networking_needs_the_operators_opt_in_and_help_warns_about_it()
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync(Agent("--token", "t", "--runtime", "docker", "--docker-network", "host")));
        Assert.Contains("its loopback included", _cli.Err, StringComparison.Ordinal);
        Assert.Contains("--allow-host-network", _cli.Err, StringComparison.Ordinal);

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("agent", "--help"));
        var help = _cli.HelpOutput.ToString();
        Assert.Contains("--allow-host-network", help, StringComparison.Ordinal);
        Assert.Contains("WARNING", help, StringComparison.Ordinal);
        Assert.Contains("--token-file", help, StringComparison.Ordinal);
        Assert.Contains("--allow-env", help, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_token_is_given_once()
    {
        var file = _dir.Combine("token");
        File.WriteAllText(file, "shoal_pt_x");

        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync(Agent("--token", "t", "--token-file", file, "--runtime", "process")));
        Assert.Contains("give the provisioning token once", _cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_a_token_anywhere_the_error_names_every_way_to_give_one()
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync(Agent("--runtime", "process")));
        Assert.Contains("--token, --token-file or $SHOAL_TOKEN", _cli.Err, StringComparison.Ordinal);
    }
}
