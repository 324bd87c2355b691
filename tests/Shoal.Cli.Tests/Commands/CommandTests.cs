using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Shoal.Cli.Commands;
using Shoal.Cli.Interaction;
using Shoal.Cli.Tests.Infrastructure;
using Shoal.Contracts;
using Shoal.Testing;

namespace Shoal.Cli.Tests.Commands;

/// <summary>Whole command lines against a real Kestrel server answering canned API JSON.</summary>
public sealed class CommandTests : IAsyncLifetime
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

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public async Task Deploy_sends_the_spec_from_the_flags()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto, 201));

        var exit = await _cli.RunAsync(
            "deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", "--gpu-count", "2", "--replicas", "3", "--port", "9000",
            "--env", "MODEL=llama", "-e", "OPTS=a=b", "--arg", "serve", "--arg=--max-len=4096", "--health-path", "/ready",
            "--routing", "round-robin", "--queue-timeout", "90s", "--first-byte-timeout", "1500ms", "--model", "llama-8b", "--model", "llama");

        Assert.Equal(ExitCodes.Success, exit);
        var sent = JsonSerializer.Deserialize(Assert.Single(_server.Requests).Body, ShoalJsonContext.Default.CreateClusterRequest)!;
        Assert.Equal("demo", sent.Name);
        Assert.Equal("shoal/sim", sent.Image);
        Assert.Equal("rtx-4090", sent.Gpu);
        Assert.Equal(2, sent.GpuCount);
        Assert.Equal(3, sent.Replicas);
        Assert.Equal(9000, sent.Port);
        Assert.Equal(new Dictionary<string, string> { ["MODEL"] = "llama", ["OPTS"] = "a=b" }, sent.Env);
        Assert.Equal(["serve", "--max-len=4096"], sent.Args!);
        Assert.Equal(["llama-8b", "llama"], sent.Models!);
        Assert.Equal("/ready", sent.Health!.Path);
        Assert.Equal("round-robin", sent.Routing);
        Assert.Equal(90, sent.QueueTimeoutSeconds);
        // Whole seconds, rounded up.
        Assert.Equal(2, sent.FirstByteTimeoutSeconds);
        Assert.Contains("deployed demo", _cli.Out, StringComparison.Ordinal);
        Assert.Contains("endpoint: http://127.0.0.1:8080/c/demo", _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Deploy_leaves_unset_fields_to_the_server()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto, 201));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090"));
        Assert.Equal("""{"name":"demo","image":"shoal/sim","gpu":"rtx-4090"}""", Assert.Single(_server.Requests).Body);
    }

    [Theory]
    [InlineData("--env", "NOEQUALS", "--env 'NOEQUALS' is not KEY=VALUE")]
    [InlineData("--env", "1X=y", "--env name '1X' is not valid")]
    [InlineData("--replicas", "-1", "--replicas must be at least 0, got -1")]
    [InlineData("--port", "http", "--port must be a whole number, got 'http'")]
    [InlineData("--timeout", "5 minutes", "--timeout: '5 minutes'")]
    [InlineData("--health-path", "health", "--health-path must start with '/'")]
    [InlineData("--output", "yaml", "--output 'yaml' is not supported")]
    [InlineData("--routing", "random", "'random'")]
    [InlineData("--queue-timeout", "10m", "--queue-timeout")]
    [InlineData("--first-byte-timeout", "2h", "--first-byte-timeout")]
    public async Task Deploy_with_a_bad_flag_fails_clearly_and_sends_nothing(string flag, string value, string expected)
    {
        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", flag, value);

        Assert.Equal(ExitCodes.InvalidInput, exit);
        Assert.Contains(expected, _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
        Assert.Empty(_cli.Out);
    }

    [Fact]
    public async Task Deploy_without_required_flags_names_them()
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("deploy", "demo"));
        Assert.Contains("--image", _cli.Err, StringComparison.Ordinal);
        Assert.Contains("--gpu", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Deploy_that_already_exists_exits_with_conflict_and_the_server_message()
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Error(409, ErrorCodes.AlreadyExists, "cluster 'demo' already exists"));
        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", "-o", "json");
        Assert.Equal(ExitCodes.Conflict, exit);
        Assert.Contains("error: cluster 'demo' already exists", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_cli.Out);
    }

    [Fact]
    public async Task Deploy_wait_follows_progress_until_ready_and_prints_the_endpoint()
    {
        var cluster = Samples.Cluster(replicas: 2, ready: 0);
        _server.On("POST", "/v1/clusters", CannedResponse.Json(cluster, ShoalJsonContext.Default.ClusterDto, 201));
        var polls = 0;
        _server.On("GET", "/v1/clusters/demo/status", _ => ++polls switch
        {
            1 => CannedResponse.Json(Samples.Status(cluster, Samples.Replica("r-1", ReplicaState.Pending, nodeName: null), Samples.Replica("r-2", ReplicaState.Pending, nodeName: null)), ShoalJsonContext.Default.ClusterStatusDto),
            2 => CannedResponse.Json(Samples.Status(cluster, Samples.Replica("r-1", ReplicaState.Ready), Samples.Replica("r-2", ReplicaState.Pulling)), ShoalJsonContext.Default.ClusterStatusDto),
            _ => CannedResponse.Json(Samples.Status(cluster with { ReadyReplicas = 2 }, Samples.Replica("r-1", ReplicaState.Ready), Samples.Replica("r-2", ReplicaState.Ready)), ShoalJsonContext.Default.ClusterStatusDto),
        });

        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", "--replicas", "2", "--wait");

        Assert.Equal(ExitCodes.Success, exit);
        Assert.Equal(3, polls);
        var lines = Lines(_cli.Out);
        Assert.Contains("0/2 replicas ready (2 pending)", lines);
        Assert.Contains("1/2 replicas ready (1 pulling)", lines);
        Assert.Contains("2/2 replicas ready", lines);
        Assert.Contains("endpoint: http://127.0.0.1:8080/c/demo", lines);
        Assert.True(Array.IndexOf(lines, "0/2 replicas ready (2 pending)") < Array.IndexOf(lines, "2/2 replicas ready"));
    }

    [Fact]
    public async Task Deploy_wait_exits_at_once_when_the_cluster_fails_and_status_says_why()
    {
        // Issue 14, item 3: not the whole 5 min timeout for a cluster that gave up.
        var cluster = Samples.Cluster(replicas: 1, ready: 0);
        const string failure = "5 attempts failed before any replica was ready; last: crash-looping on gpu-box-1 (3 restarts within 300 s; last: exited with code 3)";
        var failed = cluster with { Failure = failure, FailedAttempts = 5, FailedAt = Samples.T0 };
        _server.On("POST", "/v1/clusters", CannedResponse.Json(cluster, ShoalJsonContext.Default.ClusterDto, 201));
        var polls = 0;
        _server.On("GET", "/v1/clusters/demo/status", _ => ++polls switch
        {
            1 => CannedResponse.Json(Samples.Status(cluster with { FailedAttempts = 4 }, Samples.Replica("r-1", ReplicaState.Failed, "exited with code 3; restarting in 2 s")), ShoalJsonContext.Default.ClusterStatusDto),
            _ => CannedResponse.Json(Samples.Status(failed), ShoalJsonContext.Default.ClusterStatusDto),
        });

        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", "--wait");

        Assert.Equal(ExitCodes.Failure, exit);
        Assert.Equal(2, polls);
        Assert.Contains($"demo failed: {failure}", _cli.Err.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal), StringComparison.Ordinal);

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("status", "demo"));
        Assert.Matches(@"failed\s+5 attempts failed before any replica was ready", _cli.Out);
    }

    [Fact]
    public async Task Deploy_wait_times_out_naming_the_pending_replicas_and_why()
    {
        var cluster = Samples.Cluster(replicas: 2, ready: 0);
        _server
            .On("POST", "/v1/clusters", CannedResponse.Json(cluster, ShoalJsonContext.Default.ClusterDto, 201))
            .On("GET", "/v1/clusters/demo/status", CannedResponse.Json(
                Samples.Status(cluster, Samples.Replica("r-1", ReplicaState.Ready), Samples.Replica("r-2", ReplicaState.Pending, "no node has a free rtx-4090", nodeName: null)),
                ShoalJsonContext.Default.ClusterStatusDto));

        var exit = await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", "--wait", "--timeout", "200ms", "--output", "json");

        Assert.Equal(ExitCodes.Timeout, exit);
        Assert.Contains("timed out after 200ms waiting for demo: 1/2 replicas ready", _cli.Err, StringComparison.Ordinal);
        Assert.Contains("r-2: pending (no node has a free rtx-4090)", _cli.Err, StringComparison.Ordinal);
        Assert.DoesNotContain("r-1:", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_cli.Out);
    }

    [Fact]
    public async Task Deploy_wait_with_json_output_prints_only_the_ready_cluster()
    {
        var cluster = Samples.Cluster(replicas: 1, ready: 0);
        _server
            .On("POST", "/v1/clusters", CannedResponse.Json(cluster, ShoalJsonContext.Default.ClusterDto, 201))
            .On("GET", "/v1/clusters/demo/status", CannedResponse.Json(
                Samples.Status(cluster with { ReadyReplicas = 1 }, Samples.Replica("r-1", ReplicaState.Ready)), ShoalJsonContext.Default.ClusterStatusDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", "--wait", "-o", "json"));
        var printed = JsonSerializer.Deserialize(_cli.Out, ShoalJsonContext.Default.ClusterDto)!;
        Assert.Equal(1, printed.ReadyReplicas);
        Assert.Contains("1/1 replicas ready", _cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Clusters_lists_a_table_and_json()
    {
        _server.On("GET", "/v1/clusters", CannedResponse.Json([Samples.Cluster("zeta", 1, 0), Samples.Cluster("alpha")], ShoalJsonContext.Default.ClusterDtoArray));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("clusters"));
        var rows = Lines(_cli.Out).Where(l => l.StartsWith("alpha", StringComparison.Ordinal) || l.StartsWith("zeta", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, rows.Length);
        Assert.StartsWith("alpha", rows[0], StringComparison.Ordinal);
        Assert.Matches(@"zeta\s+shoal/sim\s+rtx-4090\s+0/1", rows[1]);

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("clusters", "--output", "json"));
        var parsed = JsonSerializer.Deserialize(_cli.Out, ShoalJsonContext.Default.ClusterDtoArray)!;
        Assert.Equal(["zeta", "alpha"], parsed.Select(c => c.Name));
        Assert.Empty(_cli.Err);
    }

    [Fact]
    public async Task Clusters_says_so_when_there_are_none()
    {
        _server.On("GET", "/v1/clusters", CannedResponse.Json([], ShoalJsonContext.Default.ClusterDtoArray));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("clusters"));
        Assert.Contains("no clusters", _cli.Out, StringComparison.Ordinal);
        Assert.Contains("shoal deploy", _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_of_a_missing_cluster_exits_not_found_with_the_message()
    {
        _server.On("GET", "/v1/clusters/nope/status", CannedResponse.Error(404, ErrorCodes.NotFound, "cluster 'nope' not found"));
        Assert.Equal(ExitCodes.NotFound, await _cli.RunAsync("status", "nope"));
        Assert.Contains("error: cluster 'nope' not found", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_cli.Out);
    }

    [Fact]
    public async Task Status_prints_the_summary_and_replicas()
    {
        _server.On("GET", "/v1/clusters/demo/status", CannedResponse.Json(
            Samples.Status(Samples.Cluster(replicas: 1, ready: 1), Samples.Replica("r-1", ReplicaState.Ready)), ShoalJsonContext.Default.ClusterStatusDto));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("status", "demo"));
        Assert.Contains(Lines(_cli.Out), l => l.StartsWith("endpoint", StringComparison.Ordinal) && l.EndsWith("http://127.0.0.1:8080/c/demo", StringComparison.Ordinal));
        Assert.Matches(@"r-1\s+gpu-box-1\s+0\s+ready\s+yes\s+-\s+1\s+12ms\s+1\.4s\s+2m05s", _cli.Out);

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("status", "demo", "-o", "json"));
        using var doc = JsonDocument.Parse(_cli.Out);
        Assert.Equal("ready", doc.RootElement.GetProperty("replicas")[0].GetProperty("state").GetString());
    }

    [Fact]
    public async Task Status_shows_a_replica_on_a_lost_node_as_unreachable_and_counts_it_not_ready()
    {
        // Issue 14, item 2: what the server says while the node is within its grace period.
        var lost = Samples.Replica("r-1", ReplicaState.Unreachable, "node gpu-box-1 lost: out of routing, replaced unless it returns within its grace period") with { Healthy = false };
        var status = Samples.Status(Samples.Cluster(replicas: 2, ready: 1), Samples.Replica("r-2", ReplicaState.Ready), lost);
        _server.On("GET", "/v1/clusters/demo/status", CannedResponse.Json(status, ShoalJsonContext.Default.ClusterStatusDto));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("status", "demo"));
        Assert.Matches(@"replicas\s+1/2 ready", _cli.Out);
        Assert.Matches(@"r-1\s+gpu-box-1\s+0\s+unreachable\s+no\s+node gpu-box-1 lost", _cli.Out);
        Assert.False(DeploymentWaiter.IsReady(status));
        Assert.Contains("r-1: unreachable on gpu-box-1 (node gpu-box-1 lost: out of routing, replaced unless it returns within its grace period)", DeploymentWaiter.DescribePending(status));
    }

    [Fact]
    public async Task Scale_patches_the_replica_count()
    {
        _server.On("PATCH", "/v1/clusters/demo", CannedResponse.Json(Samples.Cluster(replicas: 5, ready: 2), ShoalJsonContext.Default.ClusterDto));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("scale", "demo", "5"));
        Assert.Equal("""{"replicas":5}""", Assert.Single(_server.Requests).Body);
        Assert.Contains("scaled demo to 5 replica(s)", _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Scale_rejects_a_negative_count_without_calling_the_server()
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("scale", "demo", "-3"));
        Assert.Contains("replicas must be at least 0", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Rm_deletes_and_prints_what_was_removed()
    {
        _server
            .On("GET", "/v1/clusters/demo", CannedResponse.Json(Samples.Cluster(replicas: 3), ShoalJsonContext.Default.ClusterDto))
            .On("DELETE", "/v1/clusters/demo", CannedResponse.NoContent);
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("rm", "demo"));
        Assert.Equal(["GET /v1/clusters/demo", "DELETE /v1/clusters/demo"], _server.Requests.Select(r => $"{r.Method} {r.Path}"));
        Assert.Contains("removed cluster demo: shoal/sim on rtx-4090, 3 replica(s)", _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rm_of_a_missing_cluster_deletes_nothing()
    {
        _server.On("GET", "/v1/clusters/ghost", CannedResponse.Error(404, ErrorCodes.NotFound, "cluster 'ghost' not found"));
        Assert.Equal(ExitCodes.NotFound, await _cli.RunAsync("rm", "ghost"));
        Assert.DoesNotContain(_server.Requests, r => r.Method == "DELETE");
    }

    [Fact]
    public async Task Nodes_lists_gpus_and_last_seen()
    {
        var now = Samples.T0.AddHours(1);
        _cli.Time = new FakeTimeProvider(now);
        _server.On("GET", "/v1/nodes", CannedResponse.Json([Samples.Node("box", now.AddSeconds(-3), "rtx-4090", "rtx-4090")], ShoalJsonContext.Default.NodeDtoArray));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("nodes"));
        Assert.Matches(@"n-box\s+box\s+ready\s+2× rtx-4090\s+1\s+1\s+-\s+1\.00\s+3s ago", _cli.Out);
    }

    private static ClusterEventDto[] SampleEvents() =>
    [
        new() { Seq = 1, At = Samples.T0, Type = ClusterEventTypes.Scheduled, Replica = "demo-a", Node = "n-1", NodeName = "node-1", Message = "scheduled on node-1 (GPU 0)" },
        new() { Seq = 2, At = Samples.T0.AddMilliseconds(1234), Type = ClusterEventTypes.NodeLost, Replica = "demo-a", Node = "n-1", NodeName = "node-1", Message = "node node-1 disconnected" },
        new() { Seq = 3, At = Samples.T0.AddSeconds(4), Type = ClusterEventTypes.Scheduled, Replica = "demo-b", Node = "n-3", NodeName = "node-3", Message = "scheduled on node-3 (GPU 0)" },
    ];

    [Fact]
    public async Task Events_lists_time_type_replica_node_and_message_oldest_first()
    {
        _server.On("GET", "/v1/clusters/demo/events", CannedResponse.Json(SampleEvents(), ShoalJsonContext.Default.ClusterEventDtoArray));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("events", "demo"));

        var lines = Lines(_cli.Out);
        var at = Samples.T0.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture);
        var first = Array.FindIndex(lines, l => l.Contains("scheduled on node-1", StringComparison.Ordinal));
        var lost = Array.FindIndex(lines, l => l.Contains("node-lost", StringComparison.Ordinal));
        Assert.True(first >= 0 && lost > first, _cli.Out);
        Assert.Matches($@"{at}\.\d\d\d\s+scheduled\s+demo-a\s+node-1\s+scheduled on node-1 \(GPU 0\)", lines[first]);
        Assert.Contains(".234", lines[lost], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Events_json_filtered_by_replica_and_a_bad_limit_is_refused()
    {
        _server.On("GET", "/v1/clusters/demo/events", CannedResponse.Json(SampleEvents(), ShoalJsonContext.Default.ClusterEventDtoArray));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("events", "demo", "--replica", "demo-a", "--limit", "50", "-o", "json"));
        var events = JsonSerializer.Deserialize(_cli.Out, ShoalJsonContext.Default.ClusterEventDtoArray)!;
        Assert.Equal([1L, 2], events.Select(e => e.Seq).ToArray());
        Assert.Equal(ClusterEventTypes.NodeLost, events[1].Type);

        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("events", "demo", "--limit", "0"));
        Assert.Contains("--limit must be between 1 and 1000", _cli.Err, StringComparison.Ordinal);
        Assert.Single(_server.Requests);
    }

    [Theory]
    [InlineData("edge", "--max-connections", "0", "--max-connections must be at least 1")]
    [InlineData("edge", "--max-tunnels-per-node", "0", "--max-tunnels-per-node must be at least 1")]
    [InlineData("edge", "--undecided-timeout", "soon", "--undecided-timeout")]
    [InlineData("server", "--edge-max-connections-per-address", "0", "--edge-max-connections-per-address must be at least 1")]
    [InlineData("server", "--edge-undecided-timeout", "0s", "--edge-undecided-timeout")]
    public async Task Edge_connection_limits_out_of_range_are_refused_before_anything_starts(string command, string option, string value, string message)
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync(command, option, value, "--listen", "127.0.0.1:0"));
        Assert.Contains(message, _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Theory]
    [InlineData("--max-failed-attempts", "0", "--max-failed-attempts must be between 1 and 100, got 0")]
    [InlineData("--max-failed-attempts", "many", "--max-failed-attempts must be a whole number, got 'many'")]
    [InlineData("--attempt-backoff", "soon", "--attempt-backoff")]
    [InlineData("--attempt-backoff", "2h", "--attempt-backoff must be between")]
    [InlineData("--crash-loop-restarts", "0", "--crash-loop-restarts must be between 1 and 100, got 0")]
    public async Task Failed_attempt_settings_out_of_range_are_refused_before_the_server_starts(string option, string value, string message)
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("server", option, value, "--listen", "127.0.0.1:0", "--no-edge"));
        Assert.Contains(message, _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Events_of_a_missing_cluster_is_not_found()
    {
        _server.On("GET", "/v1/clusters/ghost/events", CannedResponse.Error(404, ErrorCodes.NotFound, "cluster 'ghost' not found"));
        Assert.Equal(ExitCodes.NotFound, await _cli.RunAsync("events", "ghost"));
        Assert.Contains("cluster 'ghost' not found", _cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tokens_create_sends_ttl_and_uses_and_prints_the_agent_command()
    {
        _server.On("POST", "/v1/tokens", CannedResponse.Json(
            new TokenCreatedDto { Id = "tok-1", Token = "shoal_prov_SECRET", Uses = 3, ExpiresAt = Samples.T0.AddHours(2) }, ShoalJsonContext.Default.TokenCreatedDto, 201));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("tokens", "create", "--uses", "3", "--ttl", "2h", "--description", "rack 4"));

        var sent = JsonSerializer.Deserialize(Assert.Single(_server.Requests).Body, ShoalJsonContext.Default.CreateTokenRequest)!;
        Assert.Equal(7200, sent.TtlSeconds);
        Assert.Equal(3, sent.Uses);
        Assert.Equal("rack 4", sent.Description);
        Assert.Contains($"SHOAL_TOKEN=shoal_prov_SECRET shoal agent --server {_server.Address}", _cli.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tokens_create_sends_the_operators_node_policy_and_shows_it()
    {
        _server.On("POST", "/v1/tokens", CannedResponse.Json(
            new TokenCreatedDto
            {
                Id = "tok-1", Token = "shoal_pt_SECRET", Uses = 1, ExpiresAt = Samples.T0.AddHours(1),
                Approve = TokenApproval.Manual, MaxGpus = 2, Labels = ["eu", "trusted"], Direct = true,
            }, ShoalJsonContext.Default.TokenCreatedDto, 201));

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("tokens", "create", "--approve", "manual", "--max-gpus", "2", "--label", "trusted", "--label", "eu", "--direct"));

        var sent = JsonSerializer.Deserialize(Assert.Single(_server.Requests).Body, ShoalJsonContext.Default.CreateTokenRequest)!;
        Assert.Equal(TokenApproval.Manual, sent.Approve);
        Assert.Equal(2, sent.MaxGpus);
        Assert.Equal(["trusted", "eu"], sent.Labels!);
        Assert.True(sent.Direct);
        Assert.Contains("policy: nodes wait for `shoal nodes approve`; at most 2 GPU(s) per node; labels eu,trusted; direct mode allowed", _cli.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--approve", "sometimes", "sometimes")]
    [InlineData("--max-gpus", "0", "--max-gpus must be between 1 and 64")]
    [InlineData("--max-gpus", "65", "--max-gpus must be between 1 and 64")]
    public async Task Tokens_create_rejects_a_bad_policy_before_sending(string flag, string value, string expected)
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("tokens", "create", flag, value));
        Assert.Contains(expected, _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Nodes_approve_posts_the_approval()
    {
        _server.On("POST", "/v1/nodes/box/approve", CannedResponse.Json(Samples.Node("box", Samples.T0, "rtx-4090"), ShoalJsonContext.Default.NodeDto));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("nodes", "approve", "box"));
        var request = Assert.Single(_server.Requests);
        Assert.Equal("POST /v1/nodes/box/approve", $"{request.Method} {request.Path}");
        Assert.Contains("approved box", _cli.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(new[] { "--node-label", "trusted", "--node-label", "eu" }, "\"nodeLabels\":[\"trusted\",\"eu\"]")]
    [InlineData(new[] { "--node-label", "none" }, "\"nodeLabels\":[]")]
    public async Task Deploy_sends_node_labels_and_none_for_explicitly_no_label(string[] flags, string expected)
    {
        _server.On("POST", "/v1/clusters", CannedResponse.Json(Samples.Cluster(), ShoalJsonContext.Default.ClusterDto, 201));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync(["deploy", "demo", "--image", "shoal/sim", "--gpu", "rtx-4090", .. flags]));
        Assert.Contains(expected, Assert.Single(_server.Requests).Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tokens_create_rejects_a_ttl_over_30_days()
    {
        Assert.Equal(ExitCodes.InvalidInput, await _cli.RunAsync("tokens", "create", "--ttl", "31d"));
        Assert.Contains("--ttl must be between 1s and 30d", _cli.Err, StringComparison.Ordinal);
        Assert.Empty(_server.Requests);
    }

    [Fact]
    public async Task Gpu_types_json_is_machine_readable()
    {
        _server.On("GET", "/v1/gpu-types", CannedResponse.Json(
            [new GpuTypeDto { Type = "rtx-4090", DisplayName = "GeForce RTX 4090", MemoryMiB = 24576, Total = 4, Free = 1 }], ShoalJsonContext.Default.GpuTypeDtoArray));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("gpu-types", "-o", "json"));
        var types = JsonSerializer.Deserialize(_cli.Out, ShoalJsonContext.Default.GpuTypeDtoArray)!;
        Assert.Equal(1, Assert.Single(types).Free);

        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("gpu-types"));
        Assert.Matches(@"rtx-4090\s+GeForce RTX 4090\s+24 GiB\s+4\s+1", _cli.Out);
    }

    [Fact]
    public async Task A_non_json_error_from_something_else_is_explained()
    {
        _server.On("GET", "/v1/clusters", new CannedResponse(500, "upstream exploded", "text/plain"));
        Assert.Equal(ExitCodes.Failure, await _cli.RunAsync("clusters"));
        Assert.Contains("500", _cli.Err, StringComparison.Ordinal);
        Assert.Contains("upstream exploded", _cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_addr_flag_wins_over_shoal_addr()
    {
        _cli.Environment["SHOAL_ADDR"] = $"http://127.0.0.1:{FreePort.Next()}";
        _server.On("GET", "/v1/nodes", CannedResponse.Json([], ShoalJsonContext.Default.NodeDtoArray));
        Assert.Equal(ExitCodes.Success, await _cli.RunAsync("nodes", "--addr", _server.Address));
        Assert.Single(_server.Requests);
    }
}

public sealed class UnreachableServerTests
{
    [Fact]
    public async Task A_refused_connection_exits_unreachable_with_a_hint()
    {
        var port = FreePort.Next();
        using var cli = new CliHarness($"http://127.0.0.1:{port}");
        Assert.Equal(ExitCodes.ServerUnreachable, await cli.RunAsync("clusters", "-o", "json"));
        Assert.Contains($"error: cannot reach the Shoal server at http://127.0.0.1:{port} (set SHOAL_ADDR or run `shoal dev`)", cli.Err, StringComparison.Ordinal);
        Assert.Empty(cli.Out);
    }

    [Fact]
    public async Task A_bad_shoal_addr_is_invalid_input()
    {
        using var cli = new CliHarness("ftp://nowhere");
        Assert.Equal(ExitCodes.InvalidInput, await cli.RunAsync("nodes"));
        Assert.Contains("SHOAL_ADDR", cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bare_shoal_shows_help_listing_the_commands()
    {
        using var cli = new CliHarness();
        Assert.Equal(ExitCodes.Success, await cli.RunAsync());
        foreach (var command in new[] { "deploy", "clusters", "status", "scale", "rm", "nodes", "tokens", "gpu-types" })
        {
            Assert.Contains(command, cli.HelpOutput.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_root_command_for_a_subcommand_builds_that_one_alone_and_every_other_first_word_builds_all()
    {
        var context = new CliContext { Interaction = new ConsoleInteractionService(new TestConsole().Console, new TestConsole().Console) };
        var all = new ShoalRootCommand(context, ShoalCommands.All).Subcommands.Select(c => c.Name).ToArray();
        Assert.Contains("server", all);
        Assert.Contains("status", all);
        foreach (var name in all)
        {
            // Each factory makes the command it is listed under (a mismatch would make that command unreachable).
            Assert.Equal([name], ShoalCommands.ForArguments(context, [name, "--help"]).Subcommands.Select(c => c.Name));
        }
        Assert.Equal(all, ShoalCommands.ForArguments(context, ["--addr", "http://127.0.0.1:1", "status", "x"]).Subcommands.Select(c => c.Name));
        Assert.Equal(all, ShoalCommands.ForArguments(context, ["statu"]).Subcommands.Select(c => c.Name));
        Assert.Equal(all, ShoalCommands.ForArguments(context, []).Subcommands.Select(c => c.Name));
    }

    [Fact]
    public async Task Options_before_the_subcommand_still_parse()
    {
        using var cli = new CliHarness();
        Assert.Equal(ExitCodes.InvalidInput, await cli.RunAsync("--addr", "ftp://nowhere", "nodes"));
        Assert.Contains("--addr", cli.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_command_is_invalid_input()
    {
        using var cli = new CliHarness();
        Assert.Equal(ExitCodes.InvalidInput, await cli.RunAsync("frobnicate"));
        Assert.Contains("frobnicate", cli.Err, StringComparison.Ordinal);
    }
}
