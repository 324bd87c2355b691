using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Core.Model;
using Shoal.Store;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Every route of the API's route table × every kind of credential: what the spec below allows
/// succeeds; everything else is 401 (no usable key) or 403 (role, project, endpoint key) with the
/// API's error JSON, and leaves the store exactly as it was. A route missing from the spec fails.
/// </summary>
public sealed class AuthorizationMatrixTests
{
    /// <summary>How a route is scoped: to the installation (operator), to one cluster's or key's project, or a listing filtered by project.</summary>
    private enum Scope
    {
        Installation,
        Project,
        Listing,
    }

    /// <summary>What the route needs: the least role, its scope, what success answers, and how to build the call.</summary>
    private sealed record RouteSpec(string Method, string Pattern, string MinRole, Scope Scope, HttpStatusCode Success, Func<Targets, (string Path, object? Body)> Build);

    /// <summary>Fresh objects a call acts on (made with the operator key before each call).</summary>
    private sealed record Targets(string Cluster, string Node, string Token, string EndpointKeyId);

    // The spec, written from the role list rather than from the code: operator = installation;
    // owner ⊇ admin (clusters incl. delete, endpoint keys) ⊇ member (deploy, scale, update, logs) ⊇ viewer (read).
    private static readonly RouteSpec[] s_spec =
    [
        new("POST", "/v1/clusters/", ApiKeyRoles.Member, Scope.Project, HttpStatusCode.Created,
            _ => ("/v1/clusters", new CreateClusterRequest { Name = "new-" + Guid.NewGuid().ToString("N")[..8], Project = "alpha", Image = "shoal/sim", Gpu = "rtx-4090" })),
        new("GET", "/v1/clusters/", ApiKeyRoles.Viewer, Scope.Listing, HttpStatusCode.OK, _ => ("/v1/clusters", null)),
        new("GET", "/v1/clusters/{name}", ApiKeyRoles.Viewer, Scope.Project, HttpStatusCode.OK, t => ($"/v1/clusters/{t.Cluster}", null)),
        new("PATCH", "/v1/clusters/{name}", ApiKeyRoles.Member, Scope.Project, HttpStatusCode.OK, t => ($"/v1/clusters/{t.Cluster}", new UpdateClusterRequest { Replicas = 2 })),
        new("DELETE", "/v1/clusters/{name}", ApiKeyRoles.Admin, Scope.Project, HttpStatusCode.NoContent, t => ($"/v1/clusters/{t.Cluster}", null)),
        new("GET", "/v1/clusters/{name}/status", ApiKeyRoles.Viewer, Scope.Project, HttpStatusCode.OK, t => ($"/v1/clusters/{t.Cluster}/status", null)),
        new("GET", "/v1/clusters/{name}/events", ApiKeyRoles.Viewer, Scope.Project, HttpStatusCode.OK, t => ($"/v1/clusters/{t.Cluster}/events", null)),
        new("GET", "/v1/clusters/{name}/logs", ApiKeyRoles.Member, Scope.Project, HttpStatusCode.OK, t => ($"/v1/clusters/{t.Cluster}/logs", null)),
        new("GET", "/v1/nodes/", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.OK, _ => ("/v1/nodes", null)),
        new("GET", "/v1/nodes/{id}", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.OK, t => ($"/v1/nodes/{t.Node}", null)),
        new("DELETE", "/v1/nodes/{id}", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.NoContent, t => ($"/v1/nodes/{t.Node}", null)),
        new("POST", "/v1/nodes/{id}/cordon", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.OK, t => ($"/v1/nodes/{t.Node}/cordon", null)),
        new("POST", "/v1/nodes/{id}/uncordon", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.OK, t => ($"/v1/nodes/{t.Node}/uncordon", null)),
        new("POST", "/v1/nodes/{id}/approve", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.OK, t => ($"/v1/nodes/{t.Node}/approve", null)),
        new("POST", "/v1/nodes/{id}/drain", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.OK, t => ($"/v1/nodes/{t.Node}/drain", null)),
        new("POST", "/v1/tokens/", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.Created, _ => ("/v1/tokens", new CreateTokenRequest { Uses = 1 })),
        new("GET", "/v1/tokens/", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.OK, _ => ("/v1/tokens", null)),
        new("DELETE", "/v1/tokens/{id}", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.NoContent, t => ($"/v1/tokens/{t.Token}", null)),
        new("GET", "/v1/gpu-types", ApiKeyRoles.Viewer, Scope.Listing, HttpStatusCode.OK, _ => ("/v1/gpu-types", null)),
        new("POST", "/v1/keys/", ApiKeyRoles.Admin, Scope.Project, HttpStatusCode.Created,
            _ => ("/v1/keys", new CreateApiKeyRequest { Name = "made", Role = ApiKeyRoles.Endpoint, Project = "alpha" })),
        new("GET", "/v1/keys/", ApiKeyRoles.Admin, Scope.Listing, HttpStatusCode.OK, _ => ("/v1/keys", null)),
        new("DELETE", "/v1/keys/{id}", ApiKeyRoles.Admin, Scope.Project, HttpStatusCode.NoContent, t => ($"/v1/keys/{t.EndpointKeyId}", null)),
        new("PATCH", "/v1/keys/{id}", ApiKeyRoles.Admin, Scope.Project, HttpStatusCode.OK,
            t => ($"/v1/keys/{t.EndpointKeyId}", new UpdateGatewaySettingsRequest { Limits = new GatewayLimits { RequestsPerMinute = 10 } })),
        new("PATCH", "/v1/projects/{name}", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.OK,
            _ => ("/v1/projects/alpha", new UpdateGatewaySettingsRequest { Limits = new GatewayLimits { TokensPerMinute = 1000 }, Budget = new BudgetSpec { AmountUsd = 5 } })),
        new("POST", "/v1/projects/", ApiKeyRoles.Operator, Scope.Installation, HttpStatusCode.Created,
            _ => ("/v1/projects", new CreateProjectRequest { Name = "p-" + Guid.NewGuid().ToString("N")[..8] })),
        new("GET", "/v1/projects/", ApiKeyRoles.Viewer, Scope.Listing, HttpStatusCode.OK, _ => ("/v1/projects", null)),
        new("GET", "/v1/whoami", ApiKeyRoles.Viewer, Scope.Listing, HttpStatusCode.OK, _ => ("/v1/whoami", null)),
        new("GET", "/v1/usage", ApiKeyRoles.Viewer, Scope.Listing, HttpStatusCode.OK, _ => ("/v1/usage?by=cluster&since=1h", null)),
        new("GET", "/v1/usage/records", ApiKeyRoles.Viewer, Scope.Listing, HttpStatusCode.OK, _ => ("/v1/usage/records?since=1h", null)),
        new("GET", "/openapi/{documentName}.json", ApiKeyRoles.Viewer, Scope.Listing, HttpStatusCode.OK, _ => ("/openapi/v1.json", null)),
    ];

    /// <summary>The only routes without a key: liveness, and the agent and edge channels (their own credentials, refused below).</summary>
    private static readonly string[] s_ownAuthentication = ["/healthz", AgentProtocol.ConnectPath, EdgeProtocol.ConnectPath];

    [Fact]
    public async Task Every_route_refuses_every_credential_its_spec_does_not_allow_and_changes_nothing_when_it_refuses()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await TestServer.StartAsync(time);
        var store = server.Server.Services.GetRequiredService<IShoalStore>();

        // Every route in the table is in the spec or in the short list of routes with their own authentication.
        var routes = server.Server.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? ["*"]).Select(m => (Method: m, Pattern: e.RoutePattern.RawText!, Endpoint: e)))
            .ToList();
        foreach (var (method, pattern, endpoint) in routes)
        {
            var anonymous = endpoint.Metadata.GetMetadata<IAllowAnonymous>() is not null;
            if (anonymous)
            {
                Assert.Contains(pattern, s_ownAuthentication);
                continue;
            }
            Assert.True(s_spec.Any(s => s.Method == method && s.Pattern == pattern), $"route {method} {pattern} has no entry in the authorization spec");
            Assert.Contains(endpoint.Metadata.GetOrderedMetadata<IAuthorizeData>(), a => a.Policy?.StartsWith("shoal:", StringComparison.Ordinal) == true);
        }
        Assert.All(s_spec, s => Assert.Contains(routes, r => r.Method == s.Method && r.Pattern == s.Pattern));

        // Two projects; a key of each project role in alpha, an owner in beta; unusable keys of each kind.
        foreach (var p in new[] { "alpha", "beta" })
        {
            (await server.Http.PostAsJsonAsync("/v1/projects", new CreateProjectRequest { Name = p }, ShoalJsonContext.Default.CreateProjectRequest)).EnsureSuccessStatusCode();
        }
        var keys = new Dictionary<string, string>(StringComparer.Ordinal) { [ApiKeyRoles.Operator] = server.OperatorKey };
        foreach (var role in new[] { ApiKeyRoles.Owner, ApiKeyRoles.Admin, ApiKeyRoles.Member, ApiKeyRoles.Viewer, ApiKeyRoles.Endpoint })
        {
            keys[role] = await server.CreateKeyAsync(role, "alpha", role);
        }
        var otherProject = await server.CreateKeyAsync(ApiKeyRoles.Owner, "beta", "beta-owner");
        var expired = await server.CreateKeyAsync(ApiKeyRoles.Owner, "alpha", "short-lived", ttlSeconds: 60);
        var revoked = await server.CreateKeyAsync(ApiKeyRoles.Owner, "alpha", "revoked");
        var revokedId = (await server.Http.GetFromJsonAsync("/v1/keys", ShoalJsonContext.Default.ApiKeyDtoArray))!.Single(k => k.Name == "revoked").Id;
        (await server.Http.DeleteAsync($"/v1/keys/{revokedId}")).EnsureSuccessStatusCode();
        time.Advance(TimeSpan.FromMinutes(2));

        var refusedOnly = new (string Name, string? Header, HttpStatusCode Status)[]
        {
            ("no key", null, HttpStatusCode.Unauthorized),
            ("malformed", "Basic b3BlcmF0b3I6aHVudGVy", HttpStatusCode.Unauthorized),
            ("wrong", "Bearer shoal_ak_" + new string('x', 43), HttpStatusCode.Unauthorized),
            ("expired", "Bearer " + expired, HttpStatusCode.Unauthorized),
            ("revoked", "Bearer " + revoked, HttpStatusCode.Unauthorized),
            ("endpoint key", "Bearer " + keys[ApiKeyRoles.Endpoint], HttpStatusCode.Forbidden),
        };
        var nodes = 0;
        using var http = new HttpClient { BaseAddress = server.Server.ApiAddress };

        async Task<Targets> FreshTargetsAsync(bool node)
        {
            var cluster = "c-" + Guid.NewGuid().ToString("N")[..10];
            (await server.Http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = cluster, Project = "alpha", Image = "shoal/sim", Gpu = "rtx-4090" },
                ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();
            var token = await server.Http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest(), ShoalJsonContext.Default.CreateTokenRequest);
            var tokenDto = (await token.Content.ReadFromJsonAsync(ShoalJsonContext.Default.TokenCreatedDto))!;
            var key = await server.Http.PostAsJsonAsync("/v1/keys", new CreateApiKeyRequest { Name = "target", Role = ApiKeyRoles.Endpoint, Project = "alpha" },
                ShoalJsonContext.Default.CreateApiKeyRequest);
            var keyDto = (await key.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ApiKeyCreatedDto))!;
            var nodeName = "none";
            if (node)
            {
                // A registered node that went away: every node route may act on it (rm needs it disconnected).
                nodeName = $"node-{++nodes}";
                var (agent, status) = await WireAgent.RegisterAsync(server.AgentUri, await server.CreateTokenAsync(), nodeName);
                Assert.Equal(101, status);
                await using (agent)
                {
                    await agent!.SendAsync(WireAgent.Hello(nodeName, ("rtx-3090", 1)));
                    await agent.ReceiveAsync<WelcomeMessage>();
                }
                await Eventually.GetAsync(() => server.Http.GetFromJsonAsync($"/v1/nodes/{nodeName}", ShoalJsonContext.Default.NodeDto),
                    n => n!.State == NodeState.Disconnected, what: "node disconnected");
            }
            return new Targets(cluster, nodeName, tokenDto.Id, keyDto.Id);
        }

        async Task<HttpResponseMessage> CallAsync(RouteSpec spec, Targets targets, string? header)
        {
            var (path, body) = spec.Build(targets);
            using var request = new HttpRequestMessage(new HttpMethod(spec.Method), path);
            if (header is not null) request.Headers.TryAddWithoutValidation("Authorization", header);
            if (body is not null) request.Content = new StringContent(JsonSerializer.Serialize(body, body.GetType(), ShoalJsonContext.Default), Encoding.UTF8, "application/json");
            return await http.SendAsync(request);
        }

        foreach (var spec in s_spec)
        {
            var targets = await FreshTargetsAsync(spec.Pattern.StartsWith("/v1/nodes/{id}", StringComparison.Ordinal));
            var cells = new List<(string Name, string? Header, HttpStatusCode Expected)>(refusedOnly);
            cells.Add(("another project's owner", "Bearer " + otherProject, spec.Scope == Scope.Listing ? spec.Success : HttpStatusCode.Forbidden));
            foreach (var (role, key) in keys.Where(k => k.Key != ApiKeyRoles.Endpoint))
            {
                cells.Add((role, "Bearer " + key, ApiKeyRoles.Rank(role) >= ApiKeyRoles.Rank(spec.MinRole) ? spec.Success : HttpStatusCode.Forbidden));
            }

            // Refused cells first, on a quiet store; then the allowed ones, each on fresh targets.
            var before = await StableSnapshotAsync(store);
            foreach (var (name, header, expected) in cells.Where(c => (int)c.Expected >= 400))
            {
                using var response = await CallAsync(spec, targets, header);
                var what = $"{spec.Method} {spec.Pattern} with {name}";
                Assert.True(expected == response.StatusCode, $"{what}: expected {(int)expected}, got {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                var error = await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse);
                Assert.Equal((int)expected, error!.Error.Status);
                Assert.Equal(expected == HttpStatusCode.Unauthorized ? ErrorCodes.Unauthorized : ErrorCodes.Forbidden, error.Error.Code);
                Assert.True(before == await SnapshotAsync(store), $"{what} changed the store");
            }
            foreach (var (name, header, expected) in cells.Where(c => (int)c.Expected < 400))
            {
                using var response = await CallAsync(spec, targets, header);
                Assert.True(expected == response.StatusCode,
                    $"{spec.Method} {spec.Pattern} with {name}: expected {(int)expected}, got {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                if (spec.Method != "GET") targets = await FreshTargetsAsync(spec.Pattern.StartsWith("/v1/nodes/{id}", StringComparison.Ordinal));
            }
        }

        // The channels with their own credentials refuse callers without them.
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(EdgeProtocol.ConnectPath)).StatusCode);
        var (_, agentStatus) = await WireAgent.ConnectAsync(server.AgentUri, _ => { });
        Assert.Equal(401, agentStatus);
    }

    [Fact]
    public async Task Project_keys_see_only_their_project_and_mutations_record_their_actor()
    {
        await using var server = await TestServer.StartAsync();
        (await server.Http.PostAsJsonAsync("/v1/projects", new CreateProjectRequest { Name = "alpha" }, ShoalJsonContext.Default.CreateProjectRequest)).EnsureSuccessStatusCode();
        var member = await server.CreateKeyAsync(ApiKeyRoles.Member, "alpha", "ci-deployer");
        using var alpha = server.Client(member);
        var created = await alpha.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "mine", Image = "shoal/sim", Gpu = "rtx-4090" }, ShoalJsonContext.Default.CreateClusterRequest);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal("alpha", (await created.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto))!.Project);
        (await server.Http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "theirs", Image = "shoal/sim", Gpu = "rtx-4090" }, ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();

        // A member lists only its project's clusters; the operator lists all.
        var seen = await alpha.GetFromJsonAsync("/v1/clusters", ShoalJsonContext.Default.ClusterDtoArray);
        Assert.Equal(["mine"], seen!.Select(c => c.Name).ToArray());
        Assert.Equal(2, (await server.Http.GetFromJsonAsync("/v1/clusters", ShoalJsonContext.Default.ClusterDtoArray))!.Length);
        // It may not create in another project either.
        var elsewhere = await alpha.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest { Name = "sneaky", Project = "default", Image = "shoal/sim", Gpu = "rtx-4090" }, ShoalJsonContext.Default.CreateClusterRequest);
        Assert.Equal(HttpStatusCode.Forbidden, elsewhere.StatusCode);

        // Its update and the creation name it in the events; the key itself never appears.
        (await alpha.PatchAsJsonAsync("/v1/clusters/mine", new UpdateClusterRequest { Replicas = 2 }, ShoalJsonContext.Default.UpdateClusterRequest)).EnsureSuccessStatusCode();
        var events = await alpha.GetFromJsonAsync("/v1/clusters/mine/events", ShoalJsonContext.Default.ClusterEventDtoArray);
        var keyId = (await alpha.GetFromJsonAsync("/v1/whoami", ShoalJsonContext.Default.WhoAmIDto))!.KeyId;
        Assert.Equal($"{keyId} (ci-deployer)", events!.Single(e => e.Type == ClusterEventTypes.Created).Actor);
        Assert.Equal($"{keyId} (ci-deployer)", events!.Single(e => e.Type == ClusterEventTypes.Scaled).Actor);
        Assert.DoesNotContain(member, JsonSerializer.Serialize(events, ShoalJsonContext.Default.ClusterEventDtoArray), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Management_calls_are_limited_per_key_with_headers_and_a_429_beyond()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 4, 12, 0, 10, TimeSpan.Zero));
        await using var server = await TestServer.StartAsync(time);
        var viewer = await server.CreateKeyAsync(ApiKeyRoles.Viewer, "default", "reader");
        using var client = server.Client(viewer);
        for (var i = 1; i <= 100; i++)
        {
            using var ok = await client.GetAsync("/v1/clusters");
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Equal("100", ok.Headers.GetValues(RateLimitHeaders.Limit).Single());
            Assert.Equal((100 - i).ToString(System.Globalization.CultureInfo.InvariantCulture), ok.Headers.GetValues(RateLimitHeaders.Remaining).Single());
            Assert.Equal("50", ok.Headers.GetValues(RateLimitHeaders.Reset).Single());
        }
        using (var limited = await client.GetAsync("/v1/clusters"))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
            Assert.Equal("50", limited.Headers.GetValues("Retry-After").Single());
            var error = await limited.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse);
            Assert.Equal(ErrorCodes.RateLimited, error!.Error.Code);
        }
        // The operator key is not limited and other keys have their own budget.
        using (var op = await server.Http.GetAsync("/v1/clusters"))
        {
            Assert.Equal(HttpStatusCode.OK, op.StatusCode);
            Assert.False(op.Headers.Contains(RateLimitHeaders.Limit));
        }
        // The next minute the key may call again.
        time.Advance(TimeSpan.FromSeconds(50));
        using var again = await client.GetAsync("/v1/clusters");
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal("99", again.Headers.GetValues(RateLimitHeaders.Remaining).Single());
    }

    [Fact]
    public async Task A_host_header_that_is_not_the_servers_is_refused()
    {
        await using var server = await TestServer.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/clusters");
        request.Headers.Host = "evil.example";
        using var response = await server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var local = new HttpRequestMessage(HttpMethod.Get, "/v1/clusters");
        local.Headers.Host = $"localhost:{server.Server.ApiAddress.Port}";
        Assert.Equal(HttpStatusCode.OK, (await server.Http.SendAsync(local)).StatusCode);
    }

    /// <summary>Everything a refused call could have changed, as text.</summary>
    private static async Task<string> SnapshotAsync(IShoalStore store)
    {
        var snapshot = await store.LoadAsync();
        var text = new StringBuilder();
        foreach (var c in snapshot.Clusters) text.Append(c.Id).Append(c.Name).Append(c.Spec.Replicas).Append(c.Generation).Append(c.UpdatedAt.ToUnixTimeMilliseconds()).Append('\n');
        foreach (var r in snapshot.Replicas) text.Append(r.Id).Append(r.NodeId).Append(r.State).Append('\n');
        foreach (var n in snapshot.Nodes) text.Append(n.Id).Append(n.Cordoned).Append(n.Draining).Append(n.State).Append('\n');
        foreach (var k in await store.ListApiKeysAsync()) text.Append(k.Id).Append(k.RevokedAt?.ToUnixTimeMilliseconds()).Append('\n');
        foreach (var t in await store.ListTokensAsync()) text.Append(t.Id).Append(t.Uses).Append(t.RevokedAt?.ToUnixTimeMilliseconds()).Append('\n');
        foreach (var p in await store.ListProjectsAsync()) text.Append(p.Name).Append('\n');
        text.Append(snapshot.LastEventSeq);
        return text.ToString();
    }

    /// <summary>
    /// A snapshot once background work (placing, starting, flushing) has settled: three reads 200 ms apart agree
    /// (a replica's process start can leave more than 100 ms between two of its states).
    /// </summary>
    private static async Task<string> StableSnapshotAsync(IShoalStore store)
    {
        var last = await SnapshotAsync(store);
        var same = 0;
        for (var i = 0; i < 50; i++)
        {
            await Task.Delay(200);
            var next = await SnapshotAsync(store);
            same = next == last ? same + 1 : 0;
            if (same == 2) return next;
            last = next;
        }
        throw new InvalidOperationException("the store kept changing on its own");
    }
}
