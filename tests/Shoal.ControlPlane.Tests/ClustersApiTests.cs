using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Tests;

public sealed class ClustersApiTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<HttpResponseMessage> CreateAsync(CreateClusterRequest request) =>
        _server.Http.PostAsJsonAsync("/v1/clusters", request, ShoalJsonContext.Default.CreateClusterRequest);

    private static CreateClusterRequest Valid(string name = "demo") => new() { Name = name, Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 2 };

    private async Task<ClusterDto[]> ListAsync() =>
        (await _server.Http.GetFromJsonAsync("/v1/clusters", ShoalJsonContext.Default.ClusterDtoArray))!;

    private static async Task<ErrorBody> ErrorOf(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse);
        Assert.NotNull(error);
        Assert.Equal((int)response.StatusCode, error.Error.Status);
        return error.Error;
    }

    [Fact]
    public async Task Create_returns_the_cluster_and_status_shows_pending_replicas_with_a_reason()
    {
        var response = await CreateAsync(Valid());
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var dto = await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto);
        Assert.Equal("demo", dto!.Name);
        Assert.Equal(2, dto.Replicas);
        Assert.Equal(1, dto.GpuCount);
        Assert.EndsWith("/c/demo", dto.Endpoint, StringComparison.Ordinal);

        var status = await Eventually.GetAsync(
            () => _server.Http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto),
            s => s!.Replicas.Length == 2 && s.Replicas.All(r => r.Reason is not null), what: "two pending replicas");
        Assert.All(status!.Replicas, r =>
        {
            Assert.Equal(ReplicaState.Pending, r.State);
            Assert.Null(r.Node);
            Assert.Equal("no ready node with rtx-4090 GPUs", r.Reason);
        });
    }

    [Theory]
    [InlineData("Bad_Name", "shoal/sim", "rtx-4090", 1, "name")]
    [InlineData("-demo", "shoal/sim", "rtx-4090", 1, "DNS label")]
    [InlineData("demo", "shoal/sim", "rtx-9999", 1, "unknown gpu type")]
    [InlineData("demo", "shoal/sim", "rtx-4090", -1, "replicas must be between 0 and 1000")]
    [InlineData("demo", "shoal/sim", "rtx-4090", 1001, "replicas must be between 0 and 1000")]
    [InlineData("demo", null, "rtx-4090", 1, "image is required")]
    [InlineData("demo", "UPPER/Case:tag", "rtx-4090", 1, "not a valid image reference")]
    [InlineData(null, "shoal/sim", "rtx-4090", 1, "name is required")]
    public async Task Invalid_specs_are_rejected_with_400_and_nothing_is_stored(string? name, string? image, string gpu, int replicas, string expected)
    {
        var response = await CreateAsync(new CreateClusterRequest { Name = name, Image = image, Gpu = gpu, Replicas = replicas });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal(ErrorCodes.InvalidArgument, error.Code);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Empty(await ListAsync());
    }

    [Fact]
    public async Task A_price_is_shown_and_a_bad_one_is_400_with_every_problem()
    {
        var price = new ClusterPrice { InputPerMillion = 0.15m, PerGpuSecond = 0.0004m };
        var created = await (await CreateAsync(Valid() with { Price = price })).Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto);
        Assert.Equal(price, created!.Price);
        Assert.Equal(price, (await ListAsync()).Single().Price);

        var bad = await CreateAsync(Valid("other") with { Price = new ClusterPrice { OutputPerMillion = -1, PerGpuSecond = 20_000 } });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        var error = await ErrorOf(bad);
        Assert.Contains("price.outputPerMillion must be between 0 and 10000 USD, got -1", error.Message, StringComparison.Ordinal);
        Assert.Contains("price.perGpuSecond must be between 0 and 10000 USD, got 20000", error.Message, StringComparison.Ordinal);
        Assert.Single(await ListAsync());
    }

    [Fact]
    public async Task Duplicate_name_is_409_and_the_first_cluster_is_unchanged()
    {
        Assert.Equal(HttpStatusCode.Created, (await CreateAsync(Valid())).StatusCode);
        var response = await CreateAsync(Valid() with { Image = "other/image", Replicas = 5 });
        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal(ErrorCodes.AlreadyExists, error.Code);
        var list = await ListAsync();
        var only = Assert.Single(list);
        Assert.Equal("shoal/sim", only.Image);
        Assert.Equal(2, only.Replicas);
    }

    [Fact]
    public async Task Malformed_json_is_400_with_the_error_shape()
    {
        using var content = new StringContent("{\"name\": \"demo\", ", Encoding.UTF8, "application/json");
        var response = await _server.Http.PostAsync("/v1/clusters", content);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal(ErrorCodes.InvalidArgument, error.Code);
        Assert.Empty(await ListAsync());
    }

    [Fact]
    public async Task Unknown_cluster_is_404_for_get_status_scale_and_delete()
    {
        foreach (var response in new[]
        {
            await _server.Http.GetAsync("/v1/clusters/nope"),
            await _server.Http.GetAsync("/v1/clusters/nope/status"),
            await _server.Http.PatchAsJsonAsync("/v1/clusters/nope", new UpdateClusterRequest { Replicas = 1 }, ShoalJsonContext.Default.UpdateClusterRequest),
            await _server.Http.DeleteAsync("/v1/clusters/nope"),
        })
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal(ErrorCodes.NotFound, (await ErrorOf(response)).Code);
        }
    }

    [Fact]
    public async Task Scale_changes_the_replica_count_and_rejects_out_of_range()
    {
        await CreateAsync(Valid());
        var ok = await _server.Http.PatchAsJsonAsync("/v1/clusters/demo", new UpdateClusterRequest { Replicas = 3 }, ShoalJsonContext.Default.UpdateClusterRequest);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal(3, (await ok.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto))!.Replicas);

        var bad = await _server.Http.PatchAsJsonAsync("/v1/clusters/demo", new UpdateClusterRequest { Replicas = 1001 }, ShoalJsonContext.Default.UpdateClusterRequest);
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal(3, (await ListAsync()).Single().Replicas);

        var status = await Eventually.GetAsync(
            () => _server.Http.GetFromJsonAsync("/v1/clusters/demo/status", ShoalJsonContext.Default.ClusterStatusDto),
            s => s!.Replicas.Length == 3, what: "three replicas");
        Assert.Equal(3, status!.Replicas.Length);
    }

    [Fact]
    public async Task Delete_removes_the_cluster()
    {
        await CreateAsync(Valid());
        Assert.Equal(HttpStatusCode.NoContent, (await _server.Http.DeleteAsync("/v1/clusters/demo")).StatusCode);
        Assert.Empty(await ListAsync());
        Assert.Equal(HttpStatusCode.NotFound, (await _server.Http.GetAsync("/v1/clusters/demo")).StatusCode);
    }

    [Fact]
    public async Task OpenApi_document_lists_the_cluster_endpoints()
    {
        var json = await _server.Http.GetStringAsync("/openapi/v1.json");
        using var doc = JsonDocument.Parse(json);
        var paths = doc.RootElement.GetProperty("paths");
        Assert.True(paths.TryGetProperty("/v1/clusters", out _));
        Assert.True(paths.TryGetProperty("/v1/clusters/{name}/status", out _));
        Assert.True(paths.TryGetProperty("/v1/nodes", out _));
    }

    [Fact]
    public async Task Token_request_out_of_range_is_400()
    {
        var response = await _server.Http.PostAsJsonAsync("/v1/tokens", new CreateTokenRequest { Uses = 0 }, ShoalJsonContext.Default.CreateTokenRequest);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("uses", (await ErrorOf(response)).Message, StringComparison.Ordinal);
    }
}
