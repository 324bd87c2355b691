using System.Data;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shoal.Core.Security;

namespace Shoal.Store;

/// <summary>
/// The embedded store: one SQLite file in WAL mode. Readers run concurrently; writers are
/// serialized in-process, and the busy timeout covers any other process on the same file.
/// </summary>
public sealed class SqliteShoalStore : SqlShoalStore
{
    /// <summary>The database file name in the server's data dir.</summary>
    public const string FileName = "shoal.db";

    private const int BusyTimeoutMs = 10_000;

    // foreign_keys and busy_timeout are per connection, so every open sets them.
    private const string ConnectionPragmas =
        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;";

    private readonly string _connectionString;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private int _walEnabled;

    /// <param name="path">The database file.</param>
    /// <param name="secrets">Seals secret values; null for a store that cannot keep any.</param>
    public SqliteShoalStore(string path, SecretBox? secrets = null) : base(secrets)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        Path = System.IO.Path.GetFullPath(path);
        KeepPrivate(Path);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = Path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = BusyTimeoutMs / 1000,
        }.ToString();
    }

    /// <summary>Opens (creating if needed) <c>shoal.db</c> in <paramref name="dataDir"/>, which is created (or narrowed to) 0700.</summary>
    public static SqliteShoalStore InDirectory(string dataDir, SecretBox? secrets = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dataDir);
        PrivateFiles.CreateDirectory(dataDir);
        return new SqliteShoalStore(System.IO.Path.Combine(dataDir, FileName), secrets);
    }

    /// <summary>
    /// The database holds everything the control plane knows: 0600, like its -wal and -shm files,
    /// which SQLite creates with the database file's mode. A file that does not exist yet is created
    /// empty at 0600 (SQLite takes an empty file as a new database); an older, wider one is narrowed.
    /// </summary>
    private static void KeepPrivate(string path)
    {
        if (!Directory.Exists(System.IO.Path.GetDirectoryName(path))) return;
        PrivateFiles.TryCreate(path, "");
        PrivateFiles.Restrict(path);
        PrivateFiles.Restrict(path + "-wal");
        PrivateFiles.Restrict(path + "-shm");
    }

    public override string Kind => "sqlite";

    /// <summary>The full path of the database file.</summary>
    public string Path { get; }

    private protected override string MigrationsTableExistsSql =>
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'";

    private protected override async ValueTask<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
            await using var command = connection.CreateCommand();
            command.CommandText = ConnectionPragmas;
            await command.ExecuteNonQueryAsync(cancellationToken);
            if (Volatile.Read(ref _walEnabled) == 0)
            {
                // WAL persists in the file; setting it once per store is enough.
                command.CommandText = "PRAGMA journal_mode = WAL;";
                await command.ExecuteNonQueryAsync(cancellationToken);
                Volatile.Write(ref _walEnabled, 1);
            }

            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    private protected override async ValueTask<IDisposable?> EnterWriteAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        return new Releaser(_writeLock);
    }

    // BEGIN IMMEDIATE: take the write lock up front instead of failing to upgrade a read lock later.
    private protected override ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken) =>
        ValueTask.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(IsolationLevel.Serializable, deferred: false));

    private protected override ValueTask<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken cancellationToken) =>
        ValueTask.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(IsolationLevel.Serializable, deferred: true));

    // The write transaction is BEGIN IMMEDIATE and writers are serialized: nothing more to lock.
    private protected override Task LockMigrationsAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken) =>
        Task.CompletedTask;

    // The clear values' old pages sit in the WAL and among free pages until rewritten: rewrite now
    // (the migration still holds the write lock).
    private protected override async Task ForgetOverwrittenAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);";
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private protected override bool IsUniqueViolation(DbException exception) =>
        exception is SqliteException { SqliteErrorCode: 19, SqliteExtendedErrorCode: 2067 or 1555 };

    private protected override async Task ExecuteManyAsync(
        DbConnection connection, DbTransaction transaction, string sql, Column[] columns,
        IReadOnlyCollection<object?[]> rows, CancellationToken cancellationToken)
    {
        // One prepared statement, rebound per row: SQLite runs in-process, so there are no round trips to save.
        await using var command = Command(connection, transaction, sql);
        AddParameters(command, columns, new object?[columns.Length]);
        command.Prepare();
        foreach (var row in rows)
        {
            for (var i = 0; i < columns.Length; i++)
            {
                command.Parameters[i].Value = row[i] ?? DBNull.Value;
            }

            cancellationToken.ThrowIfCancellationRequested();
            // Microsoft.Data.Sqlite's async methods run synchronously anyway; skip their per-row overhead.
            command.ExecuteNonQuery();
        }
    }

    public override async ValueTask DisposeAsync()
    {
        // Pooled connections keep the file open; release them so the file can be moved or reopened.
        await using (var connection = new SqliteConnection(_connectionString))
        {
            SqliteConnection.ClearPool(connection);
        }

        _writeLock.Dispose();
    }

    private sealed class Releaser(SemaphoreSlim semaphore) : IDisposable
    {
        private SemaphoreSlim? _semaphore = semaphore;

        public void Dispose() => Interlocked.Exchange(ref _semaphore, null)?.Release();
    }
}
