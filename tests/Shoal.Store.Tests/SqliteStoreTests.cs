using Shoal.Store;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Store.Tests;

public sealed class SqliteStoreTests(ITestOutputHelper output) : StoreContractTests(output), IDisposable
{
    private readonly TempDirectory _dir = new("shoal-store");

    protected override string ExpectedKind => "sqlite";

    protected override Task CreateDatabaseAsync() => Task.CompletedTask;

    protected override IShoalStore OpenStore() => SqliteShoalStore.InDirectory(_dir.Path);

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
}
