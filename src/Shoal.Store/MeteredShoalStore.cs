using System.Diagnostics.Metrics;

namespace Shoal.Store;

/// <summary>
/// Counts a store's writes on <see cref="MeterName"/> (<c>shoal.store.commits</c>: transactions that change
/// something, by operation; <c>shoal.store.rows</c>: rows they write) and passes every call on unchanged.
/// Read with <c>dotnet-counters monitor --counters Shoal.Store</c> or any System.Diagnostics.Metrics listener.
/// </summary>
public sealed class MeteredShoalStore : IShoalStore
{
    /// <summary>The meter the store's counters are published on.</summary>
    public const string MeterName = "Shoal.Store";

    private static readonly Meter s_meter = new(MeterName);
    private static readonly Counter<long> s_commits = s_meter.CreateCounter<long>("shoal.store.commits", "{transaction}", "Store transactions that write, by operation");
    private static readonly Counter<long> s_rows = s_meter.CreateCounter<long>("shoal.store.rows", "{row}", "Rows written (upserted, deleted or appended) by state commits");

    private readonly IShoalStore _inner;

    public MeteredShoalStore(IShoalStore inner) => _inner = inner;

    public string Kind => _inner.Kind;

    public Task MigrateAsync(CancellationToken cancellationToken = default) => _inner.MigrateAsync(cancellationToken);

    public Task<int> GetSchemaVersionAsync(CancellationToken cancellationToken = default) => _inner.GetSchemaVersionAsync(cancellationToken);

    public Task<StoreSnapshot> LoadAsync(CancellationToken cancellationToken = default) => _inner.LoadAsync(cancellationToken);

    public async Task CommitAsync(StoreChanges changes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(changes);
        await _inner.CommitAsync(changes, cancellationToken);
        if (changes.IsEmpty) return;
        Count("commit");
        s_rows.Add(changes.UpsertClusters.Count + changes.DeleteClusters.Count + changes.UpsertReplicas.Count + changes.DeleteReplicas.Count
            + changes.UpsertNodes.Count + changes.DeleteNodes.Count + changes.AppendEvents.Count);
    }

    public Task<IReadOnlyList<ClusterEventRecord>> ListEventsAsync(string clusterId, int limit, CancellationToken cancellationToken = default) =>
        _inner.ListEventsAsync(clusterId, limit, cancellationToken);

    public async Task CreateTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default)
    {
        await _inner.CreateTokenAsync(token, cancellationToken);
        Count("token");
    }

    public async Task<TokenUseOutcome> UseTokenAsync(string tokenHash, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var outcome = await _inner.UseTokenAsync(tokenHash, now, cancellationToken);
        if (outcome == TokenUseOutcome.Accepted) Count("token-use");
        return outcome;
    }

    public Task<ProvisioningTokenRecord?> FindTokenAsync(string tokenHash, CancellationToken cancellationToken = default) =>
        _inner.FindTokenAsync(tokenHash, cancellationToken);

    public Task<IReadOnlyList<ProvisioningTokenRecord>> ListTokensAsync(CancellationToken cancellationToken = default) => _inner.ListTokensAsync(cancellationToken);

    public async Task<bool> RevokeTokenAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var revoked = await _inner.RevokeTokenAsync(id, now, cancellationToken);
        if (revoked) Count("token");
        return revoked;
    }

    public async Task CreateProjectAsync(ProjectRecord project, CancellationToken cancellationToken = default)
    {
        await _inner.CreateProjectAsync(project, cancellationToken);
        Count("project");
    }

    public Task<IReadOnlyList<ProjectRecord>> ListProjectsAsync(CancellationToken cancellationToken = default) => _inner.ListProjectsAsync(cancellationToken);

    public async Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken = default)
    {
        await _inner.CreateApiKeyAsync(key, cancellationToken);
        Count("api-key");
    }

    public Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken = default) => _inner.ListApiKeysAsync(cancellationToken);

    public async Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var revoked = await _inner.RevokeApiKeyAsync(id, now, cancellationToken);
        if (revoked) Count("api-key");
        return revoked;
    }

    public ValueTask DisposeAsync() => _inner.DisposeAsync();

    private static void Count(string operation) => s_commits.Add(1, new KeyValuePair<string, object?>("op", operation));
}
