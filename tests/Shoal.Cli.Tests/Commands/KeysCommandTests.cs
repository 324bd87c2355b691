using System.Text.Json;
using Shoal.Cli.Commands;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Commands;

/// <summary>API keys on the command line: where the CLI takes its key from, <c>login</c>, <c>keys</c>, <c>tokens</c> and <c>nodes rm</c>.</summary>
public sealed class KeysCommandTests : IAsyncLifetime
{
    private FakeApiServer _server = null!;
    private CliHarness _cli = null!;

    public async Task InitializeAsync()
    {
        _server = await FakeApiServer.StartAsync();
        _cli = new CliHarness(_server.Address);
        _server.On("GET", "/v1/gpu-types", CannedResponse.Json(Array.Empty<GpuTypeDto>(), ShoalJsonContext.Default.GpuTypeDtoArray));
    }

    public async Task DisposeAsync()
    {
        _cli.Dispose();
        await _server.DisposeAsync();
    }

    private static readonly WhoAmIDto s_me = new() { KeyId = "key-1", Name = "alice", Role = ApiKeyRoles.Owner, Project = "team-a" };

    [Fact]
    public async Task The_key_comes_from_the_flag_then_the_environment_then_the_config_that_login_writes_private()
    {
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("gpu-types"));
        Assert.Null(Assert.Single(_server.Requests).Authorization);

        _cli.Environment["SHOAL_API_KEY"] = "shoal_ak_env";
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("gpu-types"));
        Assert.Equal("Bearer shoal_ak_env", _server.Requests.Last().Authorization);
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("gpu-types", "--api-key", "shoal_ak_flag"));
        Assert.Equal("Bearer shoal_ak_flag", _server.Requests.Last().Authorization);
        _cli.Environment.Remove("SHOAL_API_KEY");

        // login checks the key with the server, then saves address and key (0600, as it holds a key).
        _server.On("GET", "/v1/whoami", CannedResponse.Json(s_me, ShoalJsonContext.Default.WhoAmIDto));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("login", "--api-key", "shoal_ak_saved"));
        Assert.Equal("Bearer shoal_ak_saved", _server.Requests.Last().Authorization);
        Assert.Contains("as alice (key-1, role owner, project team-a)", _cli.Out, StringComparison.Ordinal);
        var config = _cli.Environment["SHOAL_CONFIG"];
        Assert.Contains("shoal_ak_saved", await File.ReadAllTextAsync(config), StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(config));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("gpu-types"));
        Assert.Equal("Bearer shoal_ak_saved", _server.Requests.Last().Authorization);
    }

    [Fact]
    public async Task A_refused_key_is_exit_6_with_the_servers_reason_and_login_saves_nothing()
    {
        _server.On("GET", "/v1/whoami", CannedResponse.Error(401, ErrorCodes.Unauthorized, "the API key is not valid"));
        Assert.Equal(ExitCodes.Unauthorized, await _cli.RunAsync("login", "--api-key", "shoal_ak_wrong"));
        Assert.Contains("the API key is not valid", _cli.Err, StringComparison.Ordinal);
        Assert.False(File.Exists(_cli.Environment["SHOAL_CONFIG"]));
    }

    [Fact]
    public async Task Keys_create_sends_the_request_and_shows_the_key_once_and_revoke_list_and_nodes_rm_call_their_routes()
    {
        var created = new ApiKeyCreatedDto { Id = "key-9", Name = "app", Role = ApiKeyRoles.Endpoint, Project = "team-a", Prefix = "shoal_sk_abcd", Key = "shoal_sk_abcdefgh" };
        _server.On("POST", "/v1/keys", CannedResponse.Json(created, ShoalJsonContext.Default.ApiKeyCreatedDto, 201));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("keys", "create", "app", "--role", "endpoint", "--project", "team-a", "--ttl", "1h", "--rate-limit", "50"));
        var sent = JsonSerializer.Deserialize(_server.Requests.Last().Body, ShoalJsonContext.Default.CreateApiKeyRequest)!;
        Assert.Equal(("app", ApiKeyRoles.Endpoint, "team-a", 3600L, 50), (sent.Name, sent.Role, sent.Project, sent.TtlSeconds!.Value, sent.RateLimitPerMinute!.Value));
        Assert.Contains("shoal_sk_abcdefgh", _cli.Out, StringComparison.Ordinal);

        _server.On("GET", "/v1/keys", CannedResponse.Json(new ApiKeyDto[] { created }, ShoalJsonContext.Default.ApiKeyDtoArray));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("keys", "list"));
        Assert.Contains("key-9", _cli.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("shoal_sk_abcdefgh", _cli.Out, StringComparison.Ordinal);

        foreach (var (args, path) in new[]
        {
            (new[] { "keys", "revoke", "key-9" }, "/v1/keys/key-9"),
            (new[] { "tokens", "revoke", "tok-3" }, "/v1/tokens/tok-3"),
            (new[] { "nodes", "rm", "node-2" }, "/v1/nodes/node-2"),
        })
        {
            _server.On("DELETE", path, CannedResponse.NoContent);
            Assert.Equal(ExitCodes.Success, await _cli.RunAsync(args));
            Assert.Equal(("DELETE", path), (_server.Requests.Last().Method, _server.Requests.Last().Path));
        }
        _server.On("DELETE", "/v1/nodes/busy", CannedResponse.Error(409, ErrorCodes.AlreadyExists, "node 'busy' is connected; stop its agent first"));
        Assert.Equal(ExitCodes.Conflict, await _cli.RunAsync("nodes", "rm", "busy"));
        Assert.Contains("stop its agent first", _cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Gateway_limits_and_budgets_go_with_keys_and_projects_on_create_and_update_and_show_in_lists()
    {
        var created = new ApiKeyCreatedDto
        {
            Id = "key-9", Name = "app", Role = ApiKeyRoles.Endpoint, Project = "team-a", Prefix = "shoal_sk_abcd", Key = "shoal_sk_abcdefgh",
            Limits = new GatewayLimits { RequestsPerMinute = 100, TokensPerMinute = 50_000 }, Budget = new BudgetSpec { AmountUsd = 25, Period = BudgetPeriods.Week },
        };
        _server.On("POST", "/v1/keys", CannedResponse.Json(created, ShoalJsonContext.Default.ApiKeyCreatedDto, 201));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("keys", "create", "app", "--role", "endpoint", "--project", "team-a",
            "--rpm", "100", "--tpm", "50000", "--max-concurrent", "8", "--budget", "25", "--budget-period", "week"));
        var sent = JsonSerializer.Deserialize(_server.Requests.Last().Body, ShoalJsonContext.Default.CreateApiKeyRequest)!;
        Assert.Equal(new GatewayLimits { RequestsPerMinute = 100, TokensPerMinute = 50_000, MaxConcurrent = 8 }, sent.Limits);
        Assert.Equal(new BudgetSpec { AmountUsd = 25, Period = BudgetPeriods.Week }, sent.Budget);

        _server.On("GET", "/v1/keys", CannedResponse.Json(new ApiKeyDto[] { created }, ShoalJsonContext.Default.ApiKeyDtoArray));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("keys", "list"));
        Assert.Equal("100 rpm, 50000 tpm, $25/week", GatewaySettingsOptions.Describe(created.Limits, created.Budget));
        Assert.Contains("GATEWAY", _cli.Out, StringComparison.Ordinal);
        Assert.Contains("100 rpm", _cli.Out, StringComparison.Ordinal);

        // Update: 0 removes a limit; --no-budget the budget.
        _server.On("PATCH", "/v1/keys/key-9", CannedResponse.Json((ApiKeyDto)created, ShoalJsonContext.Default.ApiKeyDto));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("keys", "update", "key-9", "--tpm", "0", "--no-budget"));
        var update = JsonSerializer.Deserialize(_server.Requests.Last().Body, ShoalJsonContext.Default.UpdateGatewaySettingsRequest)!;
        Assert.Equal((new GatewayLimits { TokensPerMinute = 0 }, (BudgetSpec?)null, true), (update.Limits, update.Budget, update.RemoveBudget));
        var project = new ProjectDto { Name = "team-a", Limits = new GatewayLimits { RequestsPerMinute = 1000 } };
        _server.On("PATCH", "/v1/projects/team-a", CannedResponse.Json(project, ShoalJsonContext.Default.ProjectDto));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("projects", "update", "team-a", "--rpm", "1000", "--budget", "500"));
        update = JsonSerializer.Deserialize(_server.Requests.Last().Body, ShoalJsonContext.Default.UpdateGatewaySettingsRequest)!;
        Assert.Equal((new GatewayLimits { RequestsPerMinute = 1000 }, new BudgetSpec { AmountUsd = 500, Period = BudgetPeriods.Month }), (update.Limits, update.Budget));
        Assert.Contains("project team-a: 1000 rpm", _cli.Out, StringComparison.Ordinal);

        // Bad input: clear errors, nothing sent.
        var before = _server.Requests.Count;
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("keys", "update", "key-9"));
        Assert.Contains("nothing to change", _cli.Err, StringComparison.Ordinal);
        Assert.NotEqual(ExitCodes.Success, await _cli.RunAsync("keys", "create", "x", "--role", "endpoint", "--rpm", "0"));
        Assert.Contains("--rpm must be a whole number from 1", _cli.Err, StringComparison.Ordinal);
        Assert.NotEqual(ExitCodes.Success, await _cli.RunAsync("keys", "update", "key-9", "--budget-period", "year"));
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("keys", "update", "key-9", "--budget-period", "day"));
        Assert.Contains("--budget-period needs --budget", _cli.Err, StringComparison.Ordinal);
        Assert.Equal(before, _server.Requests.Count);
    }
}
