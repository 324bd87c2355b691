using System.Text;
using Microsoft.Data.Sqlite;
using Shoal.Core.Security;
using Shoal.Core.Model;
using Shoal.Store;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Store.Tests;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SqliteStoreTests(ITestOutputHelper output) : StoreContractTests(output), IDisposable
{
    private readonly TempDirectory _dir = new("shoal-store");

    protected override string ExpectedKind => "sqlite";

    protected override Task CreateDatabaseAsync() => Task.CompletedTask;

    protected override IShoalStore OpenStore(SecretBox? secrets) => SqliteShoalStore.InDirectory(_dir.Path, secrets);

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task The_database_is_shoal_db_in_WAL_mode()
    {
        await using var store = SqliteShoalStore.InDirectory(_dir.Path);
        await store.MigrateAsync();

        Assert.Equal(_dir.Combine("shoal.db"), store.Path);
        Assert.True(File.Exists(_dir.Combine("shoal.db")));
        Assert.True(File.Exists(_dir.Combine("shoal.db-wal")) || File.Exists(_dir.Combine("shoal.db-shm")));
    }

    [Fact]
    public async Task The_file_holds_sealed_secrets_not_their_values()
    {
        var key = SecretBox.FromKeyText(SecretBox.NewKeyText());
        await using (var store = SqliteShoalStore.InDirectory(_dir.Path, key))
        {
            await store.MigrateAsync();
            await store.CommitAsync(new StoreChanges { UpsertClusters = { Samples.ClusterWithSecrets() } });
        }

        var bytes = ReadDatabaseFiles();
        foreach (var secret in new[] { "hf_sealed-spec-value", "pässwörd ✓", "registry-sealed-password", "hf_sealed-old-generation" })
        {
            Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(secret)) < 0, $"'{secret}' is in the database file");
        }
        // The check can fail: what is not secret is there to be found, and so are the sealed values.
        Assert.True(bytes.AsSpan().IndexOf("acme-bot"u8) >= 0);
        Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(SecretBox.Prefix + key.KeyId)) >= 0);
    }

    [Fact]
    public async Task A_registry_password_stored_in_clear_by_an_older_version_is_sealed_by_migrate()
    {
        var cluster = Samples.Cluster() with { Spec = Samples.Spec() with { RegistryAuth = new() { Username = "bot", Password = "legacy-clear-password" } } };
        await using (var old = SqliteShoalStore.InDirectory(_dir.Path))
        {
            await old.MigrateAsync();
            await old.CommitAsync(new StoreChanges { UpsertClusters = { Samples.Cluster() } });
        }
        // What a version before sealing wrote: the password in the spec's JSON.
        await using (var connection = new SqliteConnection($"Data Source={_dir.Combine(SqliteShoalStore.FileName)};Pooling=false"))
        {
            await connection.OpenAsync();
            await using var command = connection.CreateCommand();
            command.CommandText = "UPDATE clusters SET spec = @spec";
            command.Parameters.AddWithValue("@spec", System.Text.Json.JsonSerializer.Serialize(cluster.Spec, Shoal.Core.CoreJsonContext.Default.ClusterSpec));
            await command.ExecuteNonQueryAsync();
        }
        Assert.True(ReadDatabaseFiles().AsSpan().IndexOf("legacy-clear-password"u8) >= 0);

        var key = SecretBox.FromKeyText(SecretBox.NewKeyText());
        await using (var store = SqliteShoalStore.InDirectory(_dir.Path, key))
        {
            await store.MigrateAsync();
            Assert.Equal("legacy-clear-password", Assert.Single((await store.LoadAsync()).Clusters).Spec.RegistryAuth!.Password);
        }
        Assert.True(ReadDatabaseFiles().AsSpan().IndexOf("legacy-clear-password"u8) < 0);
    }

    [Fact]
    public async Task The_database_and_its_wal_and_shm_files_are_0600_in_a_0700_directory()
    {
        var dir = _dir.Combine("data");
        await using var store = SqliteShoalStore.InDirectory(dir);
        await store.MigrateAsync();
        await store.CommitAsync(new StoreChanges { UpsertClusters = { Samples.Cluster() } });

        Assert.Equal(PrivateFiles.DirectoryMode, File.GetUnixFileMode(dir));
        foreach (var file in new[] { "shoal.db", "shoal.db-wal", "shoal.db-shm" })
        {
            Assert.True(File.Exists(Path.Combine(dir, file)), file);
            Assert.Equal(PrivateFiles.FileMode, File.GetUnixFileMode(Path.Combine(dir, file)));
        }
    }

    [Fact]
    public async Task A_database_an_older_version_left_world_readable_is_narrowed_to_0600()
    {
        await using (var old = SqliteShoalStore.InDirectory(_dir.Path))
        {
            await old.MigrateAsync();
        }
        var db = _dir.Combine(SqliteShoalStore.FileName);
        File.SetUnixFileMode(db, File.GetUnixFileMode(db) | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        File.SetUnixFileMode(_dir.Path, PrivateFiles.DirectoryMode | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);

        await using var store = SqliteShoalStore.InDirectory(_dir.Path);
        Assert.Equal(PrivateFiles.FileMode, File.GetUnixFileMode(db));
        Assert.Equal(PrivateFiles.DirectoryMode, File.GetUnixFileMode(_dir.Path));
    }

    /// <summary>Every byte SQLite keeps for the store: the database, its WAL and shared memory.</summary>
    private byte[] ReadDatabaseFiles()
    {
        var all = new List<byte>();
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            var path = _dir.Combine(SqliteShoalStore.FileName + suffix);
            if (File.Exists(path))
            {
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var copy = new MemoryStream();
                stream.CopyTo(copy);
                all.AddRange(copy.ToArray());
            }
        }
        return [.. all];
    }
}
