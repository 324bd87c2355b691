using System.Text.Json;
using Shoal.Cli.Commands;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Commands;

/// <summary>The price flags of deploy and update, and the price in status, against a real Kestrel server answering canned API JSON.</summary>
public sealed class PriceCommandTests : IAsyncLifetime
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

    [Fact]
    public async Task Deploy_sends_the_price_flags()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto, 201));

        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090",
            "--price-input", "0.15", "--price-output", "0.6", "--price-gpu-second", "0.0004");

        Assert.Equal(ExitCodes.Success, exit);
        var sent = JsonSerializer.Deserialize(Assert.Single(_server.Requests).Body, ShoalJsonContext.Default.CreateClusterRequest)!;
        Assert.Equal(new ClusterPrice { InputPerMillion = 0.15m, OutputPerMillion = 0.6m, PerGpuSecond = 0.0004m }, sent.Price);
    }

    [Fact]
    public async Task Update_sends_only_the_price_parts_given()
    {
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("update", "demo", "--price-output", "2"));
        Assert.Equal("""{"price":{"outputPerMillion":2}}""", Assert.Single(_server.Requests).Body);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("10001")]
    [InlineData("cheap")]
    public async Task Bad_prices_are_refused_before_any_call(string value)
    {
        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", "--price-input", value);
        Assert.NotEqual(ExitCodes.Success, exit);
        Assert.Contains("--price-input", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Status_shows_the_price()
    {
        var cluster = Samples.Cluster() with { Price = new ClusterPrice { InputPerMillion = 0.5m, PerGpuSecond = 0.0004m } };
        _server.On("GET", "/v1/clusters/demo/status", CannedResponse.Json(
            Samples.Status(cluster, Samples.Replica("r-1", ReplicaState.Ready)), ShoalJsonContext.Default.ClusterStatusDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("status", "demo"));
        Assert.Contains("$0.5/1M input, $0.0004/GPU-second", _cli.Out, StringComparison.Ordinal);
    }
}
