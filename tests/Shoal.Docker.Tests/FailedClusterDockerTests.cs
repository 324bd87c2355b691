using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Docker.Tests;

/// <summary>
/// Issue 14, must-show 3, with the real engine: an image that exits at once on every node, and one
/// that cannot be pulled from a registry that refuses, settle as a <c>failed</c> cluster after a
/// bounded number of attempts (2 here, 1 s apart, a replica replaced after 2 restarts), with the
/// reason in status, events and the edge's 503, nothing left running or pulling, and an update
/// with a good image recovers it. Two agents (nodes) with one GPU each.
/// </summary>
[Trait(Categories.Name, Categories.Docker)]
[Collection(DockerCollection.Name)]
public sealed class FailedClusterDockerTests(DockerEngine engine, ITestOutputHelper output)
{
    private static readonly string[] s_fastFailure = ["--max-failed-attempts", "2", "--attempt-backoff", "1s", "--crash-loop-restarts", "2"];

    private async Task RunAsync(Func<ShoalStack, Task> test)
    {
        var stack = await ShoalStack.StartAsync("rtx-4090:1", agents: 2, serverArgs: s_fastFailure);
        try
        {
            await test(stack);
        }
        catch
        {
            output.WriteLine(stack.Output);
            throw;
        }
        finally
        {
            var nodes = stack.NodeIds.Where(n => n.Length > 0).ToList();
            await stack.DisposeAsync();
            foreach (var node in nodes) await engine.CleanUpAsync(node);
            await engine.CleanUpAsync(null);
        }
    }

    // The shoal CLI against the stack's server, with the operator's key.
    private static ShoalProcess Cli(ShoalStack stack, string name, params string[] args) =>
        ShoalProcess.Start(name, ["--addr", stack.Api, .. args], new Dictionary<string, string>
        {
            ["SHOAL_API_KEY"] = stack.OperatorKey,
            ["SHOAL_CONFIG"] = Path.Combine(Path.GetTempPath(), "shoal-docker-no-config.json"),
        });

    private static async Task<ClusterEventDto[]> EventsAsync(ShoalStack stack, string cluster) =>
        (await stack.Http.GetFromJsonAsync($"/v1/clusters/{cluster}/events?limit=1000", ShoalJsonContext.Default.ClusterEventDtoArray))!;

    // At most one event of each kind per attempt (replica): a crash loop or a retried pull is not an event per retry.
    private void AssertOneEventOfEachKindPerAttempt(ClusterEventDto[] events)
    {
        foreach (var e in events) output.WriteLine($"{e.At:HH:mm:ss.fff} {e.Type,-15} {e.Replica,-14} {e.NodeName,-14} {e.Message}");
        foreach (var attempt in events.Where(e => e.Replica is not null).GroupBy(e => e.Replica))
        {
            Assert.All(attempt.GroupBy(e => e.Type), kind => Assert.Single(kind));
        }
        Assert.Equal(2, events.Count(e => e.Type == ClusterEventTypes.Replaced));
        Assert.Single(events, e => e.Type == ClusterEventTypes.ClusterFailed);
    }

    // Nothing of the cluster runs or waits on any node (no GPU held).
    private async Task AssertNoContainersAsync(ShoalStack stack)
    {
        foreach (var node in stack.NodeIds)
        {
            await Eventually.GetAsync(() => engine.NodeContainersAsync(node), list => list.Count == 0, TimeSpan.FromSeconds(20), $"no container left on {node}");
        }
    }

    private static async Task<(HttpStatusCode Status, string Body, TimeSpan Took)> CallThroughEdgeAsync(ShoalStack stack, string cluster)
    {
        using var content = new StringContent("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", Encoding.UTF8, "application/json");
        var clock = Stopwatch.StartNew();
        using var response = await stack.Edge.PostAsync($"/c/{cluster}/v1/chat/completions", content);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(), clock.Elapsed);
    }

    [Fact]
    public Task An_image_that_exits_at_once_on_every_node_fails_the_cluster_with_its_exit_code_and_output_and_an_update_recovers_it() => RunAsync(async stack =>
    {
        // deploy --wait follows it until it fails, and says so with a non-zero exit.
        await using var deploy = Cli(stack, "deploy", "deploy", "crash", "--image", DockerEngine.CrashImage, "--gpu", "rtx-4090", "--wait", "--timeout", "2m");
        var code = await deploy.WaitForExitAsync(TimeSpan.FromSeconds(120));
        var exitedAt = DateTimeOffset.UtcNow;
        output.WriteLine(deploy.Output);
        Assert.Equal(1, code);
        Assert.Contains("crash failed: 2 attempts failed before any replica was ready", deploy.Output.ReplaceLineEndings(" "), StringComparison.Ordinal);

        var status = await stack.StatusAsync("crash");
        var failure = status.Cluster.Failure;
        output.WriteLine(failure);
        Assert.NotNull(failure);
        Assert.StartsWith("2 attempts failed before any replica was ready; last: crash-looping on docker-node", failure, StringComparison.Ordinal);
        // The last exit code and what the replica said last (stdout and stderr: the engine may give them in either order).
        Assert.Contains("exited with code 3; last output: [", failure, StringComparison.Ordinal);
        Assert.Contains("loading weights from /models/demo", failure, StringComparison.Ordinal);
        Assert.Contains("fatal: /models/demo/config.json not found", failure, StringComparison.Ordinal);
        Assert.Equal(2, status.Cluster.FailedAttempts);
        Assert.True(exitedAt - status.Cluster.FailedAt!.Value < TimeSpan.FromSeconds(5), $"deploy --wait exited {(exitedAt - status.Cluster.FailedAt!.Value).TotalSeconds:0.0} s after the cluster failed");
        Assert.Empty(status.Replicas);

        // shoal status shows the same.
        await using (var shown = Cli(stack, "status", "status", "crash"))
        {
            Assert.Equal(0, await shown.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains("failed", shown.Output, StringComparison.Ordinal);
            Assert.Contains("config.json not found", shown.Output.ReplaceLineEndings(" "), StringComparison.Ordinal);
        }

        // One attempt on each node, one event of each kind per attempt; nothing left running.
        var events = await EventsAsync(stack, "crash");
        AssertOneEventOfEachKindPerAttempt(events);
        Assert.Equal(2, events.Where(e => e.Type == ClusterEventTypes.Replaced).Select(e => e.Node).Distinct().Count());
        Assert.Contains(events, e => e.Type == ClusterEventTypes.Failed && e.Message.StartsWith("exited with code 3; last output: [", StringComparison.Ordinal));
        await AssertNoContainersAsync(stack);

        // The edge answers at once with the reason, without the replica's output (that is for operators).
        var (edgeStatus, body, took) = await CallThroughEdgeAsync(stack, "crash");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, edgeStatus);
        Assert.Contains("the cluster failed: 2 attempts failed before any replica was ready", body, StringComparison.Ordinal);
        Assert.Contains("exited with code 3", body, StringComparison.Ordinal);
        Assert.DoesNotContain("config.json", body, StringComparison.Ordinal);
        Assert.True(took < TimeSpan.FromSeconds(10), $"the 503 took {took.TotalSeconds:0.0} s (held instead of refused)");

        // An update with a good image recovers it.
        await using (var update = Cli(stack, "update", "update", "crash", "--image", DockerEngine.WebImage, "--wait", "--timeout", "1m"))
        {
            var updated = await update.WaitForExitAsync(TimeSpan.FromSeconds(90));
            output.WriteLine(update.Output);
            Assert.Equal(0, updated);
        }
        var recovered = await stack.WaitReadyAsync("crash", 1);
        Assert.Null(recovered.Cluster.Failure);
        Assert.Equal(0, recovered.Cluster.FailedAttempts);
        using var health = await stack.Edge.GetAsync("/c/crash/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    });

    [Fact]
    public Task An_image_from_a_registry_that_refuses_fails_the_cluster_with_the_pull_error_and_the_pulls_stop() => RunAsync(async stack =>
    {
        await using var registry = await FakeRegistry.StartAsync(refusing: true);
        var image = $"{registry.Host}/shoal-test/model:1";
        await stack.DeployAsync(new CreateClusterRequest
        {
            Name = "broken",
            Image = image,
            Gpu = "rtx-4090",
            Replicas = 1,
            Health = new HealthCheckSpec { Path = "/health", IntervalMs = 500 },
        });

        var status = await stack.WaitAsync("broken", s => s.Cluster.Failure is not null, "the cluster failed", 90);
        var failure = status.Cluster.Failure!;
        output.WriteLine(failure);
        Assert.StartsWith("2 attempts failed before any replica was ready; last: crash-looping on docker-node", failure, StringComparison.Ordinal);
        Assert.Contains($"image pull failed: pull of {image} failed", failure, StringComparison.Ordinal);
        Assert.Contains("500", failure, StringComparison.Ordinal);
        Assert.Empty(status.Replicas);
        AssertOneEventOfEachKindPerAttempt(await EventsAsync(stack, "broken"));
        await AssertNoContainersAsync(stack);

        // The edge's 503 carries the pull error.
        var (edgeStatus, body, _) = await CallThroughEdgeAsync(stack, "broken");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, edgeStatus);
        Assert.Contains("image pull failed", body, StringComparison.Ordinal);

        // Nothing pulls any more: the registry hears nothing after the failure (longer than any
        // back-off of the agent's retries or of the attempts).
        var requests = registry.Requests;
        Assert.True(requests > 0, "the registry was never asked");
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.Equal(requests, registry.Requests);
        output.WriteLine($"registry requests: {requests}");
    });
}
