using System.Net;
using Shoal.Cli.Client;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Cli.Tests.Client;

public sealed class ShoalClientTests : IAsyncLifetime
{
    private FakeApiServer _server = null!;
    private ShoalClient _client = null!;

    public async Task InitializeAsync()
    {
        _server = await FakeApiServer.StartAsync();
        _client = new ShoalClient(new Uri(_server.Address));
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Typed_methods_hit_the_documented_routes()
    {
        _server
            .On("GET", "/v1/clusters", CannedResponse.Json([Samples.Cluster()], ShoalJsonContext.Default.ClusterDtoArray))
            .On("GET", "/v1/clusters/demo", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto))
            .On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Samples.Cluster(replicas: 5), ShoalJsonContext.Default.ClusterDto))
            .On("DELETE", "/v1/clusters/demo", CannedResponse.NoContent)
            .On("GET", "/v1/clusters/demo/status", CannedResponse.Json(Samples.Status(Samples.Cluster()), ShoalJsonContext.Default.ClusterStatusDto))
            .On("GET", "/v1/nodes", CannedResponse.Json([Samples.Node("a", null, "h100")], ShoalJsonContext.Default.NodeDtoArray))
            .On("GET", "/v1/gpu-types", CannedResponse.Json([new GpuTypeDto { Type = "h100", DisplayName = "H100", Total = 2, Free = 1 }], ShoalJsonContext.Default.GpuTypeDtoArray));

        Assert.Equal("demo", Assert.Single(await _client.ListClustersAsync()).Name);
        Assert.Equal("demo", (await _client.GetClusterAsync("demo")).Name);
        Assert.Equal(5, (await _client.UpdateClusterAsync("demo", new UpdateClusterRequest { Replicas = 5 })).Replicas);
        await _client.DeleteClusterAsync("demo");
        Assert.Equal("demo", (await _client.GetClusterStatusAsync("demo")).Cluster.Name);
        Assert.Equal(NodeState.Ready, Assert.Single(await _client.ListNodesAsync()).State);
        Assert.Equal(1, Assert.Single(await _client.ListGpuTypesAsync()).Free);

        Assert.Equal(
            ["GET /v1/clusters", "GET /v1/clusters/demo", "PATCH /v1/clusters/demo", "DELETE /v1/clusters/demo", "GET /v1/clusters/demo/status", "GET /v1/nodes", "GET /v1/gpu-types"],
            _server.Requests.Select(r => $"{r.Method} {r.Path}"));
        Assert.Equal("""{"replicas":5}""", _server.Requests.Single(r => r.Method == "PATCH").Body);
    }

    [Fact]
    public async Task Names_are_escaped_in_the_path()
    {
        await Assert.ThrowsAsync<ShoalApiException>(() => _client.GetClusterAsync("a/b"));
        Assert.Equal("/v1/clusters/a%2Fb", Assert.Single(_server.Requests).Path);
    }

    [Fact]
    public async Task An_error_body_becomes_an_api_exception_with_its_code_and_message()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Error(409, ErrorCodes.AlreadyExists, "cluster 'demo' already exists"));
        var ex = await Assert.ThrowsAsync<ShoalApiException>(() => _client.CreateClusterAsync(new CreateClusterRequest { Name = "demo" }));
        Assert.Equal(HttpStatusCode.Conflict, ex.Status);
        Assert.Equal(ErrorCodes.AlreadyExists, ex.Code);
        Assert.Equal("cluster 'demo' already exists", ex.Message);
        Assert.Equal(ExitCodes.Conflict, ex.ExitCode);
    }

    [Fact]
    public async Task A_non_api_error_body_gives_a_clear_message()
    {
        _server.On("GET", "/v1/nodes", new CannedResponse(502, "<html>Bad Gateway</html>", "text/html"));
        var ex = await Assert.ThrowsAsync<ShoalApiException>(() => _client.ListNodesAsync());
        Assert.Equal("http_502", ex.Code);
        Assert.Contains("502", ex.Message, StringComparison.Ordinal);
        Assert.Contains("<html>Bad Gateway</html>", ex.Message, StringComparison.Ordinal);
        Assert.Contains("/v1/nodes", ex.Message, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.Failure, ex.ExitCode);
    }

    [Fact]
    public async Task A_success_with_a_body_that_is_not_the_expected_json_is_reported()
    {
        _server.On("GET", "/v1/clusters", new CannedResponse(200, "hello", "text/plain"));
        var ex = await Assert.ThrowsAsync<ShoalApiException>(() => _client.ListClustersAsync());
        Assert.Contains("not the expected JSON", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connection_refused_is_reported_as_unreachable_with_the_address()
    {
        var port = FreePort.Next();
        using var client = new ShoalClient(new Uri($"http://127.0.0.1:{port}"));
        var ex = await Assert.ThrowsAsync<ShoalServerUnreachableException>(() => client.ListClustersAsync());
        Assert.Equal($"cannot reach the Shoal server at http://127.0.0.1:{port} (set SHOAL_ADDR or run `shoal dev`)", ex.Message);
    }
}
