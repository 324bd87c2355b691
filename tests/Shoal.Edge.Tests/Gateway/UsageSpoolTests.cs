using System.Text.Json;
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
        var options = new UsageSpoolOptions { Directory = _dir.Path, MaxSegmentBytes = 2048, MaxBatchRecords = 20, ShipInterval = TimeSpan.Zero };
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
    public async Task The_acknowledged_position_is_kept_on_disk_at_most_once_a_second_and_when_the_spool_closes()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 5, 6, 0, 0, TimeSpan.Zero));
        string Kept() => File.ReadAllText(Path.Combine(_dir.Path, "acked")).Trim();
        static string Of(SpoolBatch batch) => $"{batch.End.Segment} {batch.End.Offset}";
        var spool = Open(o => o with { MaxBatchRecords = 2 }, time);
        SpoolBatch fourth;
        await using (spool)
        {
            for (var i = 0; i < 8; i++) spool.Record(Row(i));
            await Eventually.UntilAsync(() => spool.Written == 8, what: "8 records written");
            SpoolBatch Ship()
            {
                var batch = spool.TakeBatch()!;
                Assert.True(spool.Acknowledge(batch.Sequence));
                return batch;
            }
            var first = Ship();
            Assert.Equal(Of(first), Kept());
            // Within the second: acknowledged in memory, the file keeps the first.
            Ship();
            Assert.Equal(Of(first), Kept());
            time.Advance(TimeSpan.FromSeconds(1));
            var third = Ship();
            Assert.Equal(Of(third), Kept());
            fourth = Ship();
            Assert.Equal(Of(third), Kept());
            Assert.Null(spool.TakeBatch());
        }
        // Closing keeps the last one: nothing is shipped again.
        Assert.Equal(Of(fourth), Kept());
        await using var reopened = Open();
        Assert.Null(reopened.TakeBatch());
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
        Assert.Equal(5, batch.Records.Length);
        Assert.True(spool.Acknowledge(batch.Sequence));
        Assert.False(spool.Acknowledge(batch.Sequence));
        // Its message was in the spool's batch buffer, free for the next batch now: not readable any more (records read before stay).
        Assert.Throws<ObjectDisposedException>(() => batch.Message);
        Assert.Equal(5, batch.Records.Length);
        Assert.Null(spool.TakeBatch());
        Assert.Equal(5, spool.Acknowledged);
    }

    [Fact]
    public async Task The_shipper_is_woken_for_new_records_only_when_it_can_take_them()
    {
        await using var spool = Open();
        var woken = 0;
        spool.Available += () => Interlocked.Increment(ref woken);
        spool.Record(Row(0));
        await Eventually.UntilAsync(() => Volatile.Read(ref woken) == 1, what: "the shipper woken for the first record");

        // A batch in flight: its acknowledgement, not each write, is the shipper's cue.
        var batch = spool.TakeBatch()!;
        for (var i = 1; i <= 5; i++)
        {
            spool.Record(Row(i));
            await Eventually.UntilAsync(() => spool.Written == i + 1, what: $"record {i} written");
        }
        Assert.Equal(1, Volatile.Read(ref woken));

        // The batch is to go again (the link was lost): new records wake the shipper.
        spool.ResendInFlight();
        spool.Record(Row(6));
        await Eventually.UntilAsync(() => Volatile.Read(ref woken) == 2, what: "the shipper woken while its batch is to go again");
        Assert.Same(batch, spool.TakeBatch());

        // Acknowledged: the next write wakes it again, and everything after the batch ships.
        Assert.True(spool.Acknowledge(batch.Sequence));
        spool.Record(Row(7));
        await Eventually.UntilAsync(() => Volatile.Read(ref woken) == 3, what: "the shipper woken after the acknowledgement");
        Assert.Equal(Enumerable.Range(1, 7).Select(Row), Drain(spool));
    }

    [Fact]
    public async Task After_a_partial_batch_the_next_waits_for_the_interval_and_after_a_full_one_it_goes_at_once()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var spool = Open(o => o with { ShipInterval = TimeSpan.FromSeconds(1) }, time);
        var woken = 0;
        spool.Available += () => Interlocked.Increment(ref woken);
        for (var i = 0; i < 45; i++) spool.Record(Row(i));
        await Eventually.UntilAsync(() => spool.Written == 45, what: "45 records written");

        // Full batches (20 records) follow each other at once; the partial one that takes the rest ends the run.
        var sizes = new List<int>();
        while (spool.TakeBatch() is { } batch)
        {
            sizes.Add(batch.Count);
            Assert.True(spool.Acknowledge(batch.Sequence));
        }
        Assert.Equal([20, 20, 5], sizes);
        var wokenBefore = Volatile.Read(ref woken);

        // New records within the interval wait (the shipper is not woken for them) ...
        for (var i = 45; i < 48; i++) spool.Record(Row(i));
        await Eventually.UntilAsync(() => spool.Written == 48, what: "48 records written");
        Assert.Null(spool.TakeBatch());
        time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Null(spool.TakeBatch());
        Assert.Equal(wokenBefore, Volatile.Read(ref woken));

        // ... until it is up: the timer wakes the shipper and they go in one batch.
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(wokenBefore + 1, Volatile.Read(ref woken));
        var next = spool.TakeBatch()!;
        Assert.Equal(Enumerable.Range(45, 3).Select(Row), next.Records);
        Assert.True(spool.Acknowledge(next.Sequence));

        // Nothing waiting when the interval is up: nobody is woken for nothing.
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(wokenBefore + 1, Volatile.Read(ref woken));
        Assert.Equal(48, spool.Acknowledged);
    }

    [Fact]
    public async Task Shipped_segments_are_closed_when_deleted_so_their_space_is_freed()
    {
        await using var spool = Open();
        for (var i = 0; i < 50; i++) spool.Record(Row(i));
        await Eventually.UntilAsync(() => spool.Written == 50, what: "50 records written");
        Assert.True(spool.Segments > 3, $"only {spool.Segments} segments");

        Assert.Equal(50, Drain(spool).Count);

        // The reader keeps the segment it reads open between batches; none of the deleted ones stays open.
        var open = Directory.GetFiles("/proc/self/fd")
            .Select(fd => new FileInfo(fd).LinkTarget)
            .Where(target => target is not null && target.StartsWith(_dir.Path, StringComparison.Ordinal))
            .ToList();
        Assert.DoesNotContain(open, target => target!.EndsWith("(deleted)", StringComparison.Ordinal));
        Assert.Equal(1, spool.Segments);
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
    public async Task Every_property_of_a_record_comes_back_from_the_spool_as_written()
    {
        var full = new UsageRecord
        {
            RequestId = "req-1", At = new DateTimeOffset(2026, 12, 5, 6, 7, 8, 9, TimeSpan.Zero), KeyId = "k1", Project = "p", Cluster = "c",
            Model = "m\"odel é", ReplicaId = "r1", NodeId = "n1", PromptTokens = 12, CompletionTokens = 34, TimeToFirstTokenMs = 5.678,
            DurationMs = 91.011, Status = 499, Attempts = 3, Streamed = true, Cut = true, CostUsd = 0.000123456789m, Edge = "edge-1",
        };
        var bare = full with { RequestId = "req-2", KeyId = null, Model = null, ReplicaId = null, NodeId = null, TimeToFirstTokenMs = null, Edge = null };
        await using var spool = Open();
        spool.Record(full);
        spool.Record(bare);
        await Eventually.UntilAsync(() => spool.Written == 2, TimeSpan.FromSeconds(10), "written");
        var batch = spool.TakeBatch()!;
        Assert.Equal([full, bare], batch.Records);
        Assert.Equal([full, bare], Assert.IsType<UsageBatch>(JsonSerializer.Deserialize(batch.Message.Span, ShoalJsonContext.Default.EdgeRequest)).Records);
    }

    [Theory]
    [InlineData("""{"requestId":"r","at":"2026-12-05T06:00:00+00:00","project":"p","cluster":"c"}""", true)]
    [InlineData("""{"RequestId":"r","AT":"2026-12-05T06:00:00Z","project":"p","cluster":"c","keyId":null,"status":200,"streamed":true,"costUsd":0.5,"somethingNew":{"a":[1]}}""", true)]
    [InlineData("""{"at":"2026-12-05T06:00:00+00:00","project":"p","cluster":"c"}""", false)]
    [InlineData("""{"requestId":null,"at":"2026-12-05T06:00:00+00:00","project":"p","cluster":"c"}""", false)]
    [InlineData("""{"requestId":"r","at":"yesterday","project":"p","cluster":"c"}""", false)]
    [InlineData("""{"requestId":"r","at":"2026-12-05T06:00:00+00:00","project":"p","cluster":"c","status":"ok"}""", false)]
    [InlineData("""{"requestId":"r","at":"2026-12-05T06:00:00+00:00","project":"p","cluster":"c","promptTokens":null}""", false)]
    [InlineData("""{"requestId":"r","at":"2026-12-05T06:00:00+00:00","project":"p","cluster":"c","attempts":1.5}""", false)]
    [InlineData("""{"requestId":"r","at":"2026-12-05T06:00:00+00:00","project":"p","cluster":"c"}x""", false)]
    [InlineData("""{"requestId":"r","at":"2026-12-05T06:00:00+00:00","project":"p","clus""", false)]
    [InlineData("""[1,2]""", false)]
    public void A_line_is_shipped_only_when_the_control_plane_can_read_it_as_a_record(string line, bool record)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(line);
        Assert.Equal(record, UsageSpoolLine.IsRecord(bytes));
        // The check and the control plane's reader agree (that reader takes a null for a required name; its intake then skips the row).
        UsageRecord? read = null;
        try
        {
            read = JsonSerializer.Deserialize(bytes, ShoalJsonContext.Default.UsageRecord);
        }
        catch (JsonException)
        {
            // Not a record.
        }
        Assert.Equal(record, read is { RequestId: not null, Project: not null, Cluster: not null });
    }

    [Fact]
    public async Task A_batch_goes_to_the_control_plane_as_its_lines_and_reads_there_as_the_records_written()
    {
        await using var spool = Open();
        var rows = Enumerable.Range(0, 5).Select(i => Row(i) with { Model = i == 2 ? "m\"odel" : null, CostUsd = i / 8m }).ToList();
        foreach (var row in rows) spool.Record(row);
        await Eventually.UntilAsync(() => spool.Written == rows.Count, TimeSpan.FromSeconds(10), "written");
        var batch = spool.TakeBatch()!;
        var message = Assert.IsType<UsageBatch>(JsonSerializer.Deserialize(batch.Message.Span, ShoalJsonContext.Default.EdgeRequest));
        Assert.Equal(batch.Sequence, message.Sequence);
        Assert.Equal(rows, message.Records);
        Assert.Equal(rows, batch.Records);
        Assert.Equal(rows, JsonSerializer.Deserialize(batch.RecordsJson.Span, ShoalJsonContext.Default.UsageRecordArray));
    }

    [Fact]
    public async Task A_second_edge_cannot_open_a_spool_in_use()
    {
        await using var spool = Open();
        var e = Assert.Throws<IOException>(() => Open());
        Assert.Contains("in use", e.Message, StringComparison.Ordinal);
    }
}
