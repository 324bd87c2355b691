using System.Net;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Shoal.Contracts;
using Shoal.ControlPlane.Identity;
using Shoal.Core.Gateway;
using Shoal.Edge;
using Shoal.Edge.Gateway;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// The gateway's settings of endpoint keys and projects (issue 16): set on create, changed with PATCH
/// (0 removes a limit, removeBudget the budget), checked with clear errors, shown in listings, kept
/// across a restart, and pushed to a standalone edge (key grants and project grants) and to the
/// in-process edge.
/// </summary>
public sealed class GatewaySettingsApiTests
{
    [Fact]
    public async Task Limits_and_budgets_are_set_changed_cleared_validated_and_survive_a_restart()
    {
        var dir = new TempDirectory("shoal-gw");
        try
        {
            await using (var server = await TestServer.StartAsync(configure: o => o.DataDir = dir.Path))
            {
                var http = server.Http;
                var created = await http.PostAsJsonAsync("/v1/projects", new CreateProjectRequest
                {
                    Name = "alpha", Limits = new GatewayLimits { RequestsPerMinute = 600 }, Budget = new BudgetSpec { AmountUsd = 100, Period = BudgetPeriods.Month },
                }, ShoalJsonContext.Default.CreateProjectRequest);
                Assert.Equal(HttpStatusCode.Created, created.StatusCode);
                var key = await http.PostAsJsonAsync("/v1/keys", new CreateApiKeyRequest
                {
                    Name = "app", Role = ApiKeyRoles.Endpoint, Project = "alpha",
                    Limits = new GatewayLimits { RequestsPerMinute = 100, TokensPerMinute = 50_000, MaxConcurrent = 4 }, Budget = new BudgetSpec { AmountUsd = 0.01m, Period = BudgetPeriods.Day },
                }, ShoalJsonContext.Default.CreateApiKeyRequest);
                Assert.Equal(HttpStatusCode.Created, key.StatusCode);
                var dto = (await key.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyCreatedDto))!;
                Assert.Equal(new GatewayLimits { RequestsPerMinute = 100, TokensPerMinute = 50_000, MaxConcurrent = 4 }, dto.Limits);
                Assert.Equal(0.01m, dto.Budget!.AmountUsd);

                // The grant edges get carries the key's id, limits and budget; the project's grant its own.
                var directory = server.Server.Services.GetRequiredService<ApiKeyDirectory>();
                var grant = directory.EndpointKeys.Values.Single(g => g.KeyId == dto.Id);
                Assert.Equal(dto.Limits, grant.Limits);
                Assert.Equal(dto.Budget, grant.Budget);
                Assert.Equal(600, directory.Projects["alpha"].Limits!.RequestsPerMinute);

                // Clear errors; nothing changes.
                await AssertBadRequestAsync(http.PostAsJsonAsync("/v1/keys", new CreateApiKeyRequest
                {
                    Name = "bad", Role = ApiKeyRoles.Endpoint, Project = "alpha", Limits = new GatewayLimits { RequestsPerMinute = 0, MaxConcurrent = -1 },
                    Budget = new BudgetSpec { AmountUsd = 0, Period = "year" },
                }, ShoalJsonContext.Default.CreateApiKeyRequest), "limits.requestsPerMinute must be a positive integer", "limits.maxConcurrent", "budget.amountUsd", "budget.period must be one of day, week, month");
                await AssertBadRequestAsync(http.PostAsJsonAsync("/v1/keys", new CreateApiKeyRequest
                {
                    Name = "bad", Role = ApiKeyRoles.Member, Project = "alpha", Limits = new GatewayLimits { RequestsPerMinute = 5 },
                }, ShoalJsonContext.Default.CreateApiKeyRequest), "endpoint keys only");
                await AssertBadRequestAsync(Patch(http, $"/v1/keys/{dto.Id}", new UpdateGatewaySettingsRequest()), "nothing to change");
                await AssertBadRequestAsync(Patch(http, $"/v1/keys/{dto.Id}", new UpdateGatewaySettingsRequest { Limits = new GatewayLimits { TokensPerMinute = -5 } }), "limits.tokensPerMinute must be 0 (removes it) or a positive integer");
                await AssertBadRequestAsync(Patch(http, $"/v1/keys/{dto.Id}", new UpdateGatewaySettingsRequest { Budget = new BudgetSpec { AmountUsd = 1 }, RemoveBudget = true }), "not both");
                Assert.Equal(HttpStatusCode.NotFound, (await Patch(http, "/v1/keys/key-nope", new UpdateGatewaySettingsRequest { RemoveBudget = true })).StatusCode);
                Assert.Equal(HttpStatusCode.NotFound, (await Patch(http, "/v1/projects/nope", new UpdateGatewaySettingsRequest { RemoveBudget = true })).StatusCode);
                var member = (await http.GetFromJsonAsync("/v1/keys", ShoalJsonContext.Default.ApiKeyDtoArray))!.First(k => k.Role == ApiKeyRoles.Operator);
                await AssertBadRequestAsync(Patch(http, $"/v1/keys/{member.Id}", new UpdateGatewaySettingsRequest { RemoveBudget = true }), "endpoint keys only");

                // A change: 0 removes a limit, others stay; removeBudget removes the budget.
                var changed = await Patch(http, $"/v1/keys/{dto.Id}", new UpdateGatewaySettingsRequest { Limits = new GatewayLimits { TokensPerMinute = 0, MaxConcurrent = 8 }, RemoveBudget = true });
                Assert.Equal(HttpStatusCode.OK, changed.StatusCode);
                var after = (await changed.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyDto))!;
                Assert.Equal(new GatewayLimits { RequestsPerMinute = 100, MaxConcurrent = 8 }, after.Limits);
                Assert.Null(after.Budget);
                Assert.Equal(after.Limits, directory.EndpointKeys.Values.Single(g => g.KeyId == dto.Id).Limits);
                var project = await Patch(http, "/v1/projects/alpha", new UpdateGatewaySettingsRequest { Limits = new GatewayLimits { RequestsPerMinute = 0, TokensPerMinute = 9000 } });
                Assert.Equal(HttpStatusCode.OK, project.StatusCode);
                Assert.Equal(new GatewayLimits { TokensPerMinute = 9000 }, (await project.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ProjectDto))!.Limits);
                var listed = (await http.GetFromJsonAsync("/v1/keys", ShoalJsonContext.Default.ApiKeyDtoArray))!.Single(k => k.Id == dto.Id);
                Assert.Equal(after.Limits, listed.Limits);
            }

            // A restarted server has them from the store.
            await using (var again = await TestServer.StartAsync(configure: o => o.DataDir = dir.Path))
            {
                var keys = (await again.Http.GetFromJsonAsync("/v1/keys", ShoalJsonContext.Default.ApiKeyDtoArray))!;
                Assert.Equal(new GatewayLimits { RequestsPerMinute = 100, MaxConcurrent = 8 }, keys.Single(k => k.Name == "app").Limits);
                var projects = (await again.Http.GetFromJsonAsync("/v1/projects", ShoalJsonContext.Default.ProjectDtoArray))!;
                var alpha = projects.Single(p => p.Name == "alpha");
                Assert.Equal(new GatewayLimits { TokensPerMinute = 9000 }, alpha.Limits);
                Assert.Equal(new BudgetSpec { AmountUsd = 100, Period = BudgetPeriods.Month }, alpha.Budget);
                // The in-process edge reads the same project grants.
                var edgeGrants = again.Server.EdgeServices!.GetRequiredService<IProjectGrantSource>();
                Assert.Equal(9000, edgeGrants.Projects["alpha"].Limits!.TokensPerMinute);
            }
        }
        finally
        {
            dir.Dispose();
        }
    }

    [Fact]
    public async Task A_standalone_edge_gets_key_and_project_grants_on_connect_and_on_change()
    {
        await using var server = await TestServer.StartAsync(configure: o => o.NoEdge = true);
        (await server.Http.PostAsJsonAsync("/v1/projects", new CreateProjectRequest { Name = "alpha", Limits = new GatewayLimits { MaxConcurrent = 3 } },
            ShoalJsonContext.Default.CreateProjectRequest)).EnsureSuccessStatusCode();
        var created = await server.Http.PostAsJsonAsync("/v1/keys", new CreateApiKeyRequest
        {
            Name = "app", Role = ApiKeyRoles.Endpoint, Project = "alpha", Limits = new GatewayLimits { RequestsPerMinute = 7 },
        }, ShoalJsonContext.Default.CreateApiKeyRequest);
        var keyId = (await created.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyCreatedDto))!.Id;
        await using var edge = await EdgeServer.StartAsync(new EdgeServerOptions
        {
            Server = server.Server.ApiAddress.ToString(),
            Key = File.ReadAllText(server.Server.EdgeKeyFile!),
            Edge = new EdgeOptions { Listen = "127.0.0.1:0" },
            LogLevel = LogLevel.Warning,
        }, logging: l => l.SetMinimumLevel(LogLevel.Warning));
        var keys = edge.Services.GetRequiredService<Shoal.Core.Access.IEndpointKeySource>();
        var projects = edge.Services.GetRequiredService<IProjectGrantSource>();
        await Eventually.UntilAsync(() => keys.EndpointKeys.Values.Any(g => g.KeyId == keyId && g.Limits?.RequestsPerMinute == 7), what: "the key's grant with its limits");
        await Eventually.UntilAsync(() => projects.Projects.TryGetValue("alpha", out var p) && p.Limits?.MaxConcurrent == 3, what: "the project's grant");

        (await Patch(server.Http, "/v1/projects/alpha", new UpdateGatewaySettingsRequest { Budget = new BudgetSpec { AmountUsd = 2, Period = BudgetPeriods.Week } })).EnsureSuccessStatusCode();
        (await Patch(server.Http, $"/v1/keys/{keyId}", new UpdateGatewaySettingsRequest { Limits = new GatewayLimits { RequestsPerMinute = 0, TokensPerMinute = 500 } })).EnsureSuccessStatusCode();
        await Eventually.UntilAsync(() => projects.Projects["alpha"].Budget?.AmountUsd == 2, what: "the project's new budget");
        await Eventually.UntilAsync(() => keys.EndpointKeys.Values.Any(g => g.KeyId == keyId && g.Limits == new GatewayLimits { TokensPerMinute = 500 }), what: "the key's new limits");
        (await Patch(server.Http, "/v1/projects/alpha", new UpdateGatewaySettingsRequest { Limits = new GatewayLimits { MaxConcurrent = 0 }, RemoveBudget = true })).EnsureSuccessStatusCode();
        await Eventually.UntilAsync(() => !projects.Projects.ContainsKey("alpha"), what: "a project without limits or budget leaves the grants");
    }

    private static Task<HttpResponseMessage> Patch(HttpClient http, string path, UpdateGatewaySettingsRequest body) =>
        http.PatchAsJsonAsync(path, body, ShoalJsonContext.Default.UpdateGatewaySettingsRequest);

    private static async Task AssertBadRequestAsync(Task<HttpResponseMessage> call, params string[] parts)
    {
        using var response = await call;
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"expected 400, got {(int)response.StatusCode} {text}");
        foreach (var part in parts) Assert.Contains(part, text, StringComparison.Ordinal);
    }
}
