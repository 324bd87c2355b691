using Shoal.Contracts;
using Shoal.Store;

namespace Shoal.Store.Tests;

// The usage ledger and replica runs (issue 16), on every store.
public abstract partial class StoreContractTests
{
    private static readonly DateTimeOffset s_t0 = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);

    private static UsageRecord Usage(string id, int secondsAfter, string project = "p1", string? key = "key-a", string cluster = "llama",
        string? node = "node-1", int status = 200, bool cut = false, decimal cost = 0) => new()
        {
            RequestId = id,
            At = s_t0.AddSeconds(secondsAfter),
            KeyId = key,
            Project = project,
            Cluster = cluster,
            Model = "m",
            ReplicaId = node is null ? null : "r-" + node,
            NodeId = node,
            PromptTokens = 10,
            CompletionTokens = 20,
            TimeToFirstTokenMs = 12.345,
            DurationMs = 250.5,
            Status = status,
            Attempts = 2,
            Streamed = true,
            Cut = cut,
            CostUsd = cost,
            Edge = "edge-1",
        };

    [Fact]
    public async Task Usage_batch_stored_twice_keeps_one_row_per_request_id()
    {
        var store = await OpenMigratedAsync();
        UsageRecord[] batch = [Usage("req-1", 0, cost: 0.000123456789m), Usage("req-2", 1), Usage("req-3", 2, cut: true)];

        await store.AppendUsageAsync(batch);
        await store.AppendUsageAsync(batch);
        await store.AppendUsageAsync([batch[1], Usage("req-4", 3)]);

        var rows = await store.ListUsageAsync(s_t0.AddHours(-1), s_t0.AddHours(1));
        Assert.Equal(["req-1", "req-2", "req-3", "req-4"], rows.Select(r => r.RequestId));
        Assert.Equal(batch[0] with { CostUsd = 0.000123457m }, rows[0]);
        Assert.Equal(batch[2], rows[2]);
        Assert.Equal(0.000123457m, rows[0].CostUsd);
    }

    [Fact]
    public async Task Usage_is_summed_by_group_and_limited_to_a_project_when_asked()
    {
        var store = await OpenMigratedAsync();
        await store.AppendUsageAsync(
        [
            Usage("a", 0, project: "p1", key: "k1", node: "n1", cost: 0.25m),
            Usage("b", 1, project: "p1", key: "k1", node: "n2", status: 502, cost: 0.5m),
            Usage("c", 2, project: "p2", key: "k2", node: null, status: 429),
            Usage("d", 3, project: "p2", key: null, node: "n1", cut: true),
            Usage("old", -7200, project: "p1"),
        ]);
        var query = new UsageQuery { By = UsageGroupings.Key, Since = s_t0.AddMinutes(-5), Until = s_t0.AddMinutes(5) };

        var byKey = await store.QueryUsageAsync(query);
        Assert.Equal(["-", "k1", "k2"], byKey.Select(r => r.Group));
        var k1 = byKey[1];
        Assert.Equal((2L, 20L, 40L, 0.75m, 1L), (k1.Requests, k1.PromptTokens, k1.CompletionTokens, k1.CostUsd, k1.Errors));

        var byNode = await store.QueryUsageAsync(query with { By = UsageGroupings.Node });
        Assert.Equal([("-", 1L), ("n1", 2L), ("n2", 1L)], byNode.Select(r => (r.Group, r.Requests)));
        Assert.Equal([1L, 1L, 1L], byNode.Select(r => r.Errors));

        var p2Only = await store.QueryUsageAsync(query with { By = UsageGroupings.Project, Project = "p2" });
        Assert.Equal(("p2", 2L, 2L), Assert.Single(p2Only) is var p ? (p.Group, p.Requests, p.Errors) : default);
    }

    [Fact]
    public async Task Replica_runs_give_gpu_seconds_within_the_period_the_same_every_time()
    {
        var store = await OpenMigratedAsync();
        ReplicaRunRecord Run(string id, string node, int gpus, int startSec, int? endSec) => new()
        {
            ReplicaId = id, ClusterId = "c-1", Cluster = "llama", Project = "p1", NodeId = node, Gpus = gpus,
            StartedAt = s_t0.AddSeconds(startSec), EndedAt = endSec is { } e ? s_t0.AddSeconds(e) : null,
        };
        // r1: 2 GPUs for 90 s (started, then ended; the start written again changes nothing, nor does a later end).
        await CommitAsync(store, c => c.ReplicaRuns.Add(Run("r1", "n1", 2, 0, null)));
        await CommitAsync(store, c => c.ReplicaRuns.Add(Run("r1", "n1", 2, 0, 90)));
        await CommitAsync(store, c => c.ReplicaRuns.AddRange([Run("r1", "n1", 2, 0, null), Run("r1", "n1", 2, 0, 500)]));
        // r2 on n2: 1 GPU from 30 s, still running; r3 ran before the period.
        await CommitAsync(store, c => c.ReplicaRuns.AddRange([Run("r2", "n2", 1, 30, null), Run("r3", "n1", 4, -1000, -900)]));

        var query = new UsageQuery { By = UsageGroupings.Node, Since = s_t0.AddSeconds(-60), Until = s_t0.AddSeconds(120) };
        for (var i = 0; i < 2; i++)
        {
            var byNode = await store.QueryUsageAsync(query);
            Assert.Equal([("n1", 180.0), ("n2", 90.0)], byNode.Select(r => (r.Group, r.GpuSeconds)));
        }
        // Half of r1's run falls in [45 s, 120 s).
        var byCluster = await store.QueryUsageAsync(query with { By = UsageGroupings.Cluster, Since = s_t0.AddSeconds(45) });
        Assert.Equal(("llama", 2 * 45.0 + 75.0), (byCluster[0].Group, byCluster[0].GpuSeconds));
        Assert.Empty(await store.QueryUsageAsync(query with { By = UsageGroupings.Project, Project = "p2" }));
        Assert.Equal(3, (await store.ListReplicaRunsAsync(s_t0.AddHours(-1), s_t0.AddHours(1))).Count);
    }

    [Fact]
    public async Task Many_runs_in_one_commit_keep_the_first_end_each_was_given()
    {
        var store = await OpenMigratedAsync();
        ReplicaRunRecord Run(string id, int? endSec) => new()
        {
            ReplicaId = id, ClusterId = "c-1", Cluster = "llama", Project = "p1", NodeId = "n1", Gpus = 1,
            StartedAt = s_t0, EndedAt = endSec is { } e ? s_t0.AddSeconds(e) : null,
        };
        // Enough rows that a store writing them as one statement over arrays does so; then the same runs again,
        // one of them twice with two ends.
        await CommitAsync(store, c => c.ReplicaRuns.AddRange([Run("r5", null), Run("r6", 10), Run("r7", null), Run("r8", null)]));
        await CommitAsync(store, c => c.ReplicaRuns.AddRange([Run("r5", 20), Run("r5", 30), Run("r6", 99), Run("r7", null), Run("r8", 40)]));
        await CommitAsync(store, c => c.ReplicaRuns.AddRange([Run("r5", 50), Run("r6", 50), Run("r7", 50), Run("r8", 50)]));

        var runs = (await store.ListReplicaRunsAsync(s_t0.AddHours(-1), s_t0.AddHours(1))).OrderBy(r => r.ReplicaId, StringComparer.Ordinal).ToList();
        Assert.Equal([("r5", 20.0), ("r6", 10.0), ("r7", 50.0), ("r8", 40.0)], runs.Select(r => (r.ReplicaId, (r.EndedAt!.Value - s_t0).TotalSeconds)));
    }
}
