using System.Net.Http.Json;
using System.Runtime.Versioning;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Shoal.Contracts;
using Shoal.ControlPlane.Sealing;
using Shoal.Core.Security;
using Shoal.Core.Model;
using Shoal.Store;
using Shoal.Testing;

namespace Shoal.ControlPlane.Tests;

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
    public const string Name = "Postgres";
}

/// <summary>
/// Issue 13, must-show 5: after a real server was given one of every secret it keeps (tokens, a
/// node secret, secret env, registry credentials, its edge and secrets keys), what a backup of its
/// store holds (the SQLite files; a <c>pg_dump</c>) contains none of their values. A new kind of
/// secret is one more entry in <see cref="CreateSecretsAsync"/>.
/// </summary>
public abstract class SecretsAtRestTests : IAsyncLifetime, IDisposable
{
    /// <summary>A plain env value: it must be found, or the reading of the store proves nothing.</summary>
    private const string PlainCanary = "plain-canary-5c0d7";

    protected TempDirectory DataDir { get; } = new("shoal-secrets");

    /// <summary>Points the server at this store.</summary>
    protected abstract void UseStore(ServerOptions options);

    /// <summary>Everything the store holds, as a backup would: the files, or a dump.</summary>
    protected abstract Task<byte[]> ReadStoreAsync();

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync() => Task.CompletedTask;

    public void Dispose()
    {
        DataDir.Dispose();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task The_store_holds_none_of_the_secret_values_it_was_given()
    {
        List<(string What, string Value)> secrets;
        await using (var server = await TestServer.StartAsync(configure: o =>
        {
            o.DataDir = DataDir.Path;
            UseStore(o);
        }))
        {
            secrets = await CreateSecretsAsync(server, DataDir.Path);
            AssertHoldsNone(await ReadStoreAsync(), secrets, "while the server runs");
        }
        AssertHoldsNone(await ReadStoreAsync(), secrets, "after it stopped");
    }

    private static void AssertHoldsNone(byte[] stored, List<(string What, string Value)> secrets, string when)
    {
        Assert.True(Contains(stored, PlainCanary), $"the plain env value is not in the store {when}: the store was not read");
        Assert.True(Contains(stored, SecretBox.Prefix), $"no sealed value in the store {when}");
        foreach (var (what, value) in secrets)
        {
            Assert.False(Contains(stored, value), $"{what} is in the store {when}");
        }
    }

    private static bool Contains(byte[] haystack, string value) => haystack.AsSpan().IndexOf(Encoding.UTF8.GetBytes(value)) >= 0;

    /// <summary>Gives <paramref name="server"/> one of every secret it keeps; returns what each is and its value.</summary>
    private static async Task<List<(string What, string Value)>> CreateSecretsAsync(TestServer server, string dataDir)
    {
        var secrets = new List<(string, string)>
        {
            ("an unused provisioning token", await server.CreateTokenAsync()),
        };

        var token = await server.CreateTokenAsync();
        secrets.Add(("a used provisioning token", token));
        var (agent, status) = await WireAgent.RegisterAsync(server.AgentUri, token, "node-a");
        Assert.Equal(101, status);
        await using (agent)
        {
            await agent!.SendAsync(WireAgent.Hello("node-a", ("rtx-4090", 2)));
            var welcome = await agent.ReceiveAsync<WelcomeMessage>();
            secrets.Add(("the node secret", welcome.NodeSecret!));
        }

        var created = await server.Http.PostAsJsonAsync("/v1/clusters", new CreateClusterRequest
        {
            Name = "demo",
            Image = "ghcr.io/acme/model:1",
            Gpu = "rtx-4090",
            Env = new() { ["MODE"] = PlainCanary },
            SecretEnv = new() { ["HF_TOKEN"] = "hf_secret-env-value-1", ["DB_URL"] = "postgres://u:db-password-2@db/x" },
            RegistryAuth = new RegistryCredentials { Username = "acme-bot", Password = "registry-password-3" },
        }, ShoalJsonContext.Default.CreateClusterRequest);
        created.EnsureSuccessStatusCode();
        secrets.Add(("a secret env value", "hf_secret-env-value-1"));
        secrets.Add(("a secret env value", "db-password-2"));
        secrets.Add(("a registry password", "registry-password-3"));

        // An update keeps the first generation's spec (and its secrets) beside the new one.
        var updated = await server.Http.PatchAsJsonAsync("/v1/clusters/demo",
            new UpdateClusterRequest { SecretEnv = new() { ["HF_TOKEN"] = "hf_rotated-value-4" } }, ShoalJsonContext.Default.UpdateClusterRequest);
        updated.EnsureSuccessStatusCode();
        secrets.Add(("a rotated secret env value", "hf_rotated-value-4"));

        secrets.Add(("the edge key", File.ReadAllText(server.Server.EdgeKeyFile!).Trim()));
        secrets.Add(("the operator API key", server.OperatorKey));
        secrets.Add(("a project API key", await server.CreateKeyAsync(ApiKeyRoles.Admin, "default", "ci")));
        secrets.Add(("an endpoint key", await server.CreateKeyAsync(ApiKeyRoles.Endpoint, "default", "app")));
        secrets.Add(("the secrets key", File.ReadAllText(Path.Combine(dataDir, SecretsKey.FileName)).Trim()));
        var state = server.Server.Services.GetRequiredService<State.ControlPlaneState>();
        await state.FlushAsync(CancellationToken.None);
        return secrets;
    }
}

[SupportedOSPlatform("linux")]
public sealed class SqliteSecretsAtRestTests : SecretsAtRestTests
{
    protected override void UseStore(ServerOptions options)
    {
    }

    protected override Task<byte[]> ReadStoreAsync()
    {
        var all = new List<byte>();
        foreach (var file in Directory.GetFiles(DataDir.Path, SqliteShoalStore.FileName + "*"))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            all.AddRange(copy.ToArray());
        }
        return Task.FromResult(all.ToArray());
    }

    [Fact]
    public async Task The_data_dir_is_0700_and_the_database_its_wal_and_shm_the_key_files_and_the_operator_key_are_0600()
    {
        await using var server = await TestServer.StartAsync(configure: o => o.DataDir = DataDir.Path);
        var created = await server.Http.PostAsJsonAsync("/v1/clusters",
            new CreateClusterRequest { Name = "demo", Image = "shoal/sim", Gpu = "rtx-4090", SecretEnv = new() { ["K"] = "v" } },
            ShoalJsonContext.Default.CreateClusterRequest);
        created.EnsureSuccessStatusCode();

        Assert.Equal(PrivateFiles.DirectoryMode, File.GetUnixFileMode(DataDir.Path));
        foreach (var file in new[] { "shoal.db", "shoal.db-wal", "shoal.db-shm", EdgeKeyFileName, SecretsKey.FileName, Identity.ApiKeyDirectory.OperatorKeyFileName })
        {
            var path = Path.Combine(DataDir.Path, file);
            Assert.True(File.Exists(path), $"{file} exists");
            Assert.Equal(PrivateFiles.FileMode, File.GetUnixFileMode(path));
        }
    }

    private const string EdgeKeyFileName = Edges.EdgeKey.FileName;
}

[Collection(PostgresCollection.Name)]
[Trait(Categories.Name, Categories.Postgres)]
public sealed class PostgresSecretsAtRestTests(PostgresFixture postgres) : SecretsAtRestTests
{
    private string? _database;

    public override async Task InitializeAsync() => _database = await postgres.CreateDatabaseAsync("secrets");

    protected override void UseStore(ServerOptions options) => options.Database = _database;

    protected override async Task<byte[]> ReadStoreAsync() => Encoding.UTF8.GetBytes(await postgres.Server.DumpAsync(_database!));
}
