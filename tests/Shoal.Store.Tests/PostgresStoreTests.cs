using Shoal.Core.Security;
using Shoal.Core.Model;
using Shoal.Store;
using Shoal.Testing;
using Xunit.Abstractions;

namespace Shoal.Store.Tests;

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
    public const string Name = "Postgres";
}

[Collection(PostgresCollection.Name)]
[Trait(Categories.Name, Categories.Postgres)]
public sealed class PostgresStoreTests(PostgresFixture postgres, ITestOutputHelper output) : StoreContractTests(output)
{
    private string? _connectionString;

    protected override string ExpectedKind => "postgres";

    protected override async Task CreateDatabaseAsync() => _connectionString = await postgres.CreateDatabaseAsync("store");

    protected override IShoalStore OpenStore(SecretBox? secrets) =>
        new PostgresShoalStore(_connectionString ?? throw new InvalidOperationException("no database yet"), secrets);

    [Fact]
    public async Task The_factory_opens_postgres_from_a_connection_string_and_a_url()
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(_connectionString);
        var url = $"postgresql://{builder.Username}@{builder.Host}:{builder.Port}/{builder.Database}";

        foreach (var database in new[] { _connectionString!, url })
        {
            await using var store = StoreFactory.Open(database, "/nonexistent/not-used");
            await store.MigrateAsync();
            Assert.IsType<PostgresShoalStore>(store);
            Assert.Equal(Schema.LatestVersion, await store.GetSchemaVersionAsync());
        }

        Assert.False(Directory.Exists("/nonexistent/not-used"));
    }
}
