using System.Text.Json;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Cli.Tests.Commands;

/// <summary>No <c>shoal</c> command reads <c>@file</c> as a response file: the word is taken as it is.</summary>
public sealed class ResponseFileTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("shoal-cli-rsp");
    private FakeApiServer _server = null!;
    private CliHarness _cli = null!;

    public async Task InitializeAsync()
    {
        _server = await FakeApiServer.StartAsync();
        _cli = new CliHarness(_server.Address);
    }

    public async Task DisposeAsync()
    {
        _cli.Dispose();
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    private string SecretFile()
    {
        var path = _dir.Combine("node.json");
        File.WriteAllText(path, "node-secret-value\n");
        return path;
    }

    [Fact]
    public async Task An_arg_starting_with_at_is_sent_as_it_is_not_replaced_by_the_files_contents()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto, 201));
        var file = SecretFile();

        var exit = await _cli.RunAsync("deploy", "demo", "--image", "ghcr.io/org/model:1", "--gpu", "rtx-4090", "--arg", "@" + file);

        Assert.Equal(ExitCodes.Success, exit);
        var body = Assert.Single(_server.Requests).Body;
        var sent = JsonSerializer.Deserialize(body, ShoalJsonContext.Default.CreateClusterRequest)!;
        Assert.Equal(["@" + file], sent.Args!);
        Assert.DoesNotContain("node-secret-value", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_command_line_word_starting_with_at_is_an_unknown_argument_and_the_file_is_not_shown()
    {
        var file = _dir.Combine("help.rsp");
        File.WriteAllText(file, "--help\n");
        var secret = SecretFile();

        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("@" + file));
        Assert.Contains("@" + file, _cli.Err, StringComparison.Ordinal);
        Assert.Equal("", _cli.HelpOutput.ToString());

        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("sim", "@" + secret));
        Assert.Contains("@" + secret, _cli.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("node-secret-value", _cli.Err + _cli.Out, StringComparison.Ordinal);
    }
}
