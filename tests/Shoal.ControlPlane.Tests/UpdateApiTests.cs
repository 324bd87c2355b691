using System.Net;
using System.Net.Http.Json;
using Shoal.Contracts;

namespace Shoal.ControlPlane.Tests;

/// <summary><c>PATCH /v1/clusters/{name}</c> for updates, and <c>POST /v1/nodes/{id}/cordon|uncordon|drain</c>, over real HTTP.</summary>
public sealed class UpdateApiTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<HttpResponseMessage> PatchAsync(UpdateClusterRequest request, string name = "demo") =>
        _server.Http.PatchAsJsonAsync($"/v1/clusters/{name}", request, ShoalJsonContext.Default.UpdateClusterRequest);

    [Fact]
    public async Task An_image_change_starts_a_rollout_shown_on_the_cluster_and_bad_updates_are_400_with_the_reason()
    {
        (await _server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 2 },
            ShoalJsonContext.Default.CreateClusterRequest)).EnsureSuccessStatusCode();

        var response = await PatchAsync(new UpdateClusterRequest { Image = "shoal/sim:2", Env = new() { ["A"] = "1" }, DrainTimeoutSeconds = 12 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var dto = (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto))!;
        Assert.Equal(2, dto.Generation);
        Assert.Equal("shoal/sim:2", dto.Image);
        Assert.Equal(12, dto.DrainTimeoutSeconds);
        Assert.Equal(120, dto.ProgressDeadlineSeconds);
        Assert.Equal(RolloutStates.Progressing, dto.Rollout!.State);
        Assert.Equal("image shoal/sim → shoal/sim:2, env +A", dto.Rollout.Reason);

        var events = (await _server.Http.GetFromJsonAsync("/v1/clusters/demo/events", ShoalJsonContext.Default.ClusterEventDtoArray))!;
        Assert.Contains(events, e => e.Type == ClusterEventTypes.UpdateStarted && e.Message.StartsWith("update to generation 2 started", StringComparison.Ordinal));

        foreach (var (request, expected) in new (UpdateClusterRequest, string)[]
        {
            (new UpdateClusterRequest(), "nothing to change"),
            (new UpdateClusterRequest { Image = "UPPER/case" }, "is not a valid image reference"),
            (new UpdateClusterRequest { UnsetEnv = ["1BAD"] }, "unsetEnv name '1BAD' is invalid"),
            (new UpdateClusterRequest { Health = new HealthCheckSpec { Path = "health" } }, "health.path must be an absolute path"),
            (new UpdateClusterRequest { ProgressDeadlineSeconds = 1 }, "progressDeadlineSeconds must be between 10 and 86400"),
        })
        {
            var bad = await PatchAsync(request);
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            var error = (await bad.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error;
            Assert.Equal(ErrorCodes.InvalidArgument, error.Code);
            Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        }
        Assert.Equal(HttpStatusCode.NotFound, (await PatchAsync(new UpdateClusterRequest { Replicas = 1 }, "ghost")).StatusCode);
        Assert.Equal(2, (await _server.Http.GetFromJsonAsync("/v1/clusters/demo", ShoalJsonContext.Default.ClusterDto))!.Generation);
    }

    [Fact]
    public async Task Cordon_and_drain_of_an_unknown_node_are_404()
    {
        foreach (var verb in (string[])["cordon", "uncordon", "drain"])
        {
            var response = await _server.Http.PostAsync($"/v1/nodes/ghost/{verb}", null);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("node 'ghost' not found", (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ErrorResponse))!.Error.Message);
        }
    }
}
