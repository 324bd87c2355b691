using System.Diagnostics.Metrics;
using Shoal.Testing;

namespace Shoal.Store.Tests;

/// <summary>The metered store passes calls through and counts exactly the transactions that write, and their rows.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MeteredShoalStoreTests : IDisposable
{
    private readonly TempDirectory _dir = new("shoal-metered");
    private readonly MeterListener _listener = new();
    private readonly Lock _lock = new();
    private readonly List<(string Instrument, long Value, string? Op)> _measurements = [];

    public MeteredShoalStoreTests()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MeteredShoalStore.MeterName) listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? op = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "op") op = tag.Value as string;
            }
            lock (_lock) _measurements.Add((instrument.Name, value, op));
        });
        _listener.Start();
    }

    [Fact]
    public async Task Counts_writing_transactions_and_rows_and_passes_everything_through()
    {
        await using var store = new MeteredShoalStore(SqliteShoalStore.InDirectory(_dir.Path));
        await store.MigrateAsync();
        Assert.Equal("sqlite", store.Kind);

        await store.CommitAsync(new StoreChanges { UpsertClusters = { Samples.Cluster() }, UpsertNodes = { Samples.BareNode() } });
        await store.CommitAsync(new StoreChanges());
        await store.CreateTokenAsync(Samples.Token(maxUses: 1));
        Assert.Equal(TokenUseOutcome.Accepted, await store.UseTokenAsync("hash-t1", Samples.At(1)));
        Assert.Equal(TokenUseOutcome.Exhausted, await store.UseTokenAsync("hash-t1", Samples.At(2)));
        var snapshot = await store.LoadAsync();
        await store.ListTokensAsync();

        Assert.Single(snapshot.Clusters);
        Assert.Single(snapshot.Nodes);
        List<(string Instrument, long Value, string? Op)> seen;
        lock (_lock) seen = [.. _measurements];
        Assert.Equal([("commit", 1L), ("token", 1L), ("token-use", 1L)],
            seen.Where(m => m.Instrument == "shoal.store.commits").Select(m => (m.Op!, m.Value)).ToArray());
        Assert.Equal(2, seen.Where(m => m.Instrument == "shoal.store.rows").Sum(m => m.Value));
    }

    public void Dispose()
    {
        _listener.Dispose();
        _dir.Dispose();
    }
}
