using System.Text.Json;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Commands;

/// <summary><c>--secret-env</c> on <c>shoal deploy</c> and <c>shoal update</c>.</summary>
public sealed class SecretEnvCommandTests : IAsyncLifetime
{
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
    }

    private static ClusterDto Masked => Samples.Cluster() with { SecretEnv = new() { ["HF_TOKEN"] = SecretValue.Mask, ["DB_PASSWORD"] = SecretValue.Mask } };

    [Fact]
    public async Task Deploy_sends_secret_env_given_inline_or_taken_from_the_shell_and_never_prints_a_value()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Json(Masked, ShoalJsonContext.Default.ClusterDto, 201));
        _cli.Environment["DB_PASSWORD"] = "from-the-shell-42";

        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090",
            "-e", "MODE=fast", "--secret-env", "HF_TOKEN=hf_inline-value", "--secret-env", "DB_PASSWORD", "-o", "json");

        Assert.Equal(ExitCodes.Success, exit);
        var sent = JsonSerializer.Deserialize(Assert.Single(_server.Requests).Body, ShoalJsonContext.Default.CreateClusterRequest)!;
        Assert.Equal(new Dictionary<string, string> { ["MODE"] = "fast" }, sent.Env);
        Assert.Equal(new Dictionary<string, string> { ["HF_TOKEN"] = "hf_inline-value", ["DB_PASSWORD"] = "from-the-shell-42" }, sent.SecretEnv);
        var shown = JsonSerializer.Deserialize(_cli.Out, ShoalJsonContext.Default.ClusterDto)!;
        Assert.Equal(SecretValue.Mask, shown.SecretEnv["HF_TOKEN"]);
        Assert.DoesNotContain("hf_inline-value", _cli.Out + _cli.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("from-the-shell-42", _cli.Out + _cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_secret_env_name_not_set_in_the_shell_is_refused_before_anything_is_sent()
    {
        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", "--secret-env", "HF_TOKEN");

        Assert.Equal(ExitCodes.InvalidInput, exit);
        Assert.Contains("--secret-env HF_TOKEN: $HF_TOKEN is not set", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Update_sends_only_the_secret_env_given()
    {
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Masked, ShoalJsonContext.Default.ClusterDto));

        var exit = await _cli.RunAsync("update", "demo", "--secret-env", "HF_TOKEN=hf_rotated");

        Assert.Equal(ExitCodes.Success, exit);
        var sent = JsonSerializer.Deserialize(Assert.Single(_server.Requests).Body, ShoalJsonContext.Default.UpdateClusterRequest)!;
        Assert.Equal(new Dictionary<string, string> { ["HF_TOKEN"] = "hf_rotated" }, sent.SecretEnv);
        Assert.Null(sent.Env);
        Assert.DoesNotContain("hf_rotated", _cli.Out + _cli.Err, StringComparison.Ordinal);
    }
}
