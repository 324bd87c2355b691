using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Win32.SafeHandles;
using Shoal.Contracts;
using Shoal.Core.Metrics;
using Shoal.Core.Security;

namespace Shoal.Edge.Gateway;

/// <summary>Settings of a <see cref="UsageSpool"/>.</summary>
public sealed record UsageSpoolOptions
{
    /// <summary>The spool's own directory (one edge per directory; a lock file keeps a second one out).</summary>
    public required string Directory { get; init; }
    /// <summary>A segment file is closed and a new one begun past this size. Default 4 MiB.</summary>
    public long MaxSegmentBytes { get; init; } = 4 * 1024 * 1024;
    /// <summary>Most segment files kept; past it new records are refused (counted, logged) until shipping frees one. Default 256 (1 GiB).</summary>
    public int MaxSegments { get; init; } = 256;
    /// <summary>Records waiting for the writer; past it they are dropped (counted), never waited for. Default 65,536.</summary>
    public int Capacity { get; init; } = 65_536;
    /// <summary>How often written records are forced to the disk (fsync), for power loss; a killed process loses nothing written. Default 1 s.</summary>
    public TimeSpan FsyncInterval { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Most records in one shipped batch. Default 500.</summary>
    public int MaxBatchRecords { get; init; } = 500;
    /// <summary>Most bytes of records in one shipped batch (under <see cref="EdgeProtocol.MaxRequestBytes"/> with the batch's envelope).</summary>
    public int MaxBatchBytes { get; init; } = EdgeProtocol.MaxRequestBytes - 64 * 1024;
    /// <summary>A batch not acknowledged this long is sent again. Default 30 s.</summary>
    public TimeSpan AckTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>
    /// After a batch that took all there was (not full), the next one is taken this long after its
    /// acknowledgement, so a busy edge ships fewer, larger batches (each one costs the edge a message and
    /// the control plane a transaction); after a full batch the next one goes at once. Default 250 ms.
    /// </summary>
    public TimeSpan ShipInterval { get; init; } = TimeSpan.FromMilliseconds(250);
}

/// <summary>A place in the spool: a segment's number and a byte offset in it.</summary>
public readonly record struct SpoolPosition(long Segment, long Offset) : IComparable<SpoolPosition>
{
    public int CompareTo(SpoolPosition other) => Segment != other.Segment ? Segment.CompareTo(other.Segment) : Offset.CompareTo(other.Offset);

    public static bool operator <(SpoolPosition a, SpoolPosition b) => a.CompareTo(b) < 0;
    public static bool operator >(SpoolPosition a, SpoolPosition b) => a.CompareTo(b) > 0;
    public static bool operator <=(SpoolPosition a, SpoolPosition b) => a.CompareTo(b) <= 0;
    public static bool operator >=(SpoolPosition a, SpoolPosition b) => a.CompareTo(b) >= 0;
}

/// <summary>
/// Records taken from the spool to ship, up to <see cref="End"/>; acknowledged by
/// <see cref="UsageSpool.Acknowledge"/> with its <see cref="Sequence"/>. It holds their spool lines as
/// they were written (those left from before this process's start each checked to be a record:
/// <see cref="UsageSpoolLine.IsRecord"/>), so a
/// standalone edge sends them on as they are (<see cref="Message"/>); <see cref="Records"/> reads
/// them only when asked (the in-process server stores them). The message lives in the spool's batch
/// buffer, made again for the next batch (one batch is in flight at a time): once the batch is
/// acknowledged its message and unread records are gone (<see cref="ObjectDisposedException"/>).
/// </summary>
public sealed class SpoolBatch
{
    private readonly ReadOnlyMemory<byte> _message;
    private readonly int _recordsStart;
    private UsageRecord[]? _records;
    private volatile bool _released;

    internal SpoolBatch(long sequence, ReadOnlyMemory<byte> message, int recordsStart, int count, SpoolPosition end, bool full)
    {
        Full = full;
        Sequence = sequence;
        _message = message;
        _recordsStart = recordsStart;
        Count = count;
        End = end;
    }

    public long Sequence { get; }

    /// <summary>Where in the spool the batch ends.</summary>
    public SpoolPosition End { get; }

    /// <summary>Records in the batch.</summary>
    public int Count { get; }

    /// <summary>The batch stopped at a limit (<see cref="UsageSpoolOptions.MaxBatchRecords"/> or bytes): more records were waiting.</summary>
    internal bool Full { get; }

    /// <summary>
    /// The <see cref="UsageBatch"/> message for the control plane (an <see cref="EdgeRequest"/> as
    /// <see cref="ShoalJsonContext"/> reads it), made with the lines as they are: no record is read
    /// and written again on its way out (that cost the edge about 7 µs per row).
    /// </summary>
    public ReadOnlyMemory<byte> Message
    {
        get
        {
            ObjectDisposedException.ThrowIf(_released, this);
            return _message;
        }
    }

    /// <summary>The records as a JSON array of their spool lines (in <see cref="Message"/>).</summary>
    public ReadOnlyMemory<byte> RecordsJson => Message.Slice(_recordsStart, _message.Length - 1 - _recordsStart);

    /// <summary>The records, read from their lines the first time they are asked for.</summary>
    public UsageRecord[] Records => _records ??= JsonSerializer.Deserialize(RecordsJson.Span, ShoalJsonContext.Default.UsageRecordArray)!;

    /// <summary>Acknowledged: the spool's batch buffer is free for the next batch.</summary>
    internal void Release() => _released = true;

    /// <summary>Writes the message's start for batch <paramref name="sequence"/> (its records follow, then <see cref="WriteEnd"/>); returns where the records' array starts.</summary>
    internal static int WriteStart(ArrayBufferWriter<byte> buffer, long sequence)
    {
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, UsageBatch.Discriminator);
            writer.WriteNumber("sequence"u8, sequence);
            writer.WritePropertyName("records"u8);
            writer.Flush();
        }
        var start = buffer.WrittenCount;
        buffer.Write("["u8);
        return start;
    }

    internal static void WriteEnd(ArrayBufferWriter<byte> buffer) => buffer.Write("]}"u8);
}

/// <summary>
/// The edge's usage ledger (issue 16): an append-only spool of JSON lines, shipped in batches.
/// <see cref="Record"/> never blocks the request: it hands the record to a bounded channel, and one
/// writer task appends it to the current segment file (<c>usage-{n}.jsonl</c>) and hands it to the
/// OS (page cache) before it can be shipped, so a killed process (kill -9) loses nothing written; the
/// writer forces the file to disk every <see cref="UsageSpoolOptions.FsyncInterval"/> for power loss.
/// A shipper takes batches (<see cref="TakeBatch"/>), one at a time, and acknowledges them once the
/// control plane stored them; the acknowledged position is kept in the <c>acked</c> file and segments
/// wholly before it are deleted. At start the spool ships what it holds from before (from the acked
/// position on); a torn last line (the process died mid-write) is skipped. When the spool cannot be
/// written (disk full) the records are counted and logged as lost and requests go on.
/// </summary>
public sealed partial class UsageSpool : IUsageLedger, IMetricsSource, IAsyncDisposable
{
    /// <summary>Longest model name kept in a record (longer ones are cut): a record stays far below a batch's size.</summary>
    public const int MaxModelLength = UsageRecord.MaxModelLength;

    // A woken writer lets the thread pool's queue pass up to this many times while fewer than CoalesceRecords wait.
    private const int CoalescePasses = 4;
    private const int CoalesceRecords = 64;
    private const string SegmentPrefix = "usage-";
    private const string SegmentSuffix = ".jsonl";
    private const string AckedFile = "acked";
    private const string LockFile = "spool.lock";

    private readonly UsageSpoolOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Channel<UsageRecord> _channel;
    private readonly FileStream _lock;
    private readonly Task _writer;
    private readonly Lock _gate = new();
    // Under _gate: the segments on disk, where the written data ends, what is acknowledged, the batch in flight.
    private readonly SortedSet<long> _segments = [];
    private SpoolPosition _written;
    private SpoolPosition _acked;
    private SpoolBatch? _inFlight;
    // The first segment this process writes: lines from it on are its own.
    private readonly long _firstWritten;
    // When the acknowledged position was last written to its file (0: not since the start).
    private long _ackedSaved;
    private static readonly TimeSpan s_ackedSaveInterval = TimeSpan.FromSeconds(1);
    // Reused by each read of a batch; the segment read last stays open (a batch costs one read, no open).
    private readonly byte[] _readBuffer = new byte[64 * 1024];
    private SafeFileHandle? _readHandle;
    private long _readSegment = -1;
    private readonly ArrayBufferWriter<byte> _batchBuffer = new(256 * 1024);
    private long _inFlightSince;
    private bool _resendNow;
    private long _sequence;
    // Writer only.
    private FileStream? _stream;
    private long _lastFsync;
    private bool _dirty;
    // The timer that wakes the writer when written records are due to be forced to disk: it queues
    // s_fsyncDue (never written, not a record); _fsyncArmed (writer only) while it is set.
    private static readonly UsageRecord s_fsyncDue = new() { RequestId = "", At = default, Project = "", Cluster = "" };
    private readonly ITimer _fsyncTimer;
    // Wakes the shipper when a batch may be taken again after a partial one (ShipInterval); under _gate, when it was acknowledged.
    private readonly ITimer _shipTimer;
    private long _partialAckedAt;
    private bool _fsyncArmed;

    private long _recorded;
    private long _writtenCount;
    private long _dropped;
    private long _failed;
    private long _acknowledged;
    private long _corrupt;

    /// <summary>Opens (or creates) the spool in <see cref="UsageSpoolOptions.Directory"/> and starts its writer.</summary>
    /// <exception cref="IOException">Another process holds the spool, or it cannot be created.</exception>
    public UsageSpool(UsageSpoolOptions options, ILogger<UsageSpool> logger, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        try
        {
            PrivateFiles.CreateDirectory(options.Directory);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"the usage spool {options.Directory} cannot be created: {e.Message}", e);
        }
        try
        {
            _lock = new FileStream(Path.Combine(options.Directory, LockFile), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"the usage spool {options.Directory} is not writable: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new IOException($"the usage spool {options.Directory} is in use by another edge (give each edge its own --spool-dir): {e.Message}", e);
        }
        _acked = ReadAcked();
        foreach (var file in System.IO.Directory.EnumerateFiles(options.Directory, SegmentPrefix + "*" + SegmentSuffix))
        {
            if (ParseSegment(Path.GetFileName(file)) is { } n) _segments.Add(n);
        }
        // Segments wholly acknowledged before the last stop go now.
        foreach (var n in _segments.Where(n => n < _acked.Segment).ToList()) DeleteSegment(n);
        // Appends always go to a new segment: an old one may end in a torn line.
        var first = (_segments.Count == 0 ? _acked.Segment : Math.Max(_segments.Max, _acked.Segment)) + 1;
        _written = new SpoolPosition(first, 0);
        _firstWritten = first;
        LeftOver = _segments.Count;
        _channel = Channel.CreateBounded<UsageRecord>(new BoundedChannelOptions(options.Capacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.DropWrite,
        });
        _lastFsync = _time.GetTimestamp();
        _fsyncTimer = _time.CreateTimer(static state => ((Channel<UsageRecord>)state!).Writer.TryWrite(s_fsyncDue), _channel, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _shipTimer = _time.CreateTimer(static state => ((UsageSpool)state!).ShipDue(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>
    /// Called when newly written records can be shipped now (on the writer's thread, or the ship timer's
    /// after <see cref="UsageSpoolOptions.ShipInterval"/>): not while a batch is in flight (the shipper
    /// takes the next one when it is acknowledged, or when it is due again), nor before the interval after
    /// a partial batch.
    /// </summary>
    public event Action? Available;

    /// <summary>Segments found from before this start.</summary>
    public int LeftOver { get; }

    /// <summary>The spool's directory.</summary>
    public string Directory => _options.Directory;

    /// <summary>Records handed to <see cref="Record"/>.</summary>
    public long Recorded => Interlocked.Read(ref _recorded);
    /// <summary>Records written to the spool file.</summary>
    public long Written => Interlocked.Read(ref _writtenCount);
    /// <summary>Records dropped because the writer was too far behind (<see cref="UsageSpoolOptions.Capacity"/>).</summary>
    public long Dropped => Interlocked.Read(ref _dropped);
    /// <summary>Records lost because the spool could not be written (disk full, too many segments).</summary>
    public long Failed => Interlocked.Read(ref _failed);
    /// <summary>Records the control plane acknowledged.</summary>
    public long Acknowledged => Interlocked.Read(ref _acknowledged);
    /// <summary>Lines skipped on reading because they were not a record (a torn last line after a crash).</summary>
    public long Corrupt => Interlocked.Read(ref _corrupt);

    /// <summary>Acknowledged position.</summary>
    public SpoolPosition AckedPosition
    {
        get
        {
            lock (_gate) return _acked;
        }
    }

    /// <summary>Segment files on disk now.</summary>
    public int Segments
    {
        get
        {
            lock (_gate) return _segments.Count;
        }
    }

    /// <summary>Queues the record for the spool; never blocks (dropped and counted when the writer is too far behind).</summary>
    public void Record(UsageRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        Interlocked.Increment(ref _recorded);
        if (record.Model is { Length: > MaxModelLength } model) record = record with { Model = model[..MaxModelLength] };
        if (_channel.Writer.TryWrite(record)) return;
        var dropped = Interlocked.Increment(ref _dropped);
        // Every power of two: a flood is visible without a line per record.
        if ((dropped & (dropped - 1)) == 0) LogDropped(_logger, dropped, _options.Capacity);
    }

    // ------------------------------------------------------------------ writing

    private async Task WriteLoopAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        using var json = new Utf8JsonWriter(buffer);
        var reader = _channel.Reader;
        while (true)
        {
            if (!reader.TryPeek(out _))
            {
                // Nothing waiting: what was written is forced to disk when its interval is up (the
                // timer wakes this loop then), with no timer or task made per wake-up.
                if (_dirty && !_fsyncArmed)
                {
                    var remaining = _options.FsyncInterval - _time.GetElapsedTime(_lastFsync);
                    if (remaining <= TimeSpan.Zero)
                    {
                        Fsync();
                    }
                    else
                    {
                        _fsyncArmed = true;
                        _fsyncTimer.Change(remaining, Timeout.InfiniteTimeSpan);
                    }
                }
                if (!await reader.WaitToReadAsync()) break;
                // Woken by one record: the requests finishing with it join it in one write (each write
                // costs the kernel about as much as a dozen records) if this waits its turn behind the
                // work queued now, a few times while few have come. No timer: on an idle edge that is
                // at once, under load a few passes of the queue (well under a millisecond).
                for (var pass = 0; pass < CoalescePasses && reader.Count < CoalesceRecords; pass++) await Task.Yield();
            }

            buffer.ResetWrittenCount();
            json.Reset(buffer);
            var count = 0;
            // Up to a segment's worth per write, so segments keep to their size (the file's end is where it was written to).
            var room = Math.Max(1, _options.MaxSegmentBytes - (_stream?.Position ?? 0));
            while (count < 1000 && buffer.WrittenCount < room && reader.TryRead(out var record))
            {
                if (ReferenceEquals(record, s_fsyncDue))
                {
                    _fsyncArmed = false;
                    continue;
                }
                JsonSerializer.Serialize(json, record, ShoalJsonContext.Default.UsageRecord);
                json.Flush();
                json.Reset();
                buffer.Write("\n"u8);
                count++;
            }
            if (count > 0 && Append(buffer.WrittenSpan, count)) Available?.Invoke();
            if (_dirty && _time.GetElapsedTime(_lastFsync) >= _options.FsyncInterval) Fsync();
        }
        Fsync();
        _stream?.Dispose();
        _stream = null;
    }

    /// <summary>
    /// Appends whole lines to the current segment and hands them to the OS; true when a shipper waits
    /// for them (no batch in flight, or the one in flight is to go again), false when none waits or the
    /// write failed (counted, logged).
    /// </summary>
    private bool Append(ReadOnlySpan<byte> lines, int count)
    {
        try
        {
            if (_stream is null || _stream.Position >= _options.MaxSegmentBytes) OpenNextSegment();
            _stream!.Write(lines);
            // To the OS now (a killed process keeps it); to the disk on the fsync timer.
            _stream.Flush(flushToDisk: false);
            _dirty = true;
            bool waiting;
            lock (_gate)
            {
                _written = new SpoolPosition(_written.Segment, _stream.Position);
                // While a batch is in flight its acknowledgement is the shipper's cue, and after a partial one
                // the ship timer (a wake-up per write would find nothing to take).
                waiting = _resendNow || (_inFlight is null && !ShipDelayedLocked());
            }
            Interlocked.Add(ref _writtenCount, count);
            return waiting;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Interlocked.Add(ref _failed, count);
            LogWriteFailed(_logger, count, _options.Directory, e.Message);
            // What is in the file may end mid-line: the next records go to a new segment.
            CloseSegment();
            return false;
        }
    }

    private void OpenNextSegment()
    {
        long next;
        lock (_gate)
        {
            if (_stream is null && !_segments.Contains(_written.Segment)) next = _written.Segment;
            else next = _written.Segment + 1;
            if (_segments.Count >= _options.MaxSegments) throw new IOException($"the spool holds {_segments.Count} segments, its most (the control plane has not taken them)");
        }
        if (_stream is not null)
        {
            Fsync();
            _stream.Dispose();
            _stream = null;
        }
        var stream = new FileStream(SegmentPath(next), FileMode.CreateNew, FileAccess.Write, FileShare.Read | FileShare.Delete, bufferSize: 0);
        lock (_gate)
        {
            _segments.Add(next);
            _written = new SpoolPosition(next, 0);
        }
        _stream = stream;
    }

    private void CloseSegment()
    {
        try
        {
            _stream?.Dispose();
        }
        catch (IOException)
        {
            // Already failing; the segment is left as it is (its torn end is skipped on reading).
        }
        _stream = null;
        lock (_gate) _written = new SpoolPosition(_written.Segment + 1, 0);
    }

    private void Fsync()
    {
        if (!_dirty || _stream is null) return;
        try
        {
            _stream.Flush(flushToDisk: true);
        }
        catch (IOException e)
        {
            LogFsyncFailed(_logger, _options.Directory, e.Message);
        }
        _dirty = false;
        // A tick the timer could not queue (the channel was full) must not keep it from being set again.
        _fsyncArmed = false;
        _lastFsync = _time.GetTimestamp();
    }

    // ------------------------------------------------------------------ shipping

    /// <summary>
    /// The next batch to ship: the one in flight again when it is due for resending (after
    /// <see cref="ResendInFlight"/> or <see cref="UsageSpoolOptions.AckTimeout"/>), else new records
    /// after the acknowledged position; null when there is nothing to send now.
    /// </summary>
    public SpoolBatch? TakeBatch()
    {
        lock (_gate)
        {
            if (_inFlight is { } pending)
            {
                if (!_resendNow && _time.GetElapsedTime(_inFlightSince) < _options.AckTimeout) return null;
                _resendNow = false;
                _inFlightSince = _time.GetTimestamp();
                return pending;
            }
            while (true)
            {
                if (ShipDelayedLocked()) return null;
                var (message, recordsStart, count, end, full) = ReadLocked(_acked, _sequence + 1);
                if (count > 0)
                {
                    _inFlight = new SpoolBatch(++_sequence, message, recordsStart, count, end, full);
                    _inFlightSince = _time.GetTimestamp();
                    _resendNow = false;
                    return _inFlight;
                }
                if (end == _acked) return null;
                // Only torn or finished segments were passed: nothing to ship from them.
                AdvanceLocked(end);
            }
        }
    }

    /// <summary>The control plane stored batch <paramref name="sequence"/>: its records leave the spool. False when it is not the batch in flight.</summary>
    public bool Acknowledge(long sequence)
    {
        lock (_gate)
        {
            if (_inFlight is not { } pending || pending.Sequence != sequence) return false;
            _inFlight = null;
            pending.Release();
            Interlocked.Add(ref _acknowledged, pending.Count);
            AdvanceLocked(pending.End);
            if (!pending.Full && _options.ShipInterval > TimeSpan.Zero)
            {
                // It took all there was: the next batch waits for more (the timer wakes the shipper then).
                _partialAckedAt = _time.GetTimestamp();
                _shipTimer.Change(_options.ShipInterval, Timeout.InfiniteTimeSpan);
            }
            return true;
        }
    }

    /// <summary>The link was lost (or is new): the batch in flight, if any, goes again on the next <see cref="TakeBatch"/>.</summary>
    public void ResendInFlight()
    {
        lock (_gate) _resendNow = true;
    }

    /// <summary>When the batch in flight is due for resending by timeout; null when none is in flight.</summary>
    public TimeSpan? ResendDueIn
    {
        get
        {
            lock (_gate)
            {
                return _inFlight is null ? null : _options.AckTimeout - _time.GetElapsedTime(_inFlightSince);
            }
        }
    }

    /// <summary>True while the batch after a partial one is not due yet (<see cref="UsageSpoolOptions.ShipInterval"/>).</summary>
    private bool ShipDelayedLocked() => _partialAckedAt != 0 && _time.GetElapsedTime(_partialAckedAt) < _options.ShipInterval;

    /// <summary>The ship timer: a batch may be taken again; the shipper is woken when records wait.</summary>
    private void ShipDue()
    {
        bool waiting;
        lock (_gate)
        {
            _partialAckedAt = 0;
            waiting = _inFlight is null && _written > _acked;
        }
        if (waiting) Available?.Invoke();
    }

    private void AdvanceLocked(SpoolPosition to)
    {
        _acked = to;
        if (_segments.Count > 0 && _segments.Min < to.Segment)
        {
            foreach (var n in _segments.Where(n => n < to.Segment).ToList()) DeleteSegment(n);
        }
        // The acknowledged position goes to disk at most once a second (writing and renaming a file per
        // batch cost more than the batch): a killed edge may ship up to that much again after its
        // restart, and the control plane stores each row once by its request id.
        if (_ackedSaved != 0 && _time.GetElapsedTime(_ackedSaved) < s_ackedSaveInterval) return;
        SaveAckedLocked();
    }

    private void SaveAckedLocked()
    {
        var to = _acked;
        _ackedSaved = _time.GetTimestamp();
        try
        {
            var temp = Path.Combine(_options.Directory, AckedFile + ".tmp");
            File.WriteAllText(temp, string.Create(CultureInfo.InvariantCulture, $"{to.Segment} {to.Offset}\n"));
            File.Move(temp, Path.Combine(_options.Directory, AckedFile), overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Not kept: after a restart these records are sent again, and the control plane stores them once.
            LogAckedNotKept(_logger, _options.Directory, e.Message);
        }
    }

    /// <summary>
    /// Reads records from <paramref name="from"/> on, within the batch limits, into the message of
    /// batch <paramref name="sequence"/>; returns it, where its records' array starts, how many it
    /// holds, where reading stopped, and whether it stopped at a batch limit (more records were waiting).
    /// </summary>
    private (ReadOnlyMemory<byte> Message, int RecordsStart, int Count, SpoolPosition End, bool Full) ReadLocked(SpoolPosition from, long sequence)
    {
        var records = 0;
        var json = _batchBuffer;
        json.ResetWrittenCount();
        var recordsStart = SpoolBatch.WriteStart(json, sequence);
        var position = from;
        var bytes = 0;
        var full = false;
        var buffer = _readBuffer;
        while (!full)
        {
            if (!_segments.Contains(position.Segment))
            {
                // A segment that is gone (or never was): on to the next one.
                var next = NextSegmentLocked(position.Segment);
                if (next < 0) break;
                position = new SpoolPosition(next, 0);
                continue;
            }
            var current = position.Segment == _written.Segment;
            var file = ReadHandleLocked(position.Segment);
            if (file is null)
            {
                _segments.Remove(position.Segment);
                continue;
            }
            // The segment being written is read up to what the writer finished; older ones whole.
            var limit = current ? _written.Offset : RandomAccess.GetLength(file);
            while (!full && position.Offset < limit)
            {
                var want = (int)Math.Min(buffer.Length, limit - position.Offset);
                var read = ReadAt(file, buffer.AsSpan(0, want), position.Offset);
                if (read == 0) break;
                var span = buffer.AsSpan(0, read);
                var consumed = 0;
                while (true)
                {
                    if (records >= _options.MaxBatchRecords)
                    {
                        full = true;
                        break;
                    }
                    var newline = span[consumed..].IndexOf((byte)'\n');
                    if (newline < 0) break;
                    if (records > 0 && bytes + newline + 1 > _options.MaxBatchBytes)
                    {
                        full = true;
                        break;
                    }
                    var line = span.Slice(consumed, newline);
                    consumed += newline + 1;
                    bytes += newline + 1;
                    // A whole line this process wrote is a record it serialized (a failed write leaves
                    // its torn end without a newline, and the next records go to a new segment); lines
                    // from before this start are checked.
                    if (position.Segment >= _firstWritten || UsageSpoolLine.IsRecord(line))
                    {
                        if (records++ > 0) json.Write(","u8);
                        json.Write(line);
                    }
                    else
                    {
                        Interlocked.Increment(ref _corrupt);
                    }
                }
                if (consumed == 0 && !full)
                {
                    Interlocked.Increment(ref _corrupt);
                    if (read == buffer.Length)
                    {
                        // A line longer than any record: not one of ours; skip the block.
                        position = new SpoolPosition(position.Segment, position.Offset + read);
                        continue;
                    }
                    // A last line without its end: the process died writing it.
                    if (!current) position = new SpoolPosition(position.Segment, limit);
                    break;
                }
                position = new SpoolPosition(position.Segment, position.Offset + consumed);
            }
            if (full || current || position.Offset < limit) break;
            var following = NextSegmentLocked(position.Segment);
            if (following < 0) break;
            position = new SpoolPosition(following, 0);
        }
        SpoolBatch.WriteEnd(json);
        // In the reused buffer (no copy, no large-object allocation for a batch of hundreds of rows): the batch in flight holds it until acknowledged.
        return (records == 0 ? ReadOnlyMemory<byte>.Empty : json.WrittenMemory, recordsStart, records, position, full);
    }

    /// <summary>The first segment on disk after <paramref name="segment"/>, else the one being written; -1 when none.</summary>
    private long NextSegmentLocked(long segment)
    {
        foreach (var n in _segments.GetViewBetween(segment + 1, long.MaxValue))
        {
            return n <= _written.Segment ? n : -1;
        }
        // Past the last segment on disk: the one to be written next (so the finished ones can go once acknowledged).
        return segment < _written.Segment ? _written.Segment : -1;
    }

    /// <summary>The segment <paramref name="segment"/> open for reading (kept open for the next batch); null when its file is gone.</summary>
    private SafeFileHandle? ReadHandleLocked(long segment)
    {
        if (_readSegment == segment && _readHandle is { } open) return open;
        CloseReadHandleLocked();
        try
        {
            _readHandle = File.OpenHandle(SegmentPath(segment), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            _readSegment = segment;
            return _readHandle;
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    private void CloseReadHandleLocked()
    {
        _readHandle?.Dispose();
        _readHandle = null;
        _readSegment = -1;
    }

    /// <summary>Reads from <paramref name="offset"/> until <paramref name="buffer"/> is full or the file ends; the bytes read.</summary>
    private static int ReadAt(SafeFileHandle file, Span<byte> buffer, long offset)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var read = RandomAccess.Read(file, buffer[total..], offset + total);
            if (read == 0) break;
            total += read;
        }
        return total;
    }

    private void DeleteSegment(long n)
    {
        if (n == _readSegment) CloseReadHandleLocked();
        try
        {
            File.Delete(SegmentPath(n));
            _segments.Remove(n);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogDeleteFailed(_logger, SegmentPath(n), e.Message);
        }
    }

    private SpoolPosition ReadAcked()
    {
        var path = Path.Combine(_options.Directory, AckedFile);
        try
        {
            var parts = File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && long.TryParse(parts[0], CultureInfo.InvariantCulture, out var s) && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var o) && s >= 0 && o >= 0)
            {
                return new SpoolPosition(s, o);
            }
            LogAckedUnreadable(_logger, path);
        }
        catch (FileNotFoundException)
        {
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogAckedUnreadable(_logger, path);
        }
        // From the start: whatever was shipped already is stored once anyway.
        return default;
    }

    private string SegmentPath(long n) => Path.Combine(_options.Directory, string.Create(CultureInfo.InvariantCulture, $"{SegmentPrefix}{n:D12}{SegmentSuffix}"));

    private static long? ParseSegment(string name) =>
        name.StartsWith(SegmentPrefix, StringComparison.Ordinal) && name.EndsWith(SegmentSuffix, StringComparison.Ordinal)
        && long.TryParse(name.AsSpan(SegmentPrefix.Length, name.Length - SegmentPrefix.Length - SegmentSuffix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var n)
            ? n : null;

    public void Render(StringBuilder sb)
    {
        sb.Append("# HELP shoal_edge_usage_records_total Usage records by outcome: written to the spool, acknowledged by the control plane, dropped (writer behind), failed (spool not writable).\n");
        sb.Append("# TYPE shoal_edge_usage_records_total counter\n");
        sb.Append(CultureInfo.InvariantCulture, $"shoal_edge_usage_records_total{{outcome=\"written\"}} {Written}\n");
        sb.Append(CultureInfo.InvariantCulture, $"shoal_edge_usage_records_total{{outcome=\"acknowledged\"}} {Acknowledged}\n");
        sb.Append(CultureInfo.InvariantCulture, $"shoal_edge_usage_records_total{{outcome=\"dropped\"}} {Dropped}\n");
        sb.Append(CultureInfo.InvariantCulture, $"shoal_edge_usage_records_total{{outcome=\"failed\"}} {Failed}\n");
        sb.Append("# HELP shoal_edge_usage_spool_segments Segment files in the usage spool.\n");
        sb.Append("# TYPE shoal_edge_usage_spool_segments gauge\n");
        sb.Append(CultureInfo.InvariantCulture, $"shoal_edge_usage_spool_segments {Segments}\n");
    }

    /// <summary>Writes what is queued, forces it to disk and closes the spool.</summary>
    public async ValueTask DisposeAsync()
    {
        // No more wake-ups for the shipper: the spool is closing.
        await _shipTimer.DisposeAsync();
        _channel.Writer.TryComplete();
        await _writer;
        lock (_gate)
        {
            if (_ackedSaved != 0) SaveAckedLocked();
            CloseReadHandleLocked();
        }
        await _fsyncTimer.DisposeAsync();
        await _lock.DisposeAsync();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage spool: {Count} records dropped so far, the writer is {Capacity} records behind")]
    private static partial void LogDropped(ILogger logger, long count, int capacity);

    [LoggerMessage(Level = LogLevel.Error, Message = "Usage spool: {Count} records could not be written to {Directory} and are lost ({Error})")]
    private static partial void LogWriteFailed(ILogger logger, int count, string directory, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage spool: forcing {Directory} to disk failed ({Error})")]
    private static partial void LogFsyncFailed(ILogger logger, string directory, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage spool: the acknowledged position in {Directory} was not kept ({Error}); after a restart those records are sent again (stored once)")]
    private static partial void LogAckedNotKept(ILogger logger, string directory, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage spool: the acknowledged position {Path} cannot be read; shipping from the first segment (records stored already are stored once)")]
    private static partial void LogAckedUnreadable(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage spool: shipped segment {Path} could not be deleted ({Error})")]
    private static partial void LogDeleteFailed(ILogger logger, string path, string error);
}
