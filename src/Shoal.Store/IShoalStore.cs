using Shoal.Contracts;

namespace Shoal.Store;

/// <summary>
/// Persistence of desired and observed state. Two implementations with one schema and one
/// test suite: SQLite (embedded, the default) and PostgreSQL. Thread-safe.
/// </summary>
public interface IShoalStore : IAsyncDisposable
{
    /// <summary>"sqlite" or "postgres".</summary>
    string Kind { get; }

    /// <summary>Applies pending migrations; safe to call on every start and from several servers.</summary>
    Task MigrateAsync(CancellationToken cancellationToken = default);

    /// <summary>The highest migration applied.</summary>
    Task<int> GetSchemaVersionAsync(CancellationToken cancellationToken = default);

    Task<StoreSnapshot> LoadAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Applies all changes in one transaction (deletes first, then upserts). Throws
    /// <see cref="StoreConflictException"/> when a cluster name is already used in its project.
    /// </summary>
    Task CommitAsync(StoreChanges changes, CancellationToken cancellationToken = default);

    /// <summary>
    /// The last <paramref name="limit"/> events of a cluster, oldest first. The store keeps at most
    /// <see cref="ClusterEventRecord.RetainedPerCluster"/> per cluster; they go with the cluster.
    /// </summary>
    Task<IReadOnlyList<ClusterEventRecord>> ListEventsAsync(string clusterId, int limit, CancellationToken cancellationToken = default);

    Task CreateTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default);

    /// <summary>
    /// Atomically checks a token (by hash) and counts one use when it is valid at
    /// <paramref name="now"/>: not revoked, not expired, uses left.
    /// </summary>
    Task<TokenUseOutcome> UseTokenAsync(string tokenHash, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>A token by hash (its policy, for the node it just admitted); null when there is none.</summary>
    Task<ProvisioningTokenRecord?> FindTokenAsync(string tokenHash, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<ProvisioningTokenRecord>> ListTokensAsync(CancellationToken cancellationToken = default);

    /// <summary>Revokes a token by id; false when there is no such token.</summary>
    Task<bool> RevokeTokenAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>Creates a project; <see cref="StoreConflictException"/> when the name is taken.</summary>
    Task CreateProjectAsync(ProjectRecord project, CancellationToken cancellationToken = default);

    /// <summary>Replaces a project's gateway limits and budget (null: none); false when there is no such project.</summary>
    Task<bool> UpdateProjectGatewayAsync(string name, GatewayLimits? limits, BudgetSpec? budget, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<ProjectRecord>> ListProjectsAsync(CancellationToken cancellationToken = default);

    /// <summary>Stores a new API key (its hash); <see cref="StoreConflictException"/> on a duplicate id or hash.</summary>
    Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken = default);

    /// <summary>Replaces a key's gateway limits and budget (null: none); false when there is no such key.</summary>
    Task<bool> UpdateApiKeyGatewayAsync(string id, GatewayLimits? limits, BudgetSpec? budget, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken = default);

    /// <summary>Revokes a key by id (the first revocation time stays); false when there is no such key.</summary>
    Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default);

    /// <summary>Stores usage records (issue 16), once per request id: records already stored are skipped, so a batch may be sent again.</summary>
    Task AppendUsageAsync(IReadOnlyCollection<Contracts.UsageRecord> records, CancellationToken cancellationToken = default);

    /// <summary>Usage records that arrived in [since, until), oldest first (at most 100,000); only <paramref name="project"/>'s when given.</summary>
    Task<IReadOnlyList<Contracts.UsageRecord>> ListUsageAsync(DateTimeOffset since, DateTimeOffset until, string? project = null, CancellationToken cancellationToken = default);

    /// <summary>Replica runs overlapping [since, until) (GPU-time metering); only <paramref name="project"/>'s when given.</summary>
    Task<IReadOnlyList<ReplicaRunRecord>> ListReplicaRunsAsync(DateTimeOffset since, DateTimeOffset until, string? project = null, CancellationToken cancellationToken = default);

    /// <summary>Usage summed by node, cluster, key or project over the query's period (GPU-seconds from replica runs).</summary>
    Task<IReadOnlyList<Contracts.UsageRowDto>> QueryUsageAsync(UsageQuery query, CancellationToken cancellationToken = default);
}
