using Shoal.Contracts;
using Shoal.Core.Clusters;
using Shoal.Core.Model;
using Shoal.Core.Security;
using Shoal.Store;

namespace Shoal.ControlPlane.State;

/// <summary>
/// Cluster creates, many under one hold of the state's lock and in one store commit. A deploy
/// script's creates arrive together (32 at a time in the fleet bench); one by one, each waited in the
/// lock's queue behind whatever came before it (a reconcile pass, a flush), and each committed alone.
/// Now the first create to find no batch running takes the lock for all that are queued by then:
/// each is checked (a name taken, in the model or earlier in the batch, is refused alone), all that
/// pass commit together, and each caller gets its own view, or the commit's failure.
/// </summary>
public sealed partial class ControlPlaneState
{
    private readonly StateBatch<PendingCreate> _creates;

    /// <summary>
    /// Creates a cluster as <see cref="CreateClusterAsync(ClusterSpec, string, string?, CancellationToken)"/> does and
    /// returns its view as of the creation, taken while the state's lock is still held (no second wait for it).
    /// </summary>
    public Task<ClusterView> CreateClusterViewAsync(ClusterSpec spec, string project, string? actor, CancellationToken ct)
    {
        if (ct.IsCancellationRequested) return Task.FromCanceled<ClusterView>(ct);
        var create = new PendingCreate(spec, project, actor, ct);
        _creates.Add(create);
        return create.Task;
    }

    // One batch of creates under the lock: each checked, all that pass in one commit, then applied.
    private async Task<Action> CreateBatchLockedAsync(List<PendingCreate> batch)
    {
        var now = _time.GetUtcNow();
        var changes = new StoreChanges();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var records = new List<(PendingCreate Create, ClusterRecord Cluster)>();
        var refused = new List<PendingCreate>();
        foreach (var c in batch)
        {
            if (c.Token.IsCancellationRequested) continue;
            if (_clusterIdsByName.ContainsKey(c.Spec.Name) || !names.Add(c.Spec.Name))
            {
                refused.Add(c);
                continue;
            }
            var cluster = new ClusterRecord
            {
                Id = "c-" + Secrets.RandomId(12),
                Project = c.Project,
                Spec = c.Spec,
                Generation = 1,
                CreatedAt = now,
                UpdatedAt = now,
            };
            changes.UpsertClusters.Add(cluster);
            changes.AppendEvents.Add(NewEventLocked(cluster.Id, now, ClusterEventTypes.Created,
                $"created: {c.Spec.Image} on {c.Spec.Gpu}, {c.Spec.Replicas} replicas", actor: c.Actor));
            records.Add((c, cluster));
        }
        var created = new List<(PendingCreate Create, ClusterView View)>();
        if (records.Count > 0)
        {
            await CommitLockedAsync(changes, CancellationToken.None);
            foreach (var (c, cluster) in records)
            {
                _clustersById[cluster.Id] = cluster;
                _clusterIdsByName[cluster.Name] = cluster.Id;
                created.Add((c, ViewOf(cluster, [])));
            }
        }
        return () =>
        {
            if (created.Count > 0)
            {
                foreach (var (c, _) in created) LogClusterCreated(_logger, c.Spec.Name, c.Spec.Image, c.Spec.Gpu, c.Spec.Replicas);
                ReconcileNeeded?.Invoke();
                RoutesChanged?.Invoke();
            }
            foreach (var (c, view) in created) c.TrySetResult(view);
            foreach (var c in refused) c.TrySetException(new StoreConflictException($"cluster '{c.Spec.Name}' already exists"));
            // What is left was cancelled by its caller before the batch took it.
            foreach (var c in batch) c.TrySetCanceled(c.Token);
        };
    }

    // Completed on the batch's thread once the lock is released (no RunContinuationsAsynchronously): a
    // caller's continuation runs there instead of waking a thread of its own. Only the first completion counts.
    private sealed class PendingCreate(ClusterSpec spec, string project, string? actor, CancellationToken ct) : TaskCompletionSource<ClusterView>
    {
        public ClusterSpec Spec { get; } = spec;
        public string Project { get; } = project;
        public string? Actor { get; } = actor;
        public CancellationToken Token { get; } = ct;
    }
}
