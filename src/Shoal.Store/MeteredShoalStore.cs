using System.Diagnostics.Metrics;

namespace Shoal.Store;

/// <summary>
/// Counts a store's writes on <see cref="MeterName"/> (<c>shoal.store.commits</c>: transactions that change
/// something, by operation; <c>shoal.store.rows</c>: rows they write) and passes every call on unchanged.
/// Read with <c>dotnet-counters monitor --counters Shoal.Store</c> or any System.Diagnostics.Metrics listener.
/// </summary>
public sealed class MeteredShoalStore(IShoalStore inner) : DelegatingShoalStore(inner)
{
    /// <summary>The meter the store's counters are published on.</summary>
    public const string MeterName = "Shoal.Store";

    private static readonly Meter s_meter = new(MeterName);
    private static readonly Counter<long> s_commits = s_meter.CreateCounter<long>("shoal.store.commits", "{transaction}", "Store transactions that write, by operation");
    private static readonly Counter<long> s_rows = s_meter.CreateCounter<long>("shoal.store.rows", "{row}", "Rows written (upserted, deleted or appended) by state commits");
    private static readonly Histogram<double> s_commitDuration = s_meter.CreateHistogram<double>("shoal.store.commit.duration", "ms", "Time one state commit takes (a transaction that writes)");

    public override async Task CommitAsync(StoreChanges changes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(changes);
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        await Inner.CommitAsync(changes, cancellationToken);
        if (changes.IsEmpty) return;
        if (s_commitDuration.Enabled) s_commitDuration.Record(System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        Count("commit");
        s_rows.Add(changes.UpsertClusters.Count + changes.DeleteClusters.Count + changes.UpsertReplicas.Count + changes.DeleteReplicas.Count
            + changes.UpsertNodes.Count + changes.DeleteNodes.Count + changes.AppendEvents.Count + changes.ReplicaRuns.Count);
    }

    public override async Task CreateTokenAsync(ProvisioningTokenRecord token, CancellationToken cancellationToken = default)
    {
        await Inner.CreateTokenAsync(token, cancellationToken);
        Count("token");
    }

    public override async Task<TokenUseOutcome> UseTokenAsync(string tokenHash, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var outcome = await Inner.UseTokenAsync(tokenHash, now, cancellationToken);
        if (outcome == TokenUseOutcome.Accepted) Count("token-use");
        return outcome;
    }

    public override async Task<bool> RevokeTokenAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var revoked = await Inner.RevokeTokenAsync(id, now, cancellationToken);
        if (revoked) Count("token");
        return revoked;
    }

    public override async Task CreateProjectAsync(ProjectRecord project, CancellationToken cancellationToken = default)
    {
        await Inner.CreateProjectAsync(project, cancellationToken);
        Count("project");
    }

    public override async Task CreateApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken = default)
    {
        await Inner.CreateApiKeyAsync(key, cancellationToken);
        Count("api-key");
    }

    public override async Task<bool> RevokeApiKeyAsync(string id, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var revoked = await Inner.RevokeApiKeyAsync(id, now, cancellationToken);
        if (revoked) Count("api-key");
        return revoked;
    }

    public override async Task AppendUsageAsync(IReadOnlyCollection<Contracts.UsageRecord> records, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(records);
        await Inner.AppendUsageAsync(records, cancellationToken);
        if (records.Count == 0) return;
        Count("usage");
        s_rows.Add(records.Count);
    }

    private static void Count(string operation) => s_commits.Add(1, new KeyValuePair<string, object?>("op", operation));
}
