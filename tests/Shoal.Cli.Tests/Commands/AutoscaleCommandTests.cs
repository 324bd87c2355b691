using System.Text.Json;
using Shoal.Cli.Commands;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Commands;

/// <summary><c>shoal autoscale</c> and the autoscaling flags of deploy, update and status, against a real Kestrel server answering canned API JSON.</summary>
public sealed class AutoscaleCommandTests : IAsyncLifetime
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

    // The console wraps long lines: compare text with runs of whitespace as one space.
    private static string Flat(string output) => string.Join(' ', output.Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries));

    private static ClusterDto Autoscaled() => Samples.Cluster(replicas: 5, ready: 2) with
    {
        MaxHeld = 200,
        Autoscale = new AutoscaleDto
        {
            Settings = new AutoscaleSpec { Min = 0, Max = 8, TargetWaiting = 2, ScaleDownWindowSeconds = 60, ScaleToZeroAfterSeconds = 600 },
            Desired = 5,
            Reason = "14 waiting per replica, target 2",
            Waiting = 28,
            InFlight = 30,
            Held = 0,
            LastChange = "scaled up 2→5: 14 waiting per replica, target 2",
            LastChangeAt = Samples.T0,
        },
        ColdStart = new ColdStartDto
        {
            NodeWait = new LatencySummary { Count = 3, P50Ms = 20, P90Ms = 40, MaxMs = 40 },
            Start = new LatencySummary { Count = 3, P50Ms = 5000, P90Ms = 5200, MaxMs = 5200 },
        },
    };

    [Fact]
    public async Task Deploy_sends_the_autoscaling_flags()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Json(Autoscaled(), ShoalJsonContext.Default.ClusterDto, 201));

        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090",
            "--min", "0", "--max", "8", "--target-waiting", "2.5", "--target-concurrency", "4", "--scale-down-window", "90s",
            "--scale-to-zero-after", "10m", "--max-held", "200");

        Assert.Equal(ExitCodes.Success, exit);
        var sent = JsonSerializer.Deserialize(Assert.Single(_server.Requests).Body, ShoalJsonContext.Default.CreateClusterRequest)!;
        Assert.Equal(new AutoscaleRequest { Min = 0, Max = 8, TargetWaiting = 2.5, TargetConcurrency = 4, ScaleDownWindowSeconds = 90, ScaleToZeroAfterSeconds = 600 }, sent.Autoscale);
        Assert.Equal(200, sent.MaxHeld);
    }

    [Fact]
    public async Task Deploy_without_autoscaling_flags_sends_none()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto, 201));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090"));
        var body = Assert.Single(_server.Requests).Body;
        Assert.DoesNotContain("autoscale", body, StringComparison.Ordinal);
        Assert.DoesNotContain("maxHeld", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Update_changes_only_the_autoscaling_fields_given()
    {
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Autoscaled(), ShoalJsonContext.Default.ClusterDto));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("update", "demo", "--max", "12"));
        Assert.Equal("""{"autoscale":{"max":12}}""", Assert.Single(_server.Requests).Body);
    }

    [Fact]
    public async Task Autoscale_shows_settings_and_the_decision()
    {
        _server.On("GET", "/v1/clusters/demo", CannedResponse.Json(Autoscaled(), ShoalJsonContext.Default.ClusterDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("autoscale", "demo"));

        Assert.Equal("GET /v1/clusters/demo", Assert.Single(_server.Requests) is var r ? $"{r.Method} {r.Path}" : "");
        var text = Flat(_cli.Out);
        Assert.Contains("demo: autoscaling 0..8 replicas, target 2 waiting per replica, scale-down window 1m, to zero after 10m idle; hold queue up to 200", text, StringComparison.Ordinal);
        Assert.Contains("decision: wants 5: 14 waiting per replica, target 2 (28 waiting, 30 in flight, 0 held)", text, StringComparison.Ordinal);
        Assert.Contains("last change: scaled up 2→5", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Autoscale_sets_bounds_and_turns_off()
    {
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("autoscale", "demo", "--min", "1", "--max", "4"));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("autoscale", "demo", "--off"));

        Assert.Equal(["""{"autoscale":{"min":1,"max":4}}""", """{"autoscale":{"off":true}}"""], _server.Requests.Select(r => r.Body));
        Assert.Contains("autoscaling off, 2 replica(s) fixed", _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Autoscale_off_with_other_settings_is_refused_without_calling_the_server()
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("autoscale", "demo", "--off", "--max", "3"));
        Assert.Contains("--off cannot be combined", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Theory]
    [InlineData("--target-waiting", "lots", "--target-waiting must be a number, got 'lots'")]
    [InlineData("--target-waiting", "-1", "--target-waiting must be between 0 and 10000, got -1")]
    [InlineData("--max", "0", "--max must be between 1 and 1000, got 0")]
    [InlineData("--scale-down-window", "2h", "--scale-down-window must be between")]
    public async Task Bad_flags_are_refused_without_calling_the_server(string flag, string value, string error)
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("autoscale", "demo", flag, value));
        Assert.Contains(error, _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Scale_with_autoscaling_on_says_why_it_cannot()
    {
        const string why = "autoscaling owns the replica count of 'demo' (min 1, max 4): set the bounds instead (shoal autoscale demo --min N --max M), or turn autoscaling off first (shoal autoscale demo --off)";
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Error(400, ErrorCodes.InvalidArgument, why));
        Assert.NotEqual(ExitCodes.Success, await _cli.RunAsync("scale", "demo", "3"));
        Assert.Contains("autoscaling owns the replica count of 'demo'", _cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_shows_autoscaling_and_cold_starts()
    {
        _server.On("GET", "/v1/clusters/demo/status", CannedResponse.Json(
            Samples.Status(Autoscaled(), Samples.Replica("r-1", Shoal.Contracts.ReplicaState.Ready)), ShoalJsonContext.Default.ClusterStatusDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("status", "demo"));

        var text = Flat(_cli.Out);
        Assert.Contains("autoscale 0..8 replicas, target 2 waiting per replica", text, StringComparison.Ordinal);
        Assert.Contains("decision wants 5: 14 waiting per replica, target 2", text, StringComparison.Ordinal);
        Assert.Contains("cold start node p50 20ms p90 40ms max 40ms (3) · pull - · start p50 5.0s p90 5.2s max 5.2s (3) · warm-up -", text, StringComparison.Ordinal);
    }
}
