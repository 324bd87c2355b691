using System.Diagnostics;
using System.Net.Http.Json;
using Shoal.Contracts;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Chaos.Tests;

/// <summary>
/// Issue 4's rollout scenarios on the chaos stack (real server with its edge, three agents in tunnel
/// mode, a 2-replica simulator cluster) under steady load through the edge: a rolling update, a
/// scale-down, a node drain, and broken updates that roll back. Every one must fail no request:
/// replicas leave routing first and stop only once their in-flight requests are done.
/// </summary>
[Trait(Categories.Name, Categories.EndToEnd)]
[Trait(Categories.Name, Categories.Chaos)]
public sealed class RolloutChaosTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_loadCap = TimeSpan.FromSeconds(240);

    [Fact]
    public async Task A_rolling_update_and_a_scale_down_under_load_fail_no_request()
    {
        await using var stack = await ChaosStack.StartAsync(output);
        try
        {
            var clock = Stopwatch.StartNew();
            var before = await stack.StatusAsync();
            var oldIds = before.Replicas.Select(r => r.Id).ToHashSet(StringComparer.Ordinal);
            await using var load = new SteadyLoad(stack.EdgeAddress, stack.EndpointKey, ChaosStack.Cluster, clock, maxDuration: s_loadCap);
            await load.WaitForMoreAsync(200, TimeSpan.FromSeconds(30));

            // Rolling update: a new env is a new generation; replicas are replaced one at a time.
            var updateAt = clock.Elapsed.TotalMilliseconds;
            var updateAtUtc = DateTimeOffset.UtcNow;
            var updated = await PatchAsync(stack, new UpdateClusterRequest { Env = new() { ["SIM_SEED"] = "7" } });
            Assert.Equal(RolloutStates.Progressing, updated.Rollout!.State);
            var complete = await Eventually.GetAsync(stack.StatusAsync,
                s => s.Cluster.Rollout?.State == RolloutStates.Complete || s.Cluster.Rollout?.State == RolloutStates.RolledBack,
                TimeSpan.FromSeconds(120), "update complete");
            var updateMs = clock.Elapsed.TotalMilliseconds - updateAt;
            Assert.Equal(RolloutStates.Complete, complete.Cluster.Rollout!.State);
            Assert.Equal(2, complete.Replicas.Length);
            Assert.All(complete.Replicas, r => Assert.Equal(updated.Generation, r.Generation));
            Assert.DoesNotContain(complete.Replicas, r => oldIds.Contains(r.Id));
            var newIds = complete.Replicas.Select(r => r.Id).ToList();
            await Eventually.UntilAsync(() => newIds.All(id => load.Outcomes.Any(o => o.Replica == id)), TimeSpan.FromSeconds(15), "both new replicas serve");
            var events = await stack.EventsAsync();
            PrintEvents(events, updateAtUtc);
            var drains = DrainTimes(events, updateAtUtc);
            Assert.Equal(2, drains.Count);

            // Scale down 2 → 1: the surplus replica drains before it stops.
            var scaleAt = clock.Elapsed.TotalMilliseconds;
            var scaleAtUtc = DateTimeOffset.UtcNow;
            await PatchAsync(stack, new UpdateClusterRequest { Replicas = 1 });
            var scaled = await Eventually.GetAsync(stack.StatusAsync, s => s.Replicas.Length == 1 && s.Cluster.ReadyReplicas == 1,
                TimeSpan.FromSeconds(60), "scaled down to 1");
            var scaleMs = clock.Elapsed.TotalMilliseconds - scaleAt;
            await load.WaitForMoreAsync(100, TimeSpan.FromSeconds(30));
            await load.StopAsync();

            events = await stack.EventsAsync();
            PrintEvents(events, scaleAtUtc);
            var scaleDrain = Assert.Single(DrainTimes(events, scaleAtUtc));
            var removed = newIds.Single(id => id != scaled.Replicas[0].Id);
            Assert.Contains(events, e => e.Type == ClusterEventTypes.Draining && e.Replica == removed && e.Message.Contains("scaled down", StringComparison.Ordinal));

            var outcomes = load.Outcomes.ToList();
            var failed = outcomes.Where(o => o.Failed).ToList();
            var during = outcomes.Where(o => o.StartMs >= updateAt && o.StartMs < updateAt + updateMs).ToList();
            // The removed replica served until it drained, and nothing after it stopped.
            var drainedAt = (events.Last(e => e.Type == ClusterEventTypes.Drained && e.Replica == removed).At - scaleAtUtc).TotalMilliseconds + scaleAt;
            Assert.DoesNotContain(outcomes, o => o.Replica == removed && o.StartMs > drainedAt);
            Figures.Report(output, "rolling-update",
            [
                ("update_ms", updateMs),
                ("drain_ms_max", drains.Max()),
                ("requests_during_update", during.Count),
                ("p99_ms_during_update", Percentile(during.Select(o => o.EndMs - o.StartMs), 0.99)),
                ("max_ms_during_update", during.Count == 0 ? 0 : during.Max(o => o.EndMs - o.StartMs)),
                ("failed", failed.Count),
            ]);
            Figures.Report(output, "scale-down",
            [
                ("scale_down_ms", scaleMs),
                ("drain_ms", scaleDrain),
                ("requests", outcomes.Count),
                ("failed", failed.Count),
            ]);
            Scenario.AssertNoneFailed(outcomes);
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }

    [Fact]
    public async Task Draining_a_node_under_load_moves_its_replica_and_fails_no_request()
    {
        await using var stack = await ChaosStack.StartAsync(output);
        try
        {
            var clock = Stopwatch.StartNew();
            var before = await stack.StatusAsync();
            var victim = before.Replicas[0];
            await using var load = new SteadyLoad(stack.EdgeAddress, stack.EndpointKey, ChaosStack.Cluster, clock, maxDuration: s_loadCap);
            await load.WaitForMoreAsync(200, TimeSpan.FromSeconds(30));
            Assert.Contains(load.Outcomes, o => o.Replica == victim.Id);

            var drainAt = clock.Elapsed.TotalMilliseconds;
            var drainAtUtc = DateTimeOffset.UtcNow;
            var response = await stack.Api.PostAsync($"/v1/nodes/{victim.Node}/drain", null);
            response.EnsureSuccessStatusCode();
            var node = (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.NodeDto))!;
            Assert.Equal(NodeState.Draining, node.State);

            var moved = await Eventually.GetAsync(stack.StatusAsync,
                s => s.Replicas.Length == 2 && s.Cluster.ReadyReplicas == 2 && s.Replicas.All(r => r.Node != victim.Node),
                TimeSpan.FromSeconds(60), "replica moved off the drained node");
            var movedMs = clock.Elapsed.TotalMilliseconds - drainAt;
            var replacement = Assert.Single(moved.Replicas, r => before.Replicas.All(b => b.Id != r.Id));
            await Eventually.UntilAsync(() => load.Outcomes.Any(o => o.Replica == replacement.Id), TimeSpan.FromSeconds(15), "the replacement serves");
            var drained = await Eventually.GetAsync(stack.NodesAsync, n => n.Single(x => x.Id == victim.Node).State == NodeState.Cordoned,
                TimeSpan.FromSeconds(10), "node done draining");
            Assert.Equal(0, drained.Single(x => x.Id == victim.Node).Replicas);
            await load.StopAsync();

            var events = await stack.EventsAsync();
            PrintEvents(events, drainAtUtc);
            var drainMs = Assert.Single(DrainTimes(events, drainAtUtc));
            var outcomes = load.Outcomes.ToList();
            var failed = outcomes.Where(o => o.Failed).ToList();
            var during = outcomes.Where(o => o.StartMs >= drainAt && o.StartMs < drainAt + movedMs).ToList();
            Figures.Report(output, "node-drain",
            [
                ("moved_ms", movedMs),
                ("drain_ms", drainMs),
                ("requests", outcomes.Count),
                ("p99_ms_during_drain", Percentile(during.Select(o => o.EndMs - o.StartMs), 0.99)),
                ("failed", failed.Count),
            ]);
            Scenario.AssertNoneFailed(outcomes);

            // Uncordoned, it takes replicas again.
            (await stack.Api.PostAsync($"/v1/nodes/{victim.Node}/uncordon", null)).EnsureSuccessStatusCode();
            Assert.Equal(NodeState.Ready, (await stack.NodesAsync()).Single(x => x.Id == victim.Node).State);
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }

    [Fact]
    public async Task Broken_updates_roll_back_under_load_without_touching_the_old_replicas_or_failing_a_request()
    {
        await using var stack = await ChaosStack.StartAsync(output);
        try
        {
            var clock = Stopwatch.StartNew();
            var before = await stack.StatusAsync();
            var oldIds = before.Replicas.Select(r => r.Id).Order(StringComparer.Ordinal).ToArray();
            await using var load = new SteadyLoad(stack.EdgeAddress, stack.EndpointKey, ChaosStack.Cluster, clock, maxDuration: s_loadCap);
            await load.WaitForMoreAsync(200, TimeSpan.FromSeconds(30));

            // 1. An image no node may run: the first new replica fails at once; `shoal update --wait` says why.
            var imageAt = clock.Elapsed.TotalMilliseconds;
            var (imageExit, imageOutput) = await RunCliAsync(stack, "update", ChaosStack.Cluster, "--image", "shoal/broken", "--wait", "--timeout", "2m");
            var imageMs = clock.Elapsed.TotalMilliseconds - imageAt;
            output.WriteLine($"shoal update --image shoal/broken --wait: exit {imageExit}\n{imageOutput}");
            Assert.Equal(8, imageExit);
            Assert.Contains("was rolled back", imageOutput, StringComparison.Ordinal);
            Assert.Contains("could not get its image", imageOutput, StringComparison.Ordinal);
            await AssertOldReplicasServeAsync(stack, oldIds, "shoal/sim");

            // 2. An image that crashes at start (the simulator refuses a bad setting and exits 2):
            //    restarted with back-off, and after 3 restarts the update rolls back.
            var crashAt = clock.Elapsed.TotalMilliseconds;
            var crashAtUtc = DateTimeOffset.UtcNow;
            var (crashExit, crashOutput) = await RunCliAsync(stack, "update", ChaosStack.Cluster, "-e", "SIM_SPEED=broken", "--wait", "--timeout", "3m");
            var crashMs = clock.Elapsed.TotalMilliseconds - crashAt;
            output.WriteLine($"shoal update -e SIM_SPEED=broken --wait: exit {crashExit}\n{crashOutput}");
            Assert.Equal(8, crashExit);
            Assert.Contains("restarted 3 times", crashOutput, StringComparison.Ordinal);
            Assert.Contains("exited with code 2", crashOutput, StringComparison.Ordinal);
            var after = await AssertOldReplicasServeAsync(stack, oldIds, "shoal/sim");
            Assert.False(after.Cluster.Env.ContainsKey("SIM_SPEED"));

            var served = load.Count;
            await load.WaitForMoreAsync(100, TimeSpan.FromSeconds(30));
            await load.StopAsync();
            var events = await stack.EventsAsync();
            PrintEvents(events, crashAtUtc.AddSeconds(-30));
            Assert.Equal(2, events.Count(e => e.Type == ClusterEventTypes.RolledBack));
            Assert.DoesNotContain(events, e => e.Type is ClusterEventTypes.Draining or ClusterEventTypes.Drained);

            var outcomes = load.Outcomes.ToList();
            var failed = outcomes.Where(o => o.Failed).ToList();
            Assert.True(served > 0);
            Figures.Report(output, "broken-update",
            [
                ("image_rollback_ms", imageMs),
                ("crash_rollback_ms", crashMs),
                ("requests", outcomes.Count),
                ("failed", failed.Count),
            ]);
            Scenario.AssertNoneFailed(outcomes);
        }
        catch
        {
            stack.DumpOutput();
            throw;
        }
    }

    private static async Task<ClusterStatusDto> AssertOldReplicasServeAsync(ChaosStack stack, string[] oldIds, string image)
    {
        // The failed replica is removed at once; the old ones were never drained or restarted.
        var status = await Eventually.GetAsync(stack.StatusAsync, s => s.Replicas.Length == 2, TimeSpan.FromSeconds(15), "broken replica removed");
        Assert.Equal(RolloutStates.RolledBack, status.Cluster.Rollout!.State);
        Assert.Equal(image, status.Cluster.Image);
        Assert.Equal(oldIds, status.Replicas.Select(r => r.Id).Order(StringComparer.Ordinal).ToArray());
        Assert.All(status.Replicas, r =>
        {
            Assert.Equal(ReplicaState.Ready, r.State);
            Assert.Equal(0, r.Restarts);
        });
        Assert.Equal(2, status.Cluster.ReadyReplicas);
        return status;
    }

    private static async Task<ClusterDto> PatchAsync(ChaosStack stack, UpdateClusterRequest request)
    {
        var response = await stack.Api.PatchAsJsonAsync($"/v1/clusters/{ChaosStack.Cluster}", request, ShoalJsonContext.Default.UpdateClusterRequest);
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"PATCH: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return (await response.Content.ReadFromJsonAsync(ShoalJsonContext.Default.ClusterDto))!;
    }

    // The real `shoal` client as a process: its exit code and everything it printed.
    private static async Task<(int Exit, string Output)> RunCliAsync(ChaosStack stack, params string[] args)
    {
        var info = new ProcessStartInfo(ShoalProcess.ExecutablePath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("--addr");
        info.ArgumentList.Add(stack.Api.BaseAddress!.ToString());
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["NO_COLOR"] = "1";
        info.Environment["SHOAL_API_KEY"] = stack.OperatorKey;
        info.Environment["COLUMNS"] = "400";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        await process.WaitForExitAsync(cts.Token);
        // Spectre wraps long lines: join them back for the assertions.
        var text = (await stdout) + "\n" + (await stderr);
        return (process.ExitCode, string.Join(' ', text.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)));
    }

    // Milliseconds from each replica's "draining" to its "drained" event, for drains that began after `since`.
    private static List<double> DrainTimes(ClusterEventDto[] events, DateTimeOffset since) =>
        events.Where(e => e.Type == ClusterEventTypes.Draining && e.At >= since)
            .Select(d => events.FirstOrDefault(e => e.Type == ClusterEventTypes.Drained && e.Replica == d.Replica && e.Seq > d.Seq) is { } done
                ? (done.At - d.At).TotalMilliseconds
                : double.NaN)
            .Where(ms => !double.IsNaN(ms))
            .ToList();

    private void PrintEvents(ClusterEventDto[] events, DateTimeOffset since)
    {
        foreach (var e in events.Where(e => e.At >= since))
        {
            output.WriteLine($"{(e.At - since).TotalMilliseconds,8:0} ms  {e.Type,-16} {e.Replica,-14} {e.NodeName,-8} {e.Message}");
        }
    }

    private static double Percentile(IEnumerable<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
    }
}
