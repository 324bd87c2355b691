using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shoal.Contracts;
using Shoal.Edge.Gateway;
using Shoal.Testing;

namespace Shoal.Edge.Tests.Gateway;

/// <summary>The edge's usage spool: append, ship in batches, acknowledge, and pick up what a stopped or killed edge left.</summary>
public sealed class UsageSpoolTests : IDisposable
{
    private readonly TempDirectory _dir = new("shoal-spool");

    public void Dispose() => _dir.Dispose();

    private UsageSpool Open(Func<UsageSpoolOptions, UsageSpoolOptions>? configure = null, TimeProvider? time = null)
    {
        var options = new UsageSpoolOptions { Directory = _dir.Path, MaxSegmentBytes = 2048, MaxBatchRecords = 20 };
        return new UsageSpool(configure?.Invoke(options) ?? options, NullLogger<UsageSpool>.Instance, time);
    }

    private static UsageRecord Row(int i) => new()
    {
        RequestId = $"req-{i:D4}",
        At = new DateTimeOffset(2026, 12, 5, 6, 0, 0, TimeSpan.Zero).AddMilliseconds(i),
        Project = "p",
        Cluster = "c",
        KeyId = "k",
        Status = 200,
        Attempts = 1,
        DurationMs = i,
        Streamed = i % 3 == 0,
    };

    /// <summary>Takes and acknowledges batches until the spool has nothing more; the records in order.</summary>
    private static List<UsageRecord> Drain(UsageSpool spool)
    {
        var all = new List<UsageRecord>();
        while (spool.TakeBatch() is { } batch)
        {
            Assert.InRange(batch.Records.Length, 1, 20);
            all.AddRange(batch.Records);
            Assert.True(spool.Acknowledge(batch.Sequence));
        }
        return all;
    }

    [Fact]
    public async Task Records_are_shipped_in_order_in_batches_and_acknowledged_segments_are_deleted()
    {
        await using var spool = Open();
        for (var i = 0; i < 50; i++) spool.Record(Row(i));
        await Eventually.UntilAsync(() => spool.Written == 50, what: "50 records written");
        Assert.True(spool.Segments > 3, $"only {spool.Segments} segments for 50 records of 2 KiB segments");

        var shipped = Drain(spool);

        Assert.Equal(Enumerable.Range(0, 50).Select(Row), shipped);
        Assert.Equal(50, spool.Acknowledged);
        // Only the segment being written is left.
        Assert.Equal(1, spool.Segments);
        Assert.Single(Directory.GetFiles(_dir.Path, "usage-*.jsonl"));
    }

    [Fact]
    public async Task A_torn_last_line_left_by_a_crash_is_skipped_and_the_rest_shipped()
    {
        var lines = string.Concat(Enumerable.Range(0, 3).Select(i => System.Text.Json.JsonSerializer.Serialize(Row(i), ShoalJsonContext.Default.UsageRecord) + "\n"));
        var torn = System.Text.Json.JsonSerializer.Serialize(Row(3), ShoalJsonContext.Default.UsageRecord)[..40];
        await File.WriteAllTextAsync(_dir.Combine("usage-000000000001.jsonl"), lines + torn);

        await using var spool = Open();
        spool.Record(Row(4));
        await Eventually.UntilAsync(() => spool.Written == 1, what: "the new record written");

        var shipped = Drain(spool);

        Assert.Equal([Row(0), Row(1), Row(2), Row(4)], shipped);
        Assert.Equal(1, spool.Corrupt);
        Assert.Equal(1, spool.LeftOver);
    }

    [Fact]
    public async Task A_reopened_spool_ships_exactly_what_was_not_acknowledged_before()
    {
        await using (var first = Open())
        {
            for (var i = 0; i < 30; i++) first.Record(Row(i));
            await Eventually.UntilAsync(() => first.Written == 30, what: "30 records written");
            var acked = first.TakeBatch()!;
            Assert.True(first.Acknowledge(acked.Sequence));
            // Taken but never acknowledged: the edge went away with it in flight.
            Assert.NotNull(first.TakeBatch());
        }

        await using var second = Open();
        second.Record(Row(30));
        await Eventually.UntilAsync(() => second.Written == 1, what: "the new record written");
        var shipped = Drain(second);

        Assert.Equal(Enumerable.Range(20, 11).Select(Row), shipped);
    }

    [Fact]
    public async Task A_batch_in_flight_is_sent_again_after_a_reconnect_or_its_timeout_and_only_its_own_ack_drops_it()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var spool = Open(o => o with { AckTimeout = TimeSpan.FromSeconds(30) }, time);
        for (var i = 0; i < 5; i++) spool.Record(Row(i));
        await Eventually.UntilAsync(() => spool.Written == 5, what: "5 records written");

        var batch = spool.TakeBatch()!;
        Assert.Null(spool.TakeBatch());
        spool.ResendInFlight();
        Assert.Same(batch, spool.TakeBatch());
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.Null(spool.TakeBatch());
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.Same(batch, spool.TakeBatch());

        Assert.False(spool.Acknowledge(batch.Sequence + 1));
        Assert.True(spool.Acknowledge(batch.Sequence));
        Assert.False(spool.Acknowledge(batch.Sequence));
        Assert.Null(spool.TakeBatch());
        Assert.Equal(5, spool.Acknowledged);
    }

    [Fact]
    public async Task A_full_spool_counts_records_as_failed_and_keeps_taking_them()
    {
        await using var spool = Open(o => o with { MaxSegments = 1, MaxSegmentBytes = 600 });
        for (var i = 0; i < 40; i++) spool.Record(Row(i));
        await Eventually.UntilAsync(() => spool.Written + spool.Failed == 40, what: "every record written or failed");

        Assert.InRange(spool.Failed, 1, 39);
        // What was written still ships; once shipped, the spool takes records again.
        var shipped = Drain(spool);
        Assert.Equal(spool.Written, shipped.Count);
        spool.Record(Row(99));
        await Eventually.UntilAsync(() => spool.Written == shipped.Count + 1, what: "a record written after shipping freed the spool");
    }

    [Fact]
    public async Task A_second_edge_cannot_open_a_spool_in_use()
    {
        await using var spool = Open();
        var e = Assert.Throws<IOException>(() => Open());
        Assert.Contains("in use", e.Message, StringComparison.Ordinal);
    }
}
