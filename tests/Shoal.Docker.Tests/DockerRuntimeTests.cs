using System.Net;
using Docker.DotNet.Models;
using Shoal.Agent.Runtimes.Docker;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Docker.Tests;

/// <summary>
/// The docker runtime against a real engine, with the real <c>shoal</c> server, edge and agent:
/// containers on host networking, so every byte stays on loopback.
/// </summary>
[Trait(Categories.Name, Categories.Docker)]
[Collection(DockerCollection.Name)]
public sealed class DockerRuntimeTests(DockerEngine engine, ITestOutputHelper output)
{
    private static CreateClusterRequest Web(string name, int replicas, string image = DockerEngine.WebImage) => new()
    {
        Name = name,
        Image = image,
        Gpu = "rtx-4090",
        Replicas = replicas,
        Health = new HealthCheckSpec { Path = "/health", IntervalMs = 500 },
    };

    private async Task RunAsync(string gpus, Func<ShoalStack, Task> test)
    {
        var stack = await ShoalStack.StartAsync(gpus);
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
            var node = stack.NodeId;
            await stack.DisposeAsync();
            await engine.CleanUpAsync(node.Length > 0 ? node : null);
        }
    }

    [Fact]
    public Task Two_replicas_serve_through_the_edge_isolated_and_a_killed_container_is_restarted() => RunAsync("rtx-4090:2", async stack =>
    {
        await stack.DeployAsync(Web("web", 2));
        var status = await stack.WaitReadyAsync("web", 2);

        // Requests through the endpoint succeed.
        for (var i = 0; i < 10; i++)
        {
            using var response = await stack.Edge.GetAsync("/c/web/health");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("ok\n", await response.Content.ReadAsStringAsync());
        }

        // Pinned to the local image's id; cold start in its parts, in order.
        Assert.Equal(engine.WebImageId, status.Cluster.ImageDigest);
        foreach (var r in status.Replicas)
        {
            Assert.Equal(engine.WebImageId, r.ImageDigest);
            Assert.True(r.AssignedAt >= r.CreatedAt && r.PulledAt >= r.AssignedAt && r.StartedAt >= r.PulledAt && r.ReadyAt >= r.StartedAt,
                $"cold start out of order: {r.CreatedAt:O} {r.AssignedAt:O} {r.PulledAt:O} {r.StartedAt:O} {r.ReadyAt:O}");
        }

        // What `docker inspect` shows: labels, limits, no capabilities, no privilege, no host mounts.
        var containers = await engine.NodeContainersAsync(stack.NodeId);
        Assert.Equal(2, containers.Count);
        foreach (var c in containers)
        {
            var inspect = await engine.Client.Containers.InspectContainerAsync(c.ID);
            var labels = inspect.Config!.Labels!;
            var replica = Assert.Single(status.Replicas, r => r.Id == labels[DockerLabels.Replica]);
            Assert.Equal("true", labels[DockerLabels.Managed]);
            Assert.Equal(stack.NodeId, labels[DockerLabels.Node]);
            Assert.Equal("web", labels[DockerLabels.Cluster]);
            Assert.Equal("1", labels[DockerLabels.Generation]);
            var host = inspect.HostConfig!;
            Assert.False(host.Privileged);
            Assert.Equal(["ALL"], host.CapDrop);
            Assert.Contains(host.SecurityOpt!, o => o.StartsWith("no-new-privileges", StringComparison.Ordinal));
            Assert.True(host.Memory > 0);
            Assert.True(host.NanoCPUs > 0);
            Assert.Equal(4096, host.PidsLimit);
            Assert.Empty(inspect.Mounts);
            Assert.True(host.ReadonlyRootfs);
            Assert.Equal(["/root/.cache", "/tmp"], host.Tmpfs!.Keys.Order(StringComparer.Ordinal));
            Assert.Equal("host", host.NetworkMode);
            Assert.Contains($"PORT={labels[DockerLabels.HostPort]}", inspect.Config.Env);
            Assert.Equal(replica.Address, $"127.0.0.1:{labels[DockerLabels.HostPort]}");
        }

        // Inside: the root file system is read-only, /tmp and the cache path are writable tmpfs of the set size.
        var probe = containers[0].ID;
        var (tmpCode, tmpOut) = await ExecAsync(probe, "echo scratch > /tmp/probe && cat /tmp/probe && echo cache > /root/.cache/probe && cat /root/.cache/probe");
        Assert.Equal(0L, tmpCode);
        Assert.Equal("scratch\ncache\n", tmpOut);
        var (rootCode, rootOut) = await ExecAsync(probe, "for f in /probe /www/index.html /serve; do if echo x > $f; then echo wrote $f; fi; done");
        Assert.Equal(0L, rootCode);
        Assert.Contains("Read-only file system", rootOut, StringComparison.Ordinal);
        Assert.DoesNotContain("wrote", rootOut, StringComparison.Ordinal);
        Assert.Equal("hello from shoal-test/web\n", await stack.Edge.GetStringAsync("/c/web/index.html"));

        // Logs come from the node through the server.
        var first = status.Replicas[0].Id;
        var logs = await Eventually.GetAsync(
            () => stack.Http.GetStringAsync($"/v1/clusters/web/logs?replica={first}"),
            text => text.Contains("serving on", StringComparison.Ordinal), what: "the replica's output");
        Assert.DoesNotContain("[" + first + "]", logs, StringComparison.Ordinal);

        // Kill a container: the agent starts a new one for the same replica.
        var victim = containers.Single(c => c.Labels[DockerLabels.Replica] == first);
        await engine.Client.Containers.KillContainerAsync(victim.ID, new ContainerKillParameters { Signal = "KILL" });
        status = await stack.WaitAsync("web", s => s.Replicas.Single(r => r.Id == first) is { State: ReplicaState.Ready, Restarts: >= 1 }, "the killed replica restarted");
        var after = await engine.NodeContainersAsync(stack.NodeId);
        Assert.Equal(2, after.Count);
        Assert.DoesNotContain(after, c => c.ID == victim.ID);
        Assert.All(after, c => Assert.Equal("running", c.State));
        Assert.Equal(0, status.Replicas.Single(r => r.Id != first).Restarts);
    });

    // Runs a shell command in a container; its exit code and output (stdout and stderr).
    private async Task<(long Code, string Output)> ExecAsync(string containerId, string command)
    {
        var exec = await engine.Client.Exec.CreateContainerExecAsync(containerId, new ContainerExecCreateParameters
        {
            Cmd = ["sh", "-c", command],
            AttachStdout = true,
            AttachStderr = true,
        });
        using var stream = await engine.Client.Exec.StartContainerExecAsync(exec.ID, new ContainerExecStartParameters(), CancellationToken.None);
        var (stdout, stderr) = await stream.ReadOutputToEndAsync(CancellationToken.None);
        var inspect = await engine.Client.Exec.InspectContainerExecAsync(exec.ID);
        return (inspect.ExitCode ?? -1, stdout + stderr);
    }

    [Fact]
    public async Task The_agent_refuses_host_networking_unless_its_operator_opted_in()
    {
        using var dir = new TempDirectory("shoal-docker-hostnet");
        await using var agent = ShoalProcess.Start("agent",
        [
            "agent", "--server", "http://127.0.0.1:9", "--token", "shoal_pt_unused", "--data-dir", dir.Combine("agent"),
            "--simulate-gpus", "rtx-4090:1", "--runtime", "docker", "--docker-network", "host",
        ]);

        Assert.Equal(2, await agent.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("--docker-network host shares the host's network with every replica, its loopback included", agent.Output, StringComparison.Ordinal);
        Assert.Contains("--allow-host-network", agent.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bridge_mode_says_what_keeps_clusters_apart_on_this_engine()
    {
        using var runtime = new DockerRuntime(DockerRuntime.CreateClient(null), new DockerRuntimeOptions { NodeId = () => "n-test" }, Microsoft.Extensions.Logging.Abstractions.NullLogger<DockerRuntime>.Instance);
        var networks = await engine.Client.Networks.ListNetworksAsync(new NetworksListParameters());

        var problem = await runtime.CheckBridgeIsolationAsync(CancellationToken.None);

        // CI's engine runs with --bridge=none, so only that branch is exercised there.
        if (networks.SingleOrDefault(n => n.Name == "bridge") is { } bridge)
        {
            Assert.Equal(DockerRuntime.BridgeIsolationProblem(bridge.Options), problem);
        }
        else
        {
            Assert.Equal("the engine has no default bridge network (dockerd --bridge=none): replicas cannot start in bridge mode", problem);
        }
        using var host = new DockerRuntime(DockerRuntime.CreateClient(null), new DockerRuntimeOptions { NodeId = () => "n-test", Network = DockerNetworkMode.Host }, Microsoft.Extensions.Logging.Abstractions.NullLogger<DockerRuntime>.Instance);
        Assert.Null(await host.CheckBridgeIsolationAsync(CancellationToken.None));
    }

    [Fact]
    public Task Agent_restart_readopts_delete_removes_and_containers_without_its_labels_are_untouched() => RunAsync("rtx-4090:2", async stack =>
    {
        var foreign = await engine.StartForeignContainerAsync("shoal-test-foreign-" + Guid.NewGuid().ToString("N")[..8], new Dictionary<string, string>());
        var otherNode = await engine.StartForeignContainerAsync("shoal-test-other-node-" + Guid.NewGuid().ToString("N")[..8], new Dictionary<string, string>
        {
            [DockerLabels.Managed] = "true",
            [DockerLabels.Node] = "n-someoneelse",
            [DockerLabels.Replica] = "web-zzzzzz",
        });
        await stack.DeployAsync(Web("web", 2));
        await stack.WaitReadyAsync("web", 2);
        var before = (await engine.NodeContainersAsync(stack.NodeId)).Select(c => c.ID).Order().ToArray();
        Assert.Equal(2, before.Length);

        // The agent goes away: its containers keep serving.
        await stack.StopAgentAsync();
        Assert.All(await engine.NodeContainersAsync(stack.NodeId), c => Assert.Equal("running", c.State));

        // It comes back: the same containers are re-adopted, none started twice.
        var restartedAt = DateTimeOffset.UtcNow;
        await stack.StartAgentAsync();
        // Ready as reported by the new agent (its supervision began after the restart).
        var status = await stack.WaitAsync("web", s => s.Replicas.Length == 2 && s.Replicas.All(r => r is { State: ReplicaState.Ready, Healthy: true } && r.StartedAt > restartedAt), "replicas re-adopted by the new agent");
        Assert.All(status.Replicas, r => Assert.Equal(0, r.Restarts));
        Assert.Equal(before, (await engine.NodeContainersAsync(stack.NodeId)).Select(c => c.ID).Order().ToArray());
        using (var response = await stack.Edge.GetAsync("/c/web/health"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Delete the cluster: its containers are gone; the others are still running.
        using (var deleted = await stack.Http.DeleteAsync("/v1/clusters/web"))
        {
            Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        }
        await Eventually.GetAsync(() => engine.NodeContainersAsync(stack.NodeId), list => list.Count == 0, TimeSpan.FromSeconds(30), "the cluster's containers removed");
        foreach (var id in (string[])[foreign, otherNode])
        {
            var inspect = await engine.Client.Containers.InspectContainerAsync(id);
            Assert.True(inspect.State!.Running, $"container {inspect.Name} was touched");
        }
    });

    [Fact]
    public Task An_orphan_labelled_container_of_an_unknown_replica_is_removed_within_a_heartbeat_interval_without_any_assignment_change() => RunAsync("rtx-4090:1", async stack =>
    {
        var node = (await stack.NodesAsync()).Single();
        // Shoal's labels for this node, a replica the agent was never given (as a dead agent's
        // container, or one started by hand): it would hold its GPU until the next assignment change.
        var orphan = await engine.StartForeignContainerAsync("shoal-test-orphan-" + Guid.NewGuid().ToString("N")[..8], new Dictionary<string, string>
        {
            [DockerLabels.Managed] = "true",
            [DockerLabels.Node] = stack.NodeId,
            [DockerLabels.Replica] = "gone-abcdef",
        });
        var foreign = await engine.StartForeignContainerAsync("shoal-test-foreign-" + Guid.NewGuid().ToString("N")[..8], new Dictionary<string, string>());
        var started = DateTime.UtcNow;

        // The server's heartbeat interval is 2 s: the sweep after the next heartbeat removes it.
        await Eventually.GetAsync(() => engine.NodeContainersAsync(stack.NodeId), list => list.All(c => c.ID != orphan), TimeSpan.FromSeconds(10), "the orphan removed");
        output.WriteLine($"orphan removed after {(DateTime.UtcNow - started).TotalMilliseconds:0} ms");
        Assert.Contains($"Removing container {orphan} of replica gone-abcdef", stack.Output, StringComparison.Ordinal);
        Assert.True((await engine.Client.Containers.InspectContainerAsync(foreign)).State!.Running, "a container without Shoal's labels was touched");
        // Nothing was assigned meanwhile: the sweep ran on the heartbeat, not on an assignment set.
        Assert.Equal(node.Revision, (await stack.NodesAsync()).Single().Revision);
    });

    [Fact]
    public Task Pull_failures_end_as_clear_reasons_retried_with_backoff_while_the_agent_stays_healthy() => RunAsync("rtx-4090:5", async stack =>
    {
        await using var registry = await FakeRegistry.StartAsync();
        await using var privateRegistry = await FakeRegistry.StartAsync(isPrivate: true);
        await stack.DeployAsync(Web("nothing", 1, $"{registry.Host}/shoal-test/nothing:1"));
        await stack.DeployAsync(Web("notag", 1, $"{registry.Host}/shoal-test/web:nosuchtag"));
        await stack.DeployAsync(Web("denied", 1, $"{privateRegistry.Host}/shoal-test/model:1"));
        await stack.DeployAsync(Web("private", 1, $"{privateRegistry.Host}/shoal-test/web:2") with
        {
            RegistryAuth = new RegistryCredentials { Username = "alice", Password = "s3cret-pw" },
        });

        static Func<ClusterStatusDto, bool> FailedWith(string text, int restarts) => s =>
            s.Replicas.Length == 1 && s.Replicas[0] is { State: ReplicaState.Failed, Reason: { } reason } r
            && reason.Contains(text, StringComparison.Ordinal) && reason.Contains("retrying in", StringComparison.Ordinal) && r.Restarts >= restarts;

        // Retried with back-off: the restart count goes up (1 s, then 2 s) and the reason stays clear.
        var nothing = await stack.WaitAsync("nothing", FailedWith("image pull failed: no such image", 2), "a missing image retried twice", 30);
        var notag = await stack.WaitAsync("notag", FailedWith("image pull failed: no such tag", 2), "a missing tag retried twice", 30);
        var denied = await stack.WaitAsync("denied", FailedWith("image pull failed: access denied", 1), "an image that needs credentials", 30);
        output.WriteLine(nothing.Replicas[0].Reason);
        output.WriteLine(notag.Replicas[0].Reason);
        output.WriteLine(denied.Replicas[0].Reason);

        // The credentials reached the registry (and only there: the API never shows the password).
        await stack.WaitAsync("private", FailedWith("no such tag", 1), "the private image tried with credentials", 30);
        Assert.Contains("alice", privateRegistry.AuthenticatedUsers);
        var cluster = await stack.Http.GetStringAsync("/v1/clusters/private");
        Assert.Contains("\"registryUser\":\"alice\"", cluster, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret-pw", cluster, StringComparison.Ordinal);

        // The agent stays healthy: its node is ready and a good image still deploys.
        Assert.Equal(NodeState.Ready, (await stack.NodesAsync()).Single().State);
        await stack.DeployAsync(Web("good", 1));
        await stack.WaitReadyAsync("good", 1);
    });
}
