using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using System.Globalization;
using Npgsql;
using NpgsqlTypes;
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
        var npgsql = (NpgsqlConnection)connection;
        if (rows.Count >= UnnestFrom && UnnestInsert(sql, columns) is { } unnest && Unique(unnest, rows) is { } unique)
        {
            await InsertUnnestedAsync(npgsql, (NpgsqlTransaction)transaction, unnest.Sql, columns, unique, cancellationToken);
            return;
        }

        // Batches send many statements in one round trip.
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

    /// <summary>From this many rows, an INSERT goes as one statement over arrays (<c>unnest</c>) instead of a statement per row.</summary>
    private const int UnnestFrom = 4;

    private static readonly ConcurrentDictionary<string, Unnested?> s_unnested = new(StringComparer.Ordinal);

    /// <summary>An INSERT rewritten over arrays; <see cref="Key"/>: the columns of its ON CONFLICT … DO UPDATE, if any.</summary>
    private sealed record Unnested(string Sql, int[]? Key);

    /// <summary>
    /// <c>INSERT INTO t (a, b) VALUES (@a, @b) …</c> as <c>INSERT INTO t (a, b) SELECT * FROM unnest(@a, @b) …</c>:
    /// one statement for every row, its parameters arrays (PostgreSQL plans and runs it once, not once per
    /// row); null for any other statement.
    /// </summary>
    private static Unnested? UnnestInsert(string sql, Column[] columns) => s_unnested.GetOrAdd(sql, static (text, cols) =>
    {
        var values = "VALUES (" + string.Join(", ", cols.Select(c => "@" + c.Name)) + ")";
        var at = text.IndexOf(values, StringComparison.Ordinal);
        if (!text.StartsWith("INSERT INTO ", StringComparison.Ordinal) || at < 0) return null;
        if (cols.Any(c => c.Type is not (DbType.String or DbType.Int64 or DbType.Int32 or DbType.Boolean))) return null;
        int[]? key = null;
        if (text.Contains("DO UPDATE", StringComparison.Ordinal))
        {
            var conflict = System.Text.RegularExpressions.Regex.Match(text, @"ON CONFLICT \(([^)]*)\) DO UPDATE");
            if (!conflict.Success) return null;
            key = [.. conflict.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries).Select(name => Array.FindIndex(cols, c => c.Name == name))];
            if (key.Any(i => i < 0)) return null;
        }
        return new Unnested(text[..at] + "SELECT * FROM unnest(" + string.Join(", ", cols.Select(c => "@" + c.Name)) + ")" + text[(at + values.Length)..], key);
    }, columns);

    /// <summary>
    /// The rows for one statement, which may not update a row twice. An upsert by id writes whole rows, so the
    /// last version of each id stands, as after a statement per row; any other upsert with a key twice: null
    /// (it goes a statement per row).
    /// </summary>
    private static IReadOnlyList<object?[]>? Unique(Unnested unnest, IReadOnlyCollection<object?[]> rows)
    {
        IReadOnlyList<object?[]> list = rows as IReadOnlyList<object?[]> ?? [.. rows];
        if (unnest.Key is not { } key) return list;
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < list.Count; i++)
        {
            var row = list[i];
            last[key is [var only] ? Convert.ToString(row[only], CultureInfo.InvariantCulture)! : string.Join('\u001f', key.Select(k => Convert.ToString(row[k], CultureInfo.InvariantCulture)))] = i;
        }
        if (last.Count == list.Count) return list;
        if (key is not [0] || !unnest.Sql.Contains("ON CONFLICT (id) DO UPDATE", StringComparison.Ordinal)) return null;
        var keep = new HashSet<int>(last.Values);
        return [.. list.Where((_, i) => keep.Contains(i))];
    }

    private static async Task InsertUnnestedAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string unnest,
        Column[] columns, IReadOnlyList<object?[]> rows, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(unnest, connection, transaction);
        for (var c = 0; c < columns.Length; c++)
        {
            command.Parameters.Add(ArrayParameter(columns[c], rows, c));
        }
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static NpgsqlParameter ArrayParameter(Column column, IReadOnlyList<object?[]> rows, int c)
    {
        static T? Get<T>(object? value) where T : struct => value is null or DBNull ? null : (T)Convert.ChangeType(value, typeof(T), CultureInfo.InvariantCulture);
        switch (column.Type)
        {
            case DbType.String:
                var texts = new string?[rows.Count];
                for (var i = 0; i < texts.Length; i++) texts[i] = rows[i][c] is string text ? text : null;
                return new NpgsqlParameter(column.Name, NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = texts };
            case DbType.Int64:
                var longs = new long?[rows.Count];
                for (var i = 0; i < longs.Length; i++) longs[i] = Get<long>(rows[i][c]);
                return new NpgsqlParameter(column.Name, NpgsqlDbType.Array | NpgsqlDbType.Bigint) { Value = longs };
            case DbType.Int32:
                var ints = new int?[rows.Count];
                for (var i = 0; i < ints.Length; i++) ints[i] = Get<int>(rows[i][c]);
                return new NpgsqlParameter(column.Name, NpgsqlDbType.Array | NpgsqlDbType.Integer) { Value = ints };
            case DbType.Boolean:
                var bools = new bool?[rows.Count];
                for (var i = 0; i < bools.Length; i++) bools[i] = Get<bool>(rows[i][c]);
                return new NpgsqlParameter(column.Name, NpgsqlDbType.Array | NpgsqlDbType.Boolean) { Value = bools };
            default:
                throw new NotSupportedException($"column {column.Name}: {column.Type} has no array form");
        }
    }

    public override ValueTask DisposeAsync() => _dataSource.DisposeAsync();
}
