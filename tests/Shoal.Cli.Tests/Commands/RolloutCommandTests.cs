using System.Text.Json;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;

namespace Shoal.Cli.Tests.Commands;

/// <summary><c>shoal update</c> and <c>shoal nodes cordon|uncordon|drain</c> against canned API JSON.</summary>
public sealed class RolloutCommandTests : IAsyncLifetime
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

    private static ClusterDto Rolling(long generation, string state, string? reason, int updated = 0, int outdated = 2, int draining = 0) =>
        Samples.Cluster() with
        {
            Generation = generation,
            Rollout = new RolloutDto { Generation = generation, State = state, Reason = reason, UpdatedReplicas = updated, OutdatedReplicas = outdated, DrainingReplicas = draining },
        };

    private static CannedResponse Status(ClusterDto cluster, params ReplicaDto[] replicas) =>
        CannedResponse.Json(Samples.Status(cluster, replicas), ShoalJsonContext.Default.ClusterStatusDto);

    [Fact]
    public async Task Update_sends_only_what_changes_and_says_a_rollout_started()
    {
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Rolling(4, RolloutStates.Progressing, "image shoal/sim → shoal/sim2, env +A -B"), ShoalJsonContext.Default.ClusterDto));

        var exit = await _cli.RunAsync("update", "demo", "--image", "shoal/sim2", "-e", "A=1", "--unset-env", "B", "--drain-timeout", "10s");

        Assert.Equal(ExitCodes.Success, exit);
        var body = JsonSerializer.Deserialize(Assert.Single(_server.Requests).Body, ShoalJsonContext.Default.UpdateClusterRequest)!;
        Assert.Equal("shoal/sim2", body.Image);
        Assert.Equal("1", body.Env!["A"]);
        Assert.Equal(["B"], body.UnsetEnv!);
        Assert.Equal(10, body.DrainTimeoutSeconds);
        Assert.Null(body.Replicas);
        Assert.Null(body.Health);
        Assert.Contains("updating demo to generation 4 (image shoal/sim → shoal/sim2, env +A -B): one replica at a time", _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Update_of_the_health_check_keeps_the_rest_of_it()
    {
        var current = Samples.Cluster() with { Health = new HealthCheckSpec { Path = "/health", IntervalMs = 2500, FailureThreshold = 5 } };
        _server
            .On("GET", "/v1/clusters/demo", CannedResponse.Json(current, ShoalJsonContext.Default.ClusterDto))
            .On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Rolling(4, RolloutStates.Progressing, "health check"), ShoalJsonContext.Default.ClusterDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("update", "demo", "--health-path", "/v1/models", "--initial-delay", "90s"));

        var patch = _server.Requests.Single(r => r.Method == "PATCH");
        var health = JsonSerializer.Deserialize(patch.Body, ShoalJsonContext.Default.UpdateClusterRequest)!.Health!;
        Assert.Equal(new HealthCheckSpec { Path = "/v1/models", IntervalMs = 2500, FailureThreshold = 5, InitialDelayMs = 90_000 }, health);
    }

    [Fact]
    public async Task Update_with_nothing_to_change_fails_without_calling_the_server()
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("update", "demo"));
        Assert.Contains("nothing to change", _cli.Err, StringComparison.Ordinal);
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("update", "demo", "--unset-env", "9X"));
        Assert.Contains("--unset-env name '9X' is not valid", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Update_wait_follows_the_rollout_to_its_end()
    {
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Rolling(4, RolloutStates.Progressing, "image a → b"), ShoalJsonContext.Default.ClusterDto));
        var polls = 0;
        _server.On("GET", "/v1/clusters/demo/status", _ => ++polls switch
        {
            1 => Status(Rolling(4, RolloutStates.Progressing, "image a → b", updated: 1, outdated: 1, draining: 1),
                Samples.Replica("r-1", ReplicaState.Draining, "generation 3 is replaced by generation 4"), Samples.Replica("r-2", ReplicaState.Ready), Samples.Replica("r-3", ReplicaState.Ready)),
            _ => Status(Rolling(4, RolloutStates.Complete, "image a → b", updated: 2, outdated: 0), Samples.Replica("r-3", ReplicaState.Ready), Samples.Replica("r-4", ReplicaState.Ready)),
        });

        var exit = await _cli.RunAsync("update", "demo", "--image", "b", "--wait");

        Assert.Equal(ExitCodes.Success, exit);
        Assert.Equal(2, polls);
        Assert.Contains("rolling out generation 4 (image a → b): 1 updated, 1 outdated, 1 draining", _cli.Out, StringComparison.Ordinal);
        Assert.Contains("demo is updated: generation 4, 2/2 replicas ready", _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Update_wait_exits_rolled_back_saying_why()
    {
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Rolling(4, RolloutStates.Progressing, "image a → broken"), ShoalJsonContext.Default.ClusterDto));
        const string why = "new replica demo-x on node-3 restarted 3 times (last: exited with code 2; restarting in 4 s)";
        _server.On("GET", "/v1/clusters/demo/status", _ =>
            Status(Rolling(5, RolloutStates.RolledBack, why, updated: 2, outdated: 0), Samples.Replica("r-1", ReplicaState.Ready), Samples.Replica("r-2", ReplicaState.Ready)));

        var exit = await _cli.RunAsync("update", "demo", "--image", "broken", "--wait");

        Assert.Equal(ExitCodes.RolledBack, exit);
        Assert.Contains($"the update of demo was rolled back: {why}", _cli.Err.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("cordon", "cordoned gpu-box-1: no new replicas go there; its 1 replica(s) stay")]
    [InlineData("uncordon", "uncordoned gpu-box-1: it takes new replicas again")]
    [InlineData("drain", "draining gpu-box-1: its 1 replica(s) move to other nodes")]
    public async Task Nodes_cordon_uncordon_and_drain_post_to_the_node(string action, string expected)
    {
        var node = Samples.Node("gpu-box-1", Samples.T0, "rtx-4090") with { Cordoned = action != "uncordon", Draining = action == "drain" };
        _server.On("POST", $"/v1/nodes/gpu-box-1/{action}", CannedResponse.Json(node, ShoalJsonContext.Default.NodeDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("nodes", action, "gpu-box-1"));

        Assert.Equal($"POST /v1/nodes/gpu-box-1/{action}", _server.Requests.Select(r => $"{r.Method} {r.Path}").Single());
        Assert.Contains(expected, _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Nodes_drain_wait_polls_until_the_node_is_empty_and_an_unknown_node_is_not_found()
    {
        var node = Samples.Node("gpu-box-1", Samples.T0, "rtx-4090") with { State = NodeState.Draining, Cordoned = true, Draining = true };
        _server.On("POST", "/v1/nodes/gpu-box-1/drain", CannedResponse.Json(node, ShoalJsonContext.Default.NodeDto));
        var polls = 0;
        _server.On("GET", "/v1/nodes/n-gpu-box-1", _ => CannedResponse.Json(++polls < 3 ? node : node with { Replicas = 0, Draining = false, State = NodeState.Cordoned }, ShoalJsonContext.Default.NodeDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("nodes", "drain", "gpu-box-1", "--wait"));
        Assert.Equal(3, polls);
        Assert.Contains("drained gpu-box-1: no replica left on it", _cli.Out, StringComparison.Ordinal);

        _server.On("POST", "/v1/nodes/ghost/cordon", CannedResponse.Error(404, ErrorCodes.NotFound, "node 'ghost' not found"));
        Assert.Equal(ExitCodes.NotFound, await _cli.RunAsync("nodes", "cordon", "ghost"));
        Assert.Contains("node 'ghost' not found", _cli.Err, StringComparison.Ordinal);
    }
}
