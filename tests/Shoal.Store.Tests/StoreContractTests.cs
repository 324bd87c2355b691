using System.Diagnostics;
using Shoal.Contracts;
using Shoal.Core.Security;
using Shoal.Core.Model;
using Shoal.Store;
using Xunit.Abstractions;

namespace Shoal.Store.Tests;

/// <summary>
/// The behaviour every <see cref="IShoalStore"/> must have. Each subclass runs all of it against
/// one implementation, each test on a fresh, empty database.
/// </summary>
public abstract partial class StoreContractTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly List<IShoalStore> _opened = [];

    protected ITestOutputHelper Output { get; } = output;

    protected abstract string ExpectedKind { get; }

    /// <summary>Creates this test's empty database.</summary>
    protected abstract Task CreateDatabaseAsync();

    /// <summary>Opens a new store object on this test's database (not migrated), sealing secrets with <paramref name="secrets"/>.</summary>
    protected abstract IShoalStore OpenStore(SecretBox? secrets);

    /// <summary>Removes this test's database.</summary>
    protected virtual Task DropDatabaseAsync() => Task.CompletedTask;

    public Task InitializeAsync() => CreateDatabaseAsync();

    public async Task DisposeAsync()
    {
        foreach (var store in _opened)
        {
            await store.DisposeAsync();
        }

        await DropDatabaseAsync();
    }

    private IShoalStore Open(SecretBox? secrets = null)
    {
        var store = OpenStore(secrets);
        _opened.Add(store);
        return store;
    }

    private async Task<IShoalStore> OpenMigratedAsync(SecretBox? secrets = null)
    {
        var store = Open(secrets);
        await store.MigrateAsync();
        return store;
    }

    private static async Task CommitAsync(IShoalStore store, Action<StoreChanges> build)
    {
        var changes = new StoreChanges();
        build(changes);
        await store.CommitAsync(changes);
    }

    [Fact]
    public async Task Secret_env_and_registry_passwords_come_back_only_with_the_key_that_sealed_them()
    {
        var key = SecretBox.FromKeyText(SecretBox.NewKeyText());
        var cluster = Samples.ClusterWithSecrets();
        await CommitAsync(await OpenMigratedAsync(key), c => c.UpsertClusters.Add(cluster));

        var loaded = Assert.Single((await (await OpenMigratedAsync(key)).LoadAsync()).Clusters);
        Samples.Equal(cluster, loaded);
        Assert.Equal(cluster.Spec.RegistryAuth, loaded.Spec.RegistryAuth);
        Assert.Equal("hf_sealed-old-generation", loaded.Rollout.Generations[6].Spec.SecretEnv["HF_TOKEN"]);

        // Another key, or none: a clear error naming the cluster, never a wrong value.
        var otherKey = SecretBox.FromKeyText(SecretBox.NewKeyText());
        var wrong = await Assert.ThrowsAsync<SecretsKeyException>(() => Open(otherKey).MigrateAsync());
        Assert.Contains("cluster 'llama'", wrong.Message, StringComparison.Ordinal);
        Assert.Equal(key.KeyId, wrong.SealedWith);
        var none = await Assert.ThrowsAsync<SecretsKeyException>(() => Open().LoadAsync());
        Assert.Contains("no secrets key", none.Message, StringComparison.Ordinal);

        // Failing with the wrong key changed nothing: the right key still opens everything.
        Samples.Equal(cluster, Assert.Single((await (await OpenMigratedAsync(key)).LoadAsync()).Clusters));
    }

    [Fact]
    public async Task A_store_without_a_key_refuses_to_write_a_secret_and_writes_nothing()
    {
        var store = await OpenMigratedAsync();
        var error = await Assert.ThrowsAsync<SecretsKeyException>(() => CommitAsync(store, c =>
        {
            c.UpsertClusters.Add(Samples.Cluster("c0", "plain"));
            c.UpsertClusters.Add(Samples.ClusterWithSecrets());
        }));
        Assert.Contains("no secrets key", error.Message, StringComparison.Ordinal);
        Assert.Empty((await store.LoadAsync()).Clusters);

        // Clusters without secrets need no key.
        await CommitAsync(store, c => c.UpsertClusters.Add(Samples.Cluster()));
        Assert.Single((await store.LoadAsync()).Clusters);
    }

    [Fact]
    public void Kind_names_the_implementation()
    {
        Assert.Equal(ExpectedKind, Open().Kind);
    }

    [Fact]
    public async Task Migrate_is_idempotent_and_reports_the_schema_version()
    {
        var store = Open();
        Assert.Equal(0, await store.GetSchemaVersionAsync());

        await store.MigrateAsync();
        Assert.Equal(Schema.LatestVersion, await store.GetSchemaVersionAsync());
        await CommitAsync(store, c => c.UpsertClusters.Add(Samples.Cluster()));

        await store.MigrateAsync();
        await Open().MigrateAsync();

        Assert.Equal(Schema.LatestVersion, await store.GetSchemaVersionAsync());
        Assert.Single((await store.LoadAsync()).Clusters);
    }

    [Fact]
    public async Task Several_servers_can_migrate_at_once()
    {
        var stores = Enumerable.Range(0, 4).Select(_ => Open()).ToList();

        await Task.WhenAll(stores.Select(s => Task.Run(() => s.MigrateAsync())));

        foreach (var store in stores)
        {
            Assert.Equal(Schema.LatestVersion, await store.GetSchemaVersionAsync());
        }

        await CommitAsync(stores[0], c => c.UpsertClusters.Add(Samples.Cluster()));
        Assert.Single((await stores[3].LoadAsync()).Clusters);
    }

    [Fact]
    public async Task An_empty_store_loads_empty_and_an_empty_commit_changes_nothing()
    {
        var store = await OpenMigratedAsync();
        await store.CommitAsync(new StoreChanges());

        var snapshot = await store.LoadAsync();

        Assert.Empty(snapshot.Clusters);
        Assert.Empty(snapshot.Replicas);
        Assert.Empty(snapshot.Nodes);
        Assert.Empty(await store.ListTokensAsync());
    }

    [Fact]
    public async Task Every_field_of_every_record_round_trips()
    {
        var store = await OpenMigratedAsync();
        var cluster = Samples.Cluster();
        var defaults = new ClusterRecord
        {
            Id = "c2",
            Spec = new() { Name = "minimal", Image = "shoal/sim", Gpu = "a100-80gb" },
            CreatedAt = Samples.At(5),
            UpdatedAt = Samples.At(5),
        };
        var full = Samples.FullReplica();
        var bare = Samples.BareReplica();
        var node = Samples.FullNode();
        var bareNode = Samples.BareNode();

        await CommitAsync(store, c =>
        {
            c.UpsertClusters.AddRange([cluster, defaults]);
            c.UpsertReplicas.AddRange([full, bare]);
            c.UpsertNodes.AddRange([node, bareNode]);
        });
        var snapshot = await store.LoadAsync();

        Assert.Equal(2, snapshot.Clusters.Count);
        Samples.Equal(cluster, snapshot.Clusters.Single(x => x.Id == "c1"));
        Samples.Equal(defaults, snapshot.Clusters.Single(x => x.Id == "c2"));
        Assert.Equal("default", snapshot.Clusters.Single(x => x.Id == "c2").Project);
        Assert.Equal(2, snapshot.Replicas.Count);
        Samples.Equal(full, snapshot.Replicas.Single(x => x.Id == "r1"));
        Samples.Equal(bare, snapshot.Replicas.Single(x => x.Id == "r2"));
        Assert.Null(snapshot.Replicas.Single(x => x.Id == "r2").NodeId);
        Assert.Empty(snapshot.Replicas.Single(x => x.Id == "r2").GpuIndexes);
        Assert.Equal(2, snapshot.Nodes.Count);
        Samples.Equal(node, snapshot.Nodes.Single(x => x.Id == "n1"));
        Samples.Equal(bareNode, snapshot.Nodes.Single(x => x.Id == "n2"));
    }

    [Fact]
    public async Task Many_rows_in_one_commit_round_trip_every_field_and_the_last_version_of_an_id_stands()
    {
        // Enough rows of each kind that a store writing them as one statement over arrays does so.
        var store = await OpenMigratedAsync();
        var replicas = Enumerable.Range(0, 6).Select(i => i % 2 == 0 ? Samples.FullReplica($"r{i}") : Samples.BareReplica($"r{i}")).ToList();
        var nodes = Enumerable.Range(0, 6).Select(i => i % 2 == 0 ? Samples.FullNode($"n{i}") : Samples.BareNode($"n{i}")).ToList();
        var later = replicas[0] with { State = ReplicaState.Failed, Healthy = false, Restarts = 7, HostPort = null, Reason = "later" };
        var laterNode = nodes[1] with { Revision = 42, AckedRevision = 41, Images = ["x:1"] };
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.Add(Samples.Cluster());
            c.UpsertReplicas.AddRange([.. replicas, later]);
            c.UpsertNodes.AddRange([.. nodes, laterNode]);
        });
        var snapshot = await store.LoadAsync();

        Assert.Equal(6, snapshot.Replicas.Count);
        Samples.Equal(later, snapshot.Replicas.Single(x => x.Id == "r0"));
        foreach (var r in replicas.Skip(1)) Samples.Equal(r, snapshot.Replicas.Single(x => x.Id == r.Id));
        Assert.Equal(6, snapshot.Nodes.Count);
        Samples.Equal(laterNode, snapshot.Nodes.Single(x => x.Id == "n1"));
        foreach (var n in nodes.Where(n => n.Id != "n1")) Samples.Equal(n, snapshot.Nodes.Single(x => x.Id == n.Id));
    }

    [Fact]
    public async Task Times_are_kept_to_the_millisecond()
    {
        var store = await OpenMigratedAsync();
        var precise = Samples.T0.AddTicks(4_999); // 0.4999 ms past T0
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.Add(Samples.Cluster() with { CreatedAt = precise, UpdatedAt = Samples.T0.AddMilliseconds(1) });
            c.UpsertReplicas.Add(Samples.BareReplica() with { ReadyAt = Samples.T0.AddMilliseconds(-1) });
        });

        var snapshot = await store.LoadAsync();

        Assert.Equal(Samples.T0, snapshot.Clusters[0].CreatedAt);
        Assert.Equal(Samples.T0.ToUnixTimeMilliseconds() + 1, snapshot.Clusters[0].UpdatedAt.ToUnixTimeMilliseconds());
        Assert.Equal(Samples.T0.AddMilliseconds(-1), snapshot.Replicas[0].ReadyAt);
    }

    [Fact]
    public async Task Upserts_replace_existing_rows()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.Add(Samples.Cluster());
            c.UpsertReplicas.Add(Samples.BareReplica());
            c.UpsertNodes.Add(Samples.BareNode());
        });

        var spec = Samples.Spec() with { Replicas = 9, Env = new() { ["ONLY"] = "this" }, Args = [] };
        var cluster = Samples.Cluster() with { Spec = spec, Generation = 8, UpdatedAt = Samples.At(99) };
        var replica = Samples.BareReplica() with
        {
            NodeId = "n2", GpuIndexes = [0], State = ReplicaState.Ready, Healthy = true, HostPort = 5000, ReadyAt = Samples.At(98),
            Restarts = 2, RecentRestarts = [Samples.At(95), Samples.At(96)],
        };
        var node = Samples.BareNode() with { State = NodeState.Ready, Revision = 5, AckedRevision = 5, LastSeenAt = Samples.At(97) };
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.Add(cluster);
            c.UpsertReplicas.Add(replica);
            c.UpsertNodes.Add(node);
        });
        var snapshot = await store.LoadAsync();

        Samples.Equal(cluster, Assert.Single(snapshot.Clusters));
        Samples.Equal(replica, Assert.Single(snapshot.Replicas));
        Samples.Equal(node, Assert.Single(snapshot.Nodes));
    }

    [Fact]
    public async Task Deleting_a_cluster_deletes_its_replicas_only()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.AddRange([Samples.Cluster("c1", "one"), Samples.Cluster("c2", "two")]);
            c.UpsertReplicas.AddRange([
                Samples.BareReplica("r1", "c1"), Samples.BareReplica("r2", "c1"), Samples.BareReplica("r3", "c2"), Samples.BareReplica("r4", "c2")]);
        });

        await CommitAsync(store, c =>
        {
            c.DeleteClusters.Add("c1");
            c.DeleteReplicas.Add("r4");
            c.DeleteClusters.Add("no-such-cluster");
        });
        var snapshot = await store.LoadAsync();

        Assert.Equal("c2", Assert.Single(snapshot.Clusters).Id);
        Assert.Equal("r3", Assert.Single(snapshot.Replicas).Id);
    }

    [Fact]
    public async Task A_deleted_cluster_name_can_be_reused_in_the_same_commit()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c => c.UpsertClusters.Add(Samples.Cluster("old", "llama")));

        await CommitAsync(store, c =>
        {
            c.DeleteClusters.Add("old");
            c.UpsertClusters.Add(Samples.Cluster("new", "llama"));
        });

        Assert.Equal("new", Assert.Single((await store.LoadAsync()).Clusters).Id);
    }

    [Fact]
    public async Task A_duplicate_cluster_name_conflicts_and_nothing_of_that_commit_is_kept()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.AddRange([Samples.Cluster("c1", "llama"), Samples.Cluster("c9", "doomed")]);
            c.UpsertReplicas.Add(Samples.BareReplica("r1", "c1"));
        });
        var before = await store.LoadAsync();

        var changes = new StoreChanges();
        changes.DeleteClusters.Add("c9");
        changes.DeleteReplicas.Add("r1");
        changes.UpsertClusters.Add(Samples.Cluster("c2", "fine"));
        changes.UpsertClusters.Add(Samples.Cluster("c3", "llama"));
        changes.UpsertNodes.Add(Samples.FullNode());
        changes.UpsertReplicas.Add(Samples.BareReplica("r2", "c2"));
        var ex = await Assert.ThrowsAsync<StoreConflictException>(() => store.CommitAsync(changes));
        var after = await store.LoadAsync();

        Assert.Equal("cluster 'llama' already exists", ex.Message);
        Assert.Equal(before.Clusters.Select(c => c.Id).Order(), after.Clusters.Select(c => c.Id).Order());
        Assert.Equal(["r1"], after.Replicas.Select(r => r.Id));
        Assert.Empty(after.Nodes);
    }

    [Fact]
    public async Task Two_new_clusters_with_one_name_conflict_but_other_projects_may_share_it()
    {
        var store = await OpenMigratedAsync();

        var changes = new StoreChanges();
        changes.UpsertClusters.AddRange([Samples.Cluster("a", "same"), Samples.Cluster("b", "same")]);
        await Assert.ThrowsAsync<StoreConflictException>(() => store.CommitAsync(changes));
        Assert.Empty((await store.LoadAsync()).Clusters);

        await CommitAsync(store, c => c.UpsertClusters.AddRange(
            [Samples.Cluster("a", "same", "team-a"), Samples.Cluster("b", "same", "team-b")]));
        Assert.Equal(2, (await store.LoadAsync()).Clusters.Count);
    }

    [Fact]
    public async Task A_failed_commit_leaves_the_store_usable()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c => c.UpsertClusters.Add(Samples.Cluster("c1", "llama")));
        var dup = new StoreChanges();
        dup.UpsertClusters.Add(Samples.Cluster("c2", "llama"));
        await Assert.ThrowsAsync<StoreConflictException>(() => store.CommitAsync(dup));

        await CommitAsync(store, c => c.UpsertClusters.Add(Samples.Cluster("c2", "other")));

        Assert.Equal(2, (await store.LoadAsync()).Clusters.Count);
    }

    [Fact]
    public async Task Ten_thousand_replicas_commit_in_one_go()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c => c.UpsertClusters.Add(Samples.Cluster()));
        var changes = new StoreChanges();
        changes.UpsertReplicas.AddRange(Enumerable.Range(0, 10_000).Select(i => Samples.FullReplica($"r{i:D5}") with { HostPort = i }));

        var watch = Stopwatch.StartNew();
        await store.CommitAsync(changes);
        var insert = watch.Elapsed;
        var updates = new StoreChanges();
        updates.UpsertReplicas.AddRange(changes.UpsertReplicas.Select(r => r with { State = ReplicaState.Ready }));
        watch.Restart();
        await store.CommitAsync(updates);
        var update = watch.Elapsed;
        watch.Restart();
        var snapshot = await store.LoadAsync();
        var load = watch.Elapsed;
        Output.WriteLine($"{ExpectedKind}: insert 10k {insert.TotalMilliseconds:F0} ms, update 10k {update.TotalMilliseconds:F0} ms, load {load.TotalMilliseconds:F0} ms");

        Assert.Equal(10_000, snapshot.Replicas.Count);
        Assert.All(snapshot.Replicas, r => Assert.Equal(ReplicaState.Ready, r.State));
        Assert.Equal(Enumerable.Range(0, 10_000).Sum(), snapshot.Replicas.Sum(r => r.HostPort!.Value));
        // Generous: a shared CI machine; typical runs are far below this.
        Assert.True(insert < TimeSpan.FromSeconds(10), $"10k upserts took {insert}");
        Assert.True(update < TimeSpan.FromSeconds(10), $"10k updates took {update}");
    }

    [Fact]
    public async Task Data_survives_closing_and_reopening()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.Add(Samples.Cluster());
            c.UpsertReplicas.Add(Samples.FullReplica());
            c.UpsertNodes.Add(Samples.FullNode());
        });
        await store.CreateTokenAsync(Samples.Token());
        await store.DisposeAsync();
        _opened.Remove(store);

        var reopened = await OpenMigratedAsync();
        var snapshot = await reopened.LoadAsync();

        Samples.Equal(Samples.Cluster(), Assert.Single(snapshot.Clusters));
        Samples.Equal(Samples.FullReplica(), Assert.Single(snapshot.Replicas));
        Samples.Equal(Samples.FullNode(), Assert.Single(snapshot.Nodes));
        Samples.Equal(Samples.Token(), Assert.Single(await reopened.ListTokensAsync()));
        Assert.Equal(Schema.LatestVersion, await reopened.GetSchemaVersionAsync());
    }

    [Fact]
    public async Task Tokens_round_trip_and_count_uses_until_exhausted()
    {
        var store = await OpenMigratedAsync();
        var token = Samples.Token("t1", maxUses: 2);
        var bare = new ProvisioningTokenRecord { Id = "t2", Hash = "h2", CreatedAt = Samples.At(1), ExpiresAt = Samples.At(2) };
        await store.CreateTokenAsync(token);
        await store.CreateTokenAsync(bare);
        var listed = await store.ListTokensAsync();
        Assert.Equal(2, listed.Count);
        Samples.Equal(token, listed[0]);
        Samples.Equal(bare, listed[1]);
        // The policy a node is admitted with is read back by the token's hash.
        Samples.Equal(token, (await store.FindTokenAsync(token.Hash))!);
        Assert.Null(await store.FindTokenAsync("no-such-hash"));

        var now = Samples.At(60);
        Assert.Equal(TokenUseOutcome.Accepted, await store.UseTokenAsync(token.Hash, now));
        Assert.Equal(1, (await store.ListTokensAsync()).Single(t => t.Id == "t1").Uses);
        Assert.Equal(TokenUseOutcome.Accepted, await store.UseTokenAsync(token.Hash, now));
        Assert.Equal(TokenUseOutcome.Exhausted, await store.UseTokenAsync(token.Hash, now));
        Assert.Equal(2, (await store.ListTokensAsync()).Single(t => t.Id == "t1").Uses);
    }

    [Fact]
    public async Task An_expired_token_is_refused_at_and_after_its_expiry()
    {
        var store = await OpenMigratedAsync();
        var token = Samples.Token("t1", maxUses: 5);
        await store.CreateTokenAsync(token);

        Assert.Equal(TokenUseOutcome.Accepted, await store.UseTokenAsync(token.Hash, token.ExpiresAt.AddMilliseconds(-1)));
        Assert.Equal(TokenUseOutcome.Expired, await store.UseTokenAsync(token.Hash, token.ExpiresAt));
        Assert.Equal(TokenUseOutcome.Expired, await store.UseTokenAsync(token.Hash, token.ExpiresAt.AddDays(1)));
        Assert.Equal(1, Assert.Single(await store.ListTokensAsync()).Uses);
    }

    [Fact]
    public async Task A_revoked_token_is_refused_and_keeps_its_first_revocation_time()
    {
        var store = await OpenMigratedAsync();
        await store.CreateTokenAsync(Samples.Token("t1", maxUses: 5));

        Assert.True(await store.RevokeTokenAsync("t1", Samples.At(10)));
        Assert.True(await store.RevokeTokenAsync("t1", Samples.At(20)));
        Assert.False(await store.RevokeTokenAsync("nope", Samples.At(20)));

        Assert.Equal(TokenUseOutcome.Revoked, await store.UseTokenAsync("hash-t1", Samples.At(30)));
        var stored = Assert.Single(await store.ListTokensAsync());
        Assert.Equal(Samples.At(10), stored.RevokedAt);
        Assert.Equal(0, stored.Uses);
    }

    [Fact]
    public async Task Api_keys_and_projects_round_trip_revocation_keeps_its_first_time_and_duplicates_conflict()
    {
        var store = await OpenMigratedAsync();
        // Migration 5 made a project of every project clusters used; an empty store has none.
        Assert.Empty(await store.ListProjectsAsync());
        var project = new ProjectRecord { Name = "alpha", Description = "team a", CreatedAt = Samples.At(1) };
        await store.CreateProjectAsync(project);
        await Assert.ThrowsAsync<StoreConflictException>(() => store.CreateProjectAsync(project with { Description = null }));
        Assert.Equal(project, Assert.Single(await store.ListProjectsAsync()));

        var key = new ApiKeyRecord
        {
            Id = "key-1", Hash = "hash-1", Prefix = "shoal_ak_abcd", Name = "ci", Role = ApiKeyRoles.Member, Project = "alpha",
            RateLimitPerMinute = 10, CreatedAt = Samples.At(2), ExpiresAt = Samples.At(100), CreatedBy = "key-0 (operator)",
        };
        var operatorKey = new ApiKeyRecord { Id = "key-0", Hash = "hash-0", Prefix = "shoal_ak_zzzz", Name = "op", Role = ApiKeyRoles.Operator, CreatedAt = Samples.At(1) };
        await store.CreateApiKeyAsync(operatorKey);
        await store.CreateApiKeyAsync(key);
        await Assert.ThrowsAsync<StoreConflictException>(() => store.CreateApiKeyAsync(key with { Id = "key-2" }));
        Assert.Equal([operatorKey, key], await store.ListApiKeysAsync());

        Assert.True(await store.RevokeApiKeyAsync("key-1", Samples.At(10)));
        Assert.True(await store.RevokeApiKeyAsync("key-1", Samples.At(20)));
        Assert.False(await store.RevokeApiKeyAsync("nope", Samples.At(20)));
        Assert.Equal(Samples.At(10), (await store.ListApiKeysAsync()).Single(k => k.Id == "key-1").RevokedAt);
    }

    [Fact]
    public async Task Gateway_limits_and_budgets_of_keys_and_projects_round_trip_and_clear()
    {
        var store = await OpenMigratedAsync();
        var limits = new GatewayLimits { RequestsPerMinute = 100, TokensPerMinute = 50_000, MaxConcurrent = 8 };
        var budget = new BudgetSpec { AmountUsd = 12.5m, Period = BudgetPeriods.Week };
        var project = new ProjectRecord { Name = "alpha", CreatedAt = Samples.At(1), Limits = limits };
        await store.CreateProjectAsync(project);
        Assert.Equal(project, Assert.Single(await store.ListProjectsAsync()));
        var key = new ApiKeyRecord
        {
            Id = "key-1", Hash = "hash-1", Prefix = "shoal_sk_abcd", Name = "app", Role = ApiKeyRoles.Endpoint, Project = "alpha",
            CreatedAt = Samples.At(2), Limits = new GatewayLimits { RequestsPerMinute = 10 }, Budget = budget,
        };
        await store.CreateApiKeyAsync(key);
        Assert.Equal(key, Assert.Single(await store.ListApiKeysAsync()));

        Assert.True(await store.UpdateApiKeyGatewayAsync("key-1", new GatewayLimits { MaxConcurrent = 2 }, null));
        Assert.True(await store.UpdateProjectGatewayAsync("alpha", null, budget));
        Assert.False(await store.UpdateApiKeyGatewayAsync("nope", null, null));
        Assert.False(await store.UpdateProjectGatewayAsync("nope", null, null));
        Assert.Equal(key with { Limits = new GatewayLimits { MaxConcurrent = 2 }, Budget = null }, Assert.Single(await store.ListApiKeysAsync()));
        Assert.Equal(project with { Limits = null, Budget = budget }, Assert.Single(await store.ListProjectsAsync()));
        // Empty limits are stored as none.
        Assert.True(await store.UpdateApiKeyGatewayAsync("key-1", new GatewayLimits(), null));
        Assert.Null(Assert.Single(await store.ListApiKeysAsync()).Limits);
    }

    [Fact]
    public async Task Deleting_a_node_keeps_other_nodes_and_events_carry_their_actor()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c =>
        {
            c.UpsertNodes.Add(Samples.BareNode("n1"));
            c.UpsertNodes.Add(Samples.BareNode("n2"));
            c.UpsertClusters.Add(Samples.Cluster("c1", "a"));
            c.AppendEvents.Add(new ClusterEventRecord { Seq = 1, ClusterId = "c1", At = Samples.At(1), Type = ClusterEventTypes.Created, Message = "m", Actor = "key-1 (ci)" });
        });
        await CommitAsync(store, c => c.DeleteNodes.Add("n1"));
        Assert.Equal(["n2"], (await store.LoadAsync()).Nodes.Select(n => n.Id).ToArray());
        Assert.Equal("key-1 (ci)", Assert.Single(await store.ListEventsAsync("c1", 10)).Actor);
    }

    [Fact]
    public async Task An_unknown_token_is_not_found_and_a_duplicate_hash_conflicts()
    {
        var store = await OpenMigratedAsync();
        await store.CreateTokenAsync(Samples.Token("t1", hash: "h"));

        Assert.Equal(TokenUseOutcome.NotFound, await store.UseTokenAsync("other", Samples.At(1)));
        await Assert.ThrowsAsync<StoreConflictException>(() => store.CreateTokenAsync(Samples.Token("t2", hash: "h")));
        Assert.Single(await store.ListTokensAsync());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public async Task Concurrent_uses_never_exceed_the_limit(int maxUses)
    {
        var store = await OpenMigratedAsync();
        await store.CreateTokenAsync(Samples.Token("t1", maxUses));
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var callers = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            await start.Task;
            return await store.UseTokenAsync("hash-t1", Samples.At(5));
        })).ToList();

        start.SetResult();
        var outcomes = await Task.WhenAll(callers);

        Assert.Equal(maxUses, outcomes.Count(o => o == TokenUseOutcome.Accepted));
        Assert.Equal(8 - maxUses, outcomes.Count(o => o == TokenUseOutcome.Exhausted));
        Assert.Equal(maxUses, Assert.Single(await store.ListTokensAsync()).Uses);
    }
    private static ClusterEventRecord Event(long seq, string clusterId = "c1", string type = ClusterEventTypes.Ready) => new()
    {
        Seq = seq,
        ClusterId = clusterId,
        At = Samples.At((int)seq),
        Type = type,
        ReplicaId = $"r{seq}",
        NodeId = "n1",
        NodeName = "node-1",
        Message = $"event {seq} ✓",
    };

    [Fact]
    public async Task Events_round_trip_in_order_with_a_limit_and_the_last_sequence_loads()
    {
        var store = await OpenMigratedAsync();
        Assert.Equal(0, (await store.LoadAsync()).LastEventSeq);
        // A new cluster and its first event in one commit: the cluster row is written first.
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.Add(Samples.Cluster("c1", "a"));
            c.UpsertClusters.Add(Samples.Cluster("c2", "b"));
            c.AppendEvents.Add(Event(1, type: ClusterEventTypes.Created));
            c.AppendEvents.Add(Event(2, "c2"));
        });
        await CommitAsync(store, c =>
        {
            c.AppendEvents.Add(Event(3));
            c.AppendEvents.Add(new ClusterEventRecord { Seq = 4, ClusterId = "c1", At = Samples.At(4), Type = ClusterEventTypes.Scaled, Message = "m" });
        });

        // A sequence number already taken is ignored, and the rest of the commit stands.
        await CommitAsync(store, c =>
        {
            c.AppendEvents.Add(Event(3) with { Message = "duplicate" });
            c.UpsertClusters.Add(Samples.Cluster("c3", "c"));
        });
        Assert.Equal(3, (await store.LoadAsync()).Clusters.Count);

        var all = await store.ListEventsAsync("c1", 100);
        Assert.Equal(new long[] { 1, 3, 4 }, all.Select(e => e.Seq).ToArray());
        Assert.Equal(Event(1, type: ClusterEventTypes.Created), all[0]);
        Assert.Equal(Event(3), all[1]);
        Assert.Null(all[2].ReplicaId);
        Assert.Null(all[2].NodeName);
        var lastTwo = await store.ListEventsAsync("c1", 2);
        Assert.Equal(new long[] { 3, 4 }, lastTwo.Select(e => e.Seq).ToArray());
        Assert.Equal(2, Assert.Single(await store.ListEventsAsync("c2", 100)).Seq);
        Assert.Empty(await store.ListEventsAsync("nope", 100));
        Assert.Equal(4, (await store.LoadAsync()).LastEventSeq);
    }

    [Fact]
    public async Task Each_cluster_keeps_its_newest_events_only_and_they_go_with_the_cluster()
    {
        var store = await OpenMigratedAsync();
        await CommitAsync(store, c =>
        {
            c.UpsertClusters.Add(Samples.Cluster("c1", "a"));
            c.UpsertClusters.Add(Samples.Cluster("c2", "b"));
            c.AppendEvents.Add(Event(1, "c2"));
        });
        var retained = ClusterEventRecord.RetainedPerCluster;
        // Two commits, so trimming works across commits as well as within one.
        await CommitAsync(store, c => c.AppendEvents.AddRange(Enumerable.Range(2, retained).Select(i => Event(i))));
        await CommitAsync(store, c => c.AppendEvents.AddRange(Enumerable.Range(retained + 2, 10).Select(i => Event(i))));

        var kept = await store.ListEventsAsync("c1", retained * 2);
        Assert.Equal(retained, kept.Count);
        Assert.Equal(12, kept[0].Seq);
        Assert.Equal(retained + 11, kept[^1].Seq);
        // Another cluster's events are not trimmed by this one's.
        Assert.Single(await store.ListEventsAsync("c2", 10));

        await CommitAsync(store, c => c.DeleteClusters.Add("c1"));
        Assert.Empty(await store.ListEventsAsync("c1", 10));
        Assert.Single(await store.ListEventsAsync("c2", 10));
    }
}
