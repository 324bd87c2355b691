using Xunit;

namespace Shoal.Testing;

/// <summary>
/// One <see cref="PostgresServer"/> shared by a test collection. In a test project:
/// <c>[CollectionDefinition("Postgres")] public sealed class PostgresCollection : ICollectionFixture&lt;PostgresFixture&gt;;</c>
/// then <c>[Collection("Postgres")]</c> on each class, which takes the fixture in its constructor.
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private PostgresServer? _server;
    private int _databases;

    public PostgresServer Server => _server ?? throw new InvalidOperationException("the PostgreSQL fixture has not started");

    /// <summary>A fresh, empty database with a unique name; returns its connection string.</summary>
    public Task<string> CreateDatabaseAsync(string prefix = "test") =>
        Server.CreateDatabaseAsync($"{prefix}_{Interlocked.Increment(ref _databases)}_{Guid.NewGuid().ToString("N")[..8]}".ToLowerInvariant());

    public async Task InitializeAsync() => _server = await PostgresServer.StartAsync();

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
