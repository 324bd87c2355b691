using Shoal.Core.Model;
using Shoal.Store;

namespace Shoal.ControlPlane.Tests;

/// <summary>A real store that counts the commits made through it, and can hold the next ones back (to show what waits on the state's lock).</summary>
internal sealed class CountingStore(IShoalStore inner) : IShoalStore
{
    private int _commits;

    public int Commits => Volatile.Read(ref _commits);

    /// <summary>When set, commits wait for it (the state's lock is held meanwhile).</summary>
    public TaskCompletionSource? Hold { get; set; }

    public string Kind => inner.Kind;
    public Task MigrateAsync(CancellationToken cancellationToken = default) => inner.MigrateAsync(cancellationToken);
    public Task<int> GetSchemaVersionAsync(CancellationToken cancellationToken = default) => inner.GetSchemaVersionAsync(cancellationToken);
    public Task<StoreSnapshot> LoadAsync(CancellationToken cancellationToken = default) => inner.LoadAsync(cancellationToken);

    public async Task CommitAsync(StoreChanges changes, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _commits);
        if (Hold is { } hold) await hold.Task.WaitAsync(cancellationToken);
        await inner.CommitAsync(changes, cancellationToken);
    }

    public Task<IReadOnlyList<ClusterEventRecord>> ListEventsAsync(string clusterId, int limit, CancellationToken cancellationToken = default) => inner.ListEventsAsync(clusterId, limit, cancellationToken);
    public Task CreateTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default) => inner.CreateTokenAsync(token, cancellationToken);
    public Task<TokenUseOutcome> UseTokenAsync(string tokenHash, DateTimeOffset now, CancellationToken cancellationToken = default) => inner.UseTokenAsync(tokenHash, now, cancellationToken);
    public Task<ProvisioningTokenRecord?> FindTokenAsync(string tokenHash, CancellationToken cancellationToken = default) => inner.FindTokenAsync(tokenHash, cancellationToken);
    public Task<IReadOnlyList<ProvisioningTokenRecord>> ListTokensAsync(CancellationToken cancellationToken = default) => inner.ListTokensAsync(cancellationToken);
    public Task<bool> RevokeTokenAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default) => inner.RevokeTokenAsync(id, now, cancellationToken);
    public Task CreateProjectAsync(ProjectRecord project, CancellationToken cancellationToken = default) => inner.CreateProjectAsync(project, cancellationToken);
    public Task<IReadOnlyList<ProjectRecord>> ListProjectsAsync(CancellationToken cancellationToken = default) => inner.ListProjectsAsync(cancellationToken);
    public Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken = default) => inner.CreateApiKeyAsync(key, cancellationToken);
    public Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken = default) => inner.ListApiKeysAsync(cancellationToken);
    public Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default) => inner.RevokeApiKeyAsync(id, now, cancellationToken);
    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
