using System.Text.Json;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Commands;

/// <summary><c>shoal usage</c>: the usage report as a table with a total, or as JSON.</summary>
public sealed class UsageCommandTests : IAsyncLifetime
{
    private FakeApiServer _server = null!;
    private CliHarness _cli = null!;

    public async Task InitializeAsync()
    {
        _server = await FakeApiServer.StartAsync();
        _cli = new CliHarness(_server.Address);
        _server.On("GET", "/v1/usage", CannedResponse.Json(new UsageReportDto
        {
            By = UsageGroupings.Node,
            Since = new DateTimeOffset(2026, 12, 4, 6, 0, 0, TimeSpan.Zero),
            Until = new DateTimeOffset(2026, 12, 5, 6, 0, 0, TimeSpan.Zero),
            Rows =
            [
                new UsageRowDto { Group = "n-1", Requests = 1200, Errors = 3, PromptTokens = 5000, CompletionTokens = 7000, CostUsd = 0.125m, GpuSeconds = 3600 },
                new UsageRowDto { Group = "n-2", Requests = 800, PromptTokens = 1000, CompletionTokens = 2000, CostUsd = 0.5m, GpuSeconds = 1800.5 },
            ],
        }, ShoalJsonContext.Default.UsageReportDto));
    }

    public async Task DisposeAsync()
    {
        _cli.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Usage_is_a_table_with_a_total_or_json()
    {
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("usage", "--by", "node", "--since", "24h"));
        Assert.Matches(@"n-1\s+1,200\s+3\s+5,000\s+7,000\s+0\.125\s+3600", _cli.Out);
        Assert.Matches(@"TOTAL\s+2,000\s+3\s+6,000\s+9,000\s+0\.625\s+5400\.5", _cli.Out);

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("usage", "--by", "node", "--json"));
        var report = JsonSerializer.Deserialize(_cli.Out, ShoalJsonContext.Default.UsageReportDto)!;
        Assert.Equal(2000, report.Rows.Sum(r => r.Requests));
    }

    [Fact]
    public async Task An_unknown_grouping_is_refused_before_calling_the_server()
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("usage", "--by", "gpu"));
        Assert.Contains("--by must be", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }
}
