using Shoal.Core.Clusters;
using Shoal.Store;

namespace Shoal.ControlPlane.Tests;

/// <summary>
/// Issue 12: creates that arrive while the state's lock is held go together, under one hold and in
/// one store commit; a name taken (in the model, or earlier in the same batch) is refused alone.
/// </summary>
public sealed class ClusterCreateBatchTests
{
    private static ClusterSpec Spec(string name) => new() { Name = name, Image = "shoal/sim", Gpu = "rtx-4090", Replicas = 1 };

    [Fact]
    public async Task Creates_queued_behind_a_commit_commit_together_and_a_taken_name_is_refused_alone()
    {
        await using var h = await StateHarness.StartAsync();
        await h.State.CreateClusterAsync(Spec("existing"), default);

        // A slow commit holds the lock…
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Store.Hold = hold;
        var before = h.Store.Commits;
        var first = h.State.CreateClusterViewAsync(Spec("first"), "default", "alice", default);
        await Eventually.UntilAsync(() => h.Store.Commits > before, what: "the first create's commit under way");

        // …while more creates arrive: new names, one taken in the model, one twice in the batch.
        var queued = new[] { "a", "b", "existing", "c", "a" }.Select(n => h.State.CreateClusterViewAsync(Spec(n), "default", "bob", default)).ToArray();
        Assert.All(queued, t => Assert.False(t.IsCompleted));
        hold.SetResult();

        Assert.Equal("first", (await first).Cluster.Name);
        Assert.Equal("a", (await queued[0]).Cluster.Name);
        Assert.Equal("b", (await queued[1]).Cluster.Name);
        Assert.Equal("c", (await queued[3]).Cluster.Name);
        Assert.Contains("'existing' already exists", (await Assert.ThrowsAsync<StoreConflictException>(() => queued[2])).Message);
        Assert.Contains("'a' already exists", (await Assert.ThrowsAsync<StoreConflictException>(() => queued[4])).Message);
        // The first commit, then one for the three that queued behind it.
        Assert.Equal(before + 2, h.Store.Commits);
        var stored = (await h.Store.LoadAsync()).Clusters.Select(c => c.Spec.Name).Order(StringComparer.Ordinal);
        Assert.Equal(["a", "b", "c", "existing", "first"], stored);
        Assert.Equal(4, (await h.State.ListClustersAsync(default)).Count(c => c.Cluster.Name is "a" or "b" or "c" or "first"));
    }

    [Fact]
    public async Task A_batch_whose_commit_fails_creates_none_of_it_and_each_caller_hears_why()
    {
        await using var h = await StateHarness.StartAsync();
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Store.Hold = hold;
        var before = h.Store.Commits;
        var first = h.State.CreateClusterViewAsync(Spec("first"), "default", null, default);
        await Eventually.UntilAsync(() => h.Store.Commits > before, what: "the first create's commit under way");
        var queued = new[] { "x", "y" }.Select(n => h.State.CreateClusterViewAsync(Spec(n), "default", null, default)).ToArray();

        // The store refuses the held commit and the next one.
        var failing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        failing.SetException(new InvalidOperationException("store down"));
        h.Store.Hold = failing;
        hold.SetException(new InvalidOperationException("store down"));

        Assert.Equal("store down", (await Assert.ThrowsAsync<InvalidOperationException>(() => first)).Message);
        foreach (var t in queued) Assert.Equal("store down", (await Assert.ThrowsAsync<InvalidOperationException>(() => t)).Message);
        Assert.Empty(await h.State.ListClustersAsync(default));

        // The store back: the same names can be created.
        h.Store.Hold = null;
        Assert.Equal("x", (await h.State.CreateClusterViewAsync(Spec("x"), "default", null, default)).Cluster.Name);
    }
}
