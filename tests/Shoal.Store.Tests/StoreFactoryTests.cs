using Npgsql;
using Shoal.Core.Model;
using Shoal.Store;
using Shoal.Testing;

namespace Shoal.Store.Tests;

public sealed class StoreFactoryTests : IDisposable
{
    private readonly TempDirectory _dir = new("shoal-factory");

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("  ")]
    [InlineData("sqlite")]
    public async Task Nothing_or_sqlite_means_sqlite_in_the_data_dir_which_is_created(string? database)
    {
        var dataDir = _dir.Combine("nested", "data");

        await using var store = StoreFactory.Open(database, dataDir);
        await store.MigrateAsync();

        var sqlite = Assert.IsType<SqliteShoalStore>(store);
        Assert.Equal("sqlite", store.Kind);
        Assert.Equal(Path.Combine(dataDir, "shoal.db"), sqlite.Path);
        Assert.True(File.Exists(Path.Combine(dataDir, "shoal.db")));
    }

    [Theory]
    [InlineData("Host=db.internal;Database=shoal;Username=shoal")]
    [InlineData("host=db.internal;port=5433;database=shoal")]
    [InlineData("Server=db.internal;Database=shoal")]
    [InlineData("postgres://db.internal/shoal")]
    [InlineData("postgresql://shoal@db.internal:5433/shoal")]
    public async Task Connection_strings_and_urls_mean_postgres(string database)
    {
        // Opening does not connect, so no server is needed here.
        await using var store = StoreFactory.Open(database, _dir.Combine("unused"));

        Assert.IsType<PostgresShoalStore>(store);
        Assert.Equal("postgres", store.Kind);
        Assert.False(Directory.Exists(_dir.Combine("unused")));
    }

    [Fact]
    public void A_url_is_translated_field_by_field()
    {
        var cs = StoreFactory.ResolvePostgresConnectionString(
            "postgres://shoal%2Badmin:p%40ss%3Aword@db.example.com:6543/shoal_prod?sslmode=require");

        var builder = new NpgsqlConnectionStringBuilder(cs);
        Assert.Equal("db.example.com", builder.Host);
        Assert.Equal(6543, builder.Port);
        Assert.Equal("shoal+admin", builder.Username);
        Assert.Equal("p@ss:word", builder.Password);
        Assert.Equal("shoal_prod", builder.Database);
        Assert.Equal(SslMode.Require, builder.SslMode);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("/var/lib/shoal/shoal.db")]
    [InlineData("Database=shoal;Username=x")]
    [InlineData("Host=db;No Such Keyword=1")]
    [InlineData("Host=db;Port=not-a-number")]
    [InlineData("postgres://")]
    [InlineData("postgres://db/shoal?nosuchoption=1")]
    public void Anything_else_is_rejected_with_a_clear_message(string database)
    {
        var ex = Assert.Throws<ArgumentException>(() => StoreFactory.Open(database, _dir.Path));

        Assert.StartsWith("--database:", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.Combine("shoal.db")));
    }
}
