using Shoal.Contracts;

namespace Shoal.Store;

/// <summary>
/// A store that passes every call on to another; a decorator overrides only what it adds to
/// (counting writes, holding commits in a test…).
/// </summary>
public abstract class DelegatingShoalStore(IShoalStore inner) : IShoalStore
{
    /// <summary>The store calls are passed on to.</summary>
    protected IShoalStore Inner { get; } = inner;

    public string Kind => Inner.Kind;
    public virtual Task MigrateAsync(CancellationToken cancellationToken = default) => Inner.MigrateAsync(cancellationToken);
    public virtual Task<int> GetSchemaVersionAsync(CancellationToken cancellationToken = default) => Inner.GetSchemaVersionAsync(cancellationToken);
    public virtual Task<StoreSnapshot> LoadAsync(CancellationToken cancellationToken = default) => Inner.LoadAsync(cancellationToken);
    public virtual Task CommitAsync(StoreChanges changes, CancellationToken cancellationToken = default) => Inner.CommitAsync(changes, cancellationToken);
    public virtual Task<IReadOnlyList<ClusterEventRecord>> ListEventsAsync(string clusterId, int limit, CancellationToken cancellationToken = default) =>
        Inner.ListEventsAsync(clusterId, limit, cancellationToken);
    public virtual Task CreateTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default) => Inner.CreateTokenAsync(token, cancellationToken);
    public virtual Task<TokenUseOutcome> UseTokenAsync(string tokenHash, DateTimeOffset now, CancellationToken cancellationToken = default) =>
        Inner.UseTokenAsync(tokenHash, now, cancellationToken);
    public virtual Task<ProvisioningTokenRecord?> FindTokenAsync(string tokenHash, CancellationToken cancellationToken = default) => Inner.FindTokenAsync(tokenHash, cancellationToken);
    public virtual Task<IReadOnlyList<ProvisioningTokenRecord>> ListTokensAsync(CancellationToken cancellationToken = default) => Inner.ListTokensAsync(cancellationToken);
    public virtual Task<bool> RevokeTokenAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default) => Inner.RevokeTokenAsync(id, now, cancellationToken);
    public virtual Task CreateProjectAsync(ProjectRecord project, CancellationToken cancellationToken = default) => Inner.CreateProjectAsync(project, cancellationToken);
    public virtual Task<IReadOnlyList<ProjectRecord>> ListProjectsAsync(CancellationToken cancellationToken = default) => Inner.ListProjectsAsync(cancellationToken);
    public virtual Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken = default) => Inner.CreateApiKeyAsync(key, cancellationToken);
    public virtual Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken = default) => Inner.ListApiKeysAsync(cancellationToken);
    public virtual Task<bool> UpdateProjectGatewayAsync(string name, GatewayLimits? limits, BudgetSpec? budget, CancellationToken cancellationToken = default) => Inner.UpdateProjectGatewayAsync(name, limits, budget, cancellationToken);
    public virtual Task<bool> UpdateApiKeyGatewayAsync(string id, GatewayLimits? limits, BudgetSpec? budget, CancellationToken cancellationToken = default) => Inner.UpdateApiKeyGatewayAsync(id, limits, budget, cancellationToken);
    public virtual Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default) => Inner.RevokeApiKeyAsync(id, now, cancellationToken);
    public virtual Task AppendUsageAsync(IReadOnlyCollection<Contracts.UsageRecord> records, CancellationToken cancellationToken = default) =>
        Inner.AppendUsageAsync(records, cancellationToken);
    public virtual Task<IReadOnlyList<Contracts.UsageRecord>> ListUsageAsync(DateTimeOffset since, DateTimeOffset until, string? project = null, CancellationToken cancellationToken = default) =>
        Inner.ListUsageAsync(since, until, project, cancellationToken);
    public virtual Task<IReadOnlyList<ReplicaRunRecord>> ListReplicaRunsAsync(DateTimeOffset since, DateTimeOffset until, string? project = null, CancellationToken cancellationToken = default) =>
        Inner.ListReplicaRunsAsync(since, until, project, cancellationToken);
    public virtual Task<IReadOnlyList<Contracts.UsageRowDto>> QueryUsageAsync(UsageQuery query, CancellationToken cancellationToken = default) =>
        Inner.QueryUsageAsync(query, cancellationToken);

    public virtual async ValueTask DisposeAsync()
    {
        await Inner.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}
