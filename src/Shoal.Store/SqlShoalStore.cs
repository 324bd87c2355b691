using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Shoal.Contracts;
using Shoal.Core;
using Shoal.Core.Clusters;
using Shoal.Core.Security;

namespace Shoal.Store;

/// <summary>
/// The store logic shared by SQLite and PostgreSQL: the SQL is the same, only connections,
/// transactions, batching and error classification differ.
/// </summary>
public abstract partial class SqlShoalStore : IShoalStore
{
    private const string UseTokenSql =
        "UPDATE provisioning_tokens SET uses = uses + 1 " +
        "WHERE hash = @hash AND revoked_at IS NULL AND expires_at > @now AND uses < max_uses RETURNING id";

    private const string TokenStateSql =
        "SELECT revoked_at, expires_at, uses, max_uses FROM provisioning_tokens WHERE hash = @hash";

    private static readonly string s_upsertCluster = Rows.Upsert("clusters", Rows.ClusterColumns);
    private static readonly string s_upsertReplica = Rows.Upsert("replicas", Rows.ReplicaColumns);
    private static readonly string s_upsertNode = Rows.Upsert("nodes", Rows.NodeColumns);
    private static readonly string s_insertToken = Rows.Insert("provisioning_tokens", Rows.TokenColumns);
    private static readonly string s_insertProject = Rows.Insert("projects", Rows.ProjectColumns);
    private static readonly string s_insertApiKey = Rows.Insert("api_keys", Rows.ApiKeyColumns);
    // A sequence number already stored (two servers writing at once) drops that event, not the commit.
    private static readonly string s_insertEvent = Rows.Insert("cluster_events", Rows.EventColumns) + " ON CONFLICT (seq) DO NOTHING";

    // Everything older than the cluster's RetainedPerCluster-th newest event (nothing while it has fewer).
    private static readonly string s_trimEvents =
        "DELETE FROM cluster_events WHERE cluster_id = @id AND seq < (SELECT seq FROM cluster_events " +
        $"WHERE cluster_id = @id ORDER BY seq DESC LIMIT 1 OFFSET {ClusterEventRecord.RetainedPerCluster - 1})";

    private static readonly string s_listEvents =
        $"SELECT {string.Join(", ", Rows.EventColumns.Select(c => c.Name))} FROM cluster_events " +
        "WHERE cluster_id = @id ORDER BY seq DESC LIMIT @limit";

    private protected SqlShoalStore(SecretBox? secrets)
    {
        Secrets = secrets;
    }

    /// <summary>
    /// Seals secret env values and registry passwords written to the store and opens them when read;
    /// null: a store that cannot keep secrets (writing one fails, reading a sealed one too).
    /// </summary>
    public SecretBox? Secrets { get; }

    public abstract string Kind { get; }

    /// <summary>Opens a connection ready for use (per-connection settings applied).</summary>
    private protected abstract ValueTask<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken);

    /// <summary>Serializes writers where the database needs it (SQLite); null where it does not.</summary>
    private protected virtual ValueTask<IDisposable?> EnterWriteAsync(CancellationToken cancellationToken) =>
        ValueTask.FromResult<IDisposable?>(null);

    private protected abstract ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>A transaction that reads one consistent snapshot.</summary>
    private protected abstract ValueTask<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>Keeps other servers from migrating at the same time, until the transaction ends.</summary>
    private protected abstract Task LockMigrationsAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken);

    /// <summary>SQL returning 1 when <c>schema_migrations</c> exists, else 0.</summary>
    private protected abstract string MigrationsTableExistsSql { get; }

    private protected abstract bool IsUniqueViolation(DbException exception);

    /// <summary>Runs one parameterised statement once per row, as cheaply as the provider allows.</summary>
    private protected abstract Task ExecuteManyAsync(
        DbConnection connection, DbTransaction transaction, string sql, Column[] columns,
        IReadOnlyCollection<object?[]> rows, CancellationToken cancellationToken);

    public abstract ValueTask DisposeAsync();

    public async Task MigrateAsync(CancellationToken cancellationToken = default)
    {
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var transaction = await BeginWriteAsync(connection, cancellationToken);
        await LockMigrationsAsync(connection, transaction, cancellationToken);
        await ExecuteAsync(connection, transaction, Schema.CreateMigrationsTable, cancellationToken);
        var current = await ReadSchemaVersionAsync(connection, transaction, cancellationToken);
        foreach (var (version, sql) in Schema.Migrations)
        {
            if (version <= current)
            {
                continue;
            }

            await ExecuteAsync(connection, transaction, sql, cancellationToken);
            await using var record = Command(connection, transaction,
                "INSERT INTO schema_migrations (version, applied_at) VALUES (@version, @now)");
            AddParameter(record, "version", DbType.Int32, version);
            AddParameter(record, "now", DbType.Int64, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            await record.ExecuteNonQueryAsync(cancellationToken);
        }

        var resealed = Secrets is not null && await CheckSecretsAsync(connection, transaction, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        if (resealed)
        {
            await ForgetOverwrittenAsync(connection, cancellationToken);
        }
    }

    /// <summary>
    /// After clear secrets were overwritten with sealed ones: drops the old row versions that may
    /// still hold them in free pages or logs, where the database keeps such things. Default: nothing.
    /// </summary>
    private protected virtual Task ForgetOverwrittenAsync(DbConnection connection, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Checks, before anything else is written, that every sealed secret opens with this store's key
    /// (a missing or wrong key fails here, in the migration's transaction, so nothing changes); and
    /// seals registry passwords that versions before sealing wrote in clear.
    /// </summary>
    /// <exception cref="SecretsKeyException">A stored secret does not open with the key.</exception>
    /// <returns>True when clear secrets were sealed.</returns>
    private async Task<bool> CheckSecretsAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken)
    {
        var clear = new List<object?[]>();
        await using (var read = Command(connection, transaction, "SELECT id, spec, rollout FROM clusters"))
        await using (var reader = await read.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                var stored = JsonSerializer.Deserialize(reader.GetString(1), CoreJsonContext.Default.ClusterSpec)!;
                var storedRollout = reader.IsDBNull(2) ? null : JsonSerializer.Deserialize(reader.GetString(2), CoreJsonContext.Default.ClusterRollout);
                ClusterSpec spec;
                ClusterRollout? rollout;
                try
                {
                    spec = SecretSealing.Open(stored, Secrets);
                    rollout = storedRollout is null ? null : SecretSealing.Open(storedRollout, Secrets);
                }
                catch (SecretsKeyException e)
                {
                    throw new SecretsKeyException($"cluster '{stored.Name}': {e.Message}", e.SealedWith);
                }
                if (!SecretSealing.HasClearSecret(stored) && storedRollout?.Generations.Values.Any(g => SecretSealing.HasClearSecret(g.Spec)) != true)
                {
                    continue;
                }
                clear.Add([
                    reader.GetString(0),
                    JsonSerializer.Serialize(SecretSealing.Seal(spec, Secrets), CoreJsonContext.Default.ClusterSpec),
                    rollout is null ? DBNull.Value : JsonSerializer.Serialize(SecretSealing.Seal(rollout, Secrets), CoreJsonContext.Default.ClusterRollout),
                ]);
            }
        }
        if (clear.Count > 0)
        {
            await ExecuteManyAsync(connection, transaction, "UPDATE clusters SET spec = @spec, rollout = @rollout WHERE id = @id",
                [new("id", DbType.String), new("spec", DbType.String), new("rollout", DbType.String)], clear, cancellationToken);
        }
        return clear.Count > 0;
    }

    public async Task<int> GetSchemaVersionAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using (var exists = Command(connection, null, MigrationsTableExistsSql))
        {
            if (Convert.ToInt32(await exists.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture) == 0)
            {
                return 0;
            }
        }

        return await ReadSchemaVersionAsync(connection, null, cancellationToken);
    }

    public async Task<StoreSnapshot> LoadAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var transaction = await BeginSnapshotAsync(connection, cancellationToken);
        var clusters = await QueryAsync(connection, transaction,
            Rows.Select("clusters", Rows.ClusterColumns, "created_at, id"), r => Rows.ReadCluster(r, Secrets), cancellationToken);
        var replicas = await QueryAsync(connection, transaction,
            Rows.Select("replicas", Rows.ReplicaColumns, "created_at, id"), Rows.ReadReplica, cancellationToken);
        var nodes = await QueryAsync(connection, transaction,
            Rows.Select("nodes", Rows.NodeColumns, "registered_at, id"), Rows.ReadNode, cancellationToken);
        long lastEventSeq;
        await using (var maxSeq = Command(connection, transaction, "SELECT COALESCE(MAX(seq), 0) FROM cluster_events"))
        {
            lastEventSeq = Convert.ToInt64(await maxSeq.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
        }
        await transaction.CommitAsync(cancellationToken);
        return new StoreSnapshot(clusters, replicas, nodes) { LastEventSeq = lastEventSeq };
    }

    public async Task CommitAsync(StoreChanges changes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(changes);
        if (changes.IsEmpty)
        {
            return;
        }

        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var transaction = await BeginWriteAsync(connection, cancellationToken);

        if (changes.DeleteReplicas.Count > 0)
        {
            await ExecuteManyAsync(connection, transaction, "DELETE FROM replicas WHERE id = @id", Rows.IdColumn,
                changes.DeleteReplicas.Select(id => new object?[] { id }).ToList(), cancellationToken);
        }

        if (changes.DeleteClusters.Count > 0)
        {
            await ExecuteManyAsync(connection, transaction, "DELETE FROM clusters WHERE id = @id", Rows.IdColumn,
                changes.DeleteClusters.Select(id => new object?[] { id }).ToList(), cancellationToken);
        }

        // One at a time, so a name conflict can be pinned on the cluster that caused it.
        foreach (var cluster in changes.UpsertClusters)
        {
            try
            {
                await ExecuteManyAsync(connection, transaction, s_upsertCluster, Rows.ClusterColumns,
                    [Rows.Values(cluster, Secrets)], cancellationToken);
            }
            catch (DbException ex) when (IsUniqueViolation(ex))
            {
                throw new StoreConflictException(
                    $"cluster '{cluster.Name}' already exists", ex);
            }
        }

        if (changes.UpsertNodes.Count > 0)
        {
            await ExecuteManyAsync(connection, transaction, s_upsertNode, Rows.NodeColumns,
                changes.UpsertNodes.Select(Rows.Values).ToList(), cancellationToken);
        }

        if (changes.UpsertReplicas.Count > 0)
        {
            await ExecuteManyAsync(connection, transaction, s_upsertReplica, Rows.ReplicaColumns,
                changes.UpsertReplicas.Select(Rows.Values).ToList(), cancellationToken);
        }

        if (changes.DeleteNodes.Count > 0)
        {
            await ExecuteManyAsync(connection, transaction, "DELETE FROM nodes WHERE id = @id", Rows.IdColumn,
                changes.DeleteNodes.Select(id => new object?[] { id }).ToList(), cancellationToken);
        }

        if (changes.AppendEvents.Count > 0)
        {
            await ExecuteManyAsync(connection, transaction, s_insertEvent, Rows.EventColumns,
                changes.AppendEvents.Select(Rows.Values).ToList(), cancellationToken);
            await ExecuteManyAsync(connection, transaction, s_trimEvents, Rows.IdColumn,
                changes.AppendEvents.Select(e => e.ClusterId).Distinct(StringComparer.Ordinal).Select(id => new object?[] { id }).ToList(),
                cancellationToken);
        }

        await WriteReplicaRunsAsync(connection, transaction, changes, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<IReadOnlyList<ClusterEventRecord>> ListEventsAsync(string clusterId, int limit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(clusterId);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, null, s_listEvents);
        AddParameter(command, "id", DbType.String, clusterId);
        AddParameter(command, "limit", DbType.Int32, limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var newestFirst = new List<ClusterEventRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            newestFirst.Add(Rows.ReadEvent(reader));
        }

        newestFirst.Reverse();
        return newestFirst;
    }

    public Task CreateTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(token);
        return InsertAsync(s_insertToken, Rows.TokenColumns, Rows.Values(token), $"token '{token.Id}' already exists", cancellationToken);
    }

    public async Task<TokenUseOutcome> UseTokenAsync(string tokenHash, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tokenHash);
        var nowMs = now.ToUnixTimeMilliseconds();
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);

        // The conditional UPDATE is the whole decision: concurrent callers cannot both take the last use.
        await using (var use = Command(connection, null, UseTokenSql))
        {
            AddParameter(use, "hash", DbType.String, tokenHash);
            AddParameter(use, "now", DbType.Int64, nowMs);
            if (await use.ExecuteScalarAsync(cancellationToken) is not (null or DBNull))
            {
                return TokenUseOutcome.Accepted;
            }
        }

        // Refused: read the row only to say why.
        await using var read = Command(connection, null, TokenStateSql);
        AddParameter(read, "hash", DbType.String, tokenHash);
        await using var reader = await read.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return TokenUseOutcome.NotFound;
        }

        if (!reader.IsDBNull(0))
        {
            return TokenUseOutcome.Revoked;
        }

        return reader.GetInt64(1) <= nowMs ? TokenUseOutcome.Expired : TokenUseOutcome.Exhausted;
    }

    public async Task<ProvisioningTokenRecord?> FindTokenAsync(string tokenHash, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tokenHash);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, null,
            $"SELECT {string.Join(", ", Rows.TokenColumns.Select(c => c.Name))} FROM provisioning_tokens WHERE hash = @hash");
        AddParameter(command, "hash", DbType.String, tokenHash);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Rows.ReadToken(reader) : null;
    }

    public async Task<IReadOnlyList<ProvisioningTokenRecord>> ListTokensAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        return await QueryAsync(connection, null,
            Rows.Select("provisioning_tokens", Rows.TokenColumns, "created_at, id"), Rows.ReadToken, cancellationToken);
    }

    public async Task<bool> RevokeTokenAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        // Revoking twice keeps the first time.
        await using var command = Command(connection, null,
            "UPDATE provisioning_tokens SET revoked_at = COALESCE(revoked_at, @now) WHERE id = @id");
        AddParameter(command, "now", DbType.Int64, now.ToUnixTimeMilliseconds());
        AddParameter(command, "id", DbType.String, id);
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public Task CreateProjectAsync(ProjectRecord project, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(project);
        return InsertAsync(s_insertProject, Rows.ProjectColumns, Rows.Values(project), $"project '{project.Name}' already exists", cancellationToken);
    }

    public async Task<IReadOnlyList<ProjectRecord>> ListProjectsAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        return await QueryAsync(connection, null, Rows.Select("projects", Rows.ProjectColumns, "name"), Rows.ReadProject, cancellationToken);
    }

    public Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        return InsertAsync(s_insertApiKey, Rows.ApiKeyColumns, Rows.Values(key), $"api key '{key.Id}' already exists", cancellationToken);
    }

    public async Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        return await QueryAsync(connection, null, Rows.Select("api_keys", Rows.ApiKeyColumns, "created_at, id"), Rows.ReadApiKey, cancellationToken);
    }

    public async Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, null, "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, @now) WHERE id = @id");
        AddParameter(command, "now", DbType.Int64, now.ToUnixTimeMilliseconds());
        AddParameter(command, "id", DbType.String, id);
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public Task<bool> UpdateProjectGatewayAsync(string name, GatewayLimits? limits, BudgetSpec? budget, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        return UpdateGatewayAsync("UPDATE projects SET gateway_limits = @limits, budget = @budget WHERE name = @id", name, limits, budget, cancellationToken);
    }

    public Task<bool> UpdateApiKeyGatewayAsync(string id, GatewayLimits? limits, BudgetSpec? budget, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        return UpdateGatewayAsync("UPDATE api_keys SET gateway_limits = @limits, budget = @budget WHERE id = @id", id, limits, budget, cancellationToken);
    }

    private async Task<bool> UpdateGatewayAsync(string sql, string id, GatewayLimits? limits, BudgetSpec? budget, CancellationToken cancellationToken)
    {
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, null, sql);
        AddParameter(command, "limits", DbType.String, Rows.LimitsJson(limits));
        AddParameter(command, "budget", DbType.String, Rows.BudgetJson(budget));
        AddParameter(command, "id", DbType.String, id);
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    private async Task InsertAsync(string sql, Column[] columns, object?[] values, string conflict, CancellationToken cancellationToken)
    {
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, null, sql);
        AddParameters(command, columns, values);
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (DbException ex) when (IsUniqueViolation(ex))
        {
            throw new StoreConflictException(conflict, ex);
        }
    }

    private async Task<int> ReadSchemaVersionAsync(DbConnection connection, DbTransaction? transaction, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, transaction, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
        return Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
    }

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, transaction, sql);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<List<T>> QueryAsync<T>(
        DbConnection connection, DbTransaction? transaction, string sql, Func<DbDataReader, T> read,
        CancellationToken cancellationToken)
    {
        await using var command = Command(connection, transaction, sql);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var result = new List<T>();
        while (await reader.ReadAsync(cancellationToken))
        {
            result.Add(read(reader));
        }

        return result;
    }

    private protected static DbCommand Command(DbConnection connection, DbTransaction? transaction, string sql)
    {
        var command = connection.CreateCommand();
#pragma warning disable CA2100 // SQL is built only from constants in this assembly; values go in parameters.
        command.CommandText = sql;
#pragma warning restore CA2100
        command.Transaction = transaction;
        return command;
    }

    private protected static void AddParameter(DbCommand command, string name, DbType type, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.DbType = type;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
    }

    private protected static void AddParameters(DbCommand command, Column[] columns, object?[] values)
    {
        for (var i = 0; i < columns.Length; i++)
        {
            AddParameter(command, columns[i].Name, columns[i].Type, values[i]);
        }
    }
}
