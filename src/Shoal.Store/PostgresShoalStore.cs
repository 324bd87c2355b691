using System.Data;
using System.Data.Common;
using Npgsql;
using Shoal.Core.Security;

namespace Shoal.Store;

/// <summary>
/// The shared store for several servers: PostgreSQL through a pooled <see cref="NpgsqlDataSource"/>.
/// Row locks make concurrent writers safe, so there is no in-process write lock.
/// </summary>
public sealed class PostgresShoalStore : SqlShoalStore
{
    /// <summary>Key of the transaction-scoped advisory lock that serializes migrations ("shoal" in ASCII).</summary>
    public const long MigrationLockKey = 0x73686F616C;

    private const int BatchSize = 500;

    private readonly NpgsqlDataSource _dataSource;

    /// <param name="connectionString">An Npgsql connection string (<c>Host=…;Database=…</c>).</param>
    /// <param name="secrets">Seals secret values; null for a store that cannot keep any.</param>
    public PostgresShoalStore(string connectionString, SecretBox? secrets = null) : base(secrets)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        _dataSource = NpgsqlDataSource.Create(connectionString);
    }

    public override string Kind => "postgres";

    private protected override string MigrationsTableExistsSql =>
        "SELECT COUNT(*) FROM information_schema.tables " +
        "WHERE table_schema = current_schema() AND table_name = 'schema_migrations'";

    private protected override async ValueTask<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken) =>
        await _dataSource.OpenConnectionAsync(cancellationToken);

    private protected override async ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken) =>
        await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken);

    private protected override async ValueTask<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken cancellationToken) =>
        await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken);

    private protected override async Task LockMigrationsAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, transaction, "SELECT pg_advisory_xact_lock(@key)");
        AddParameter(command, "key", DbType.Int64, MigrationLockKey);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private protected override bool IsUniqueViolation(DbException exception) =>
        exception is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };

    private protected override async Task ExecuteManyAsync(
        DbConnection connection, DbTransaction transaction, string sql, Column[] columns,
        IReadOnlyCollection<object?[]> rows, CancellationToken cancellationToken)
    {
        // Batches send many statements in one round trip.
        var npgsql = (NpgsqlConnection)connection;
        foreach (var chunk in rows.Chunk(BatchSize))
        {
            await using var batch = new NpgsqlBatch(npgsql, (NpgsqlTransaction)transaction);
            foreach (var row in chunk)
            {
                var command = new NpgsqlBatchCommand(sql);
                for (var i = 0; i < columns.Length; i++)
                {
                    command.Parameters.Add(new NpgsqlParameter(columns[i].Name, columns[i].Type) { Value = row[i] ?? DBNull.Value });
                }

                batch.BatchCommands.Add(command);
            }

            await batch.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    public override ValueTask DisposeAsync() => _dataSource.DisposeAsync();
}
