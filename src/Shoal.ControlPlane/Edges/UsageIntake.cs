using Shoal.Contracts;
using Shoal.Store;

namespace Shoal.ControlPlane.Edges;

/// <summary>What became of a usage batch: stored (acknowledge it) or refused whole (do not).</summary>
public readonly record struct UsageIntakeResult(bool Stored, int Records, int Skipped, string? Refusal = null);

/// <summary>
/// Takes usage batches from edges into the store (issue 16): checks each record, stores the valid
/// ones idempotently by request id, and says whether the batch may be acknowledged (only after the
/// store committed). A batch with too many records is refused whole; a record with invalid fields is
/// skipped with a log line (it would never become valid, so the batch is still acknowledged).
/// </summary>
public sealed partial class UsageIntake(IShoalStore store, ILogger<UsageIntake> logger)
{
    /// <summary>Most records in one batch.</summary>
    public const int MaxRecords = 500;

    private static readonly DateTimeOffset s_earliest = new(2020, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private long _stored;
    private long _skipped;

    /// <summary>Records stored (or found stored already) since start.</summary>
    public long Stored => Interlocked.Read(ref _stored);

    /// <summary>Records skipped as invalid since start.</summary>
    public long Skipped => Interlocked.Read(ref _skipped);

    /// <summary>Checks and stores batch <paramref name="sequence"/>'s <paramref name="records"/> from <paramref name="edge"/>; throws when the store fails (nothing acknowledged then).</summary>
    public async Task<UsageIntakeResult> StoreAsync(string edge, long sequence, UsageRecord[]? records, CancellationToken ct)
    {
        records ??= [];
        if (records.Length > MaxRecords)
        {
            var refusal = $"a usage batch holds at most {MaxRecords} records, this one {records.Length}";
            LogRefused(logger, edge, sequence, refusal);
            return new UsageIntakeResult(false, records.Length, 0, refusal);
        }
        var valid = new List<UsageRecord>(records.Length);
        foreach (var record in records)
        {
            if (Invalid(record) is { } why)
            {
                Interlocked.Increment(ref _skipped);
                LogSkipped(logger, edge, sequence, why);
                continue;
            }
            valid.Add(record);
        }
        await store.AppendUsageAsync(valid, ct);
        Interlocked.Add(ref _stored, valid.Count);
        return new UsageIntakeResult(true, records.Length, records.Length - valid.Count);
    }

    /// <summary>Why the record cannot be stored; null when it can.</summary>
    public static string? Invalid(UsageRecord? r)
    {
        if (r is null) return "a record is null";
        if (string.IsNullOrWhiteSpace(r.RequestId) || r.RequestId.Length > 128) return "a record's request id is empty or longer than 128 characters";
        if (string.IsNullOrWhiteSpace(r.Project) || r.Project.Length > 256 || string.IsNullOrWhiteSpace(r.Cluster) || r.Cluster.Length > 256)
        {
            return $"record {r.RequestId}: project and cluster must be given and at most 256 characters";
        }
        if ((r.Model?.Length ?? 0) > UsageRecord.MaxModelLength || (r.KeyId?.Length ?? 0) > 256 || (r.ReplicaId?.Length ?? 0) > 256
            || (r.NodeId?.Length ?? 0) > 256 || (r.Edge?.Length ?? 0) > 2048)
        {
            return $"record {r.RequestId}: a name is too long";
        }
        if (r.PromptTokens < 0 || r.CompletionTokens < 0 || r.Attempts < 0 || r.Attempts > 100 || r.Status is < 0 or > 999)
        {
            return $"record {r.RequestId}: tokens, attempts or status out of range";
        }
        if (!double.IsFinite(r.DurationMs) || r.DurationMs < 0 || r.DurationMs > 86_400_000
            || r.TimeToFirstTokenMs is { } t && (!double.IsFinite(t) || t < 0 || t > 86_400_000))
        {
            return $"record {r.RequestId}: durations must be between 0 and a day";
        }
        if (r.CostUsd < 0 || r.CostUsd > 1_000_000_000m) return $"record {r.RequestId}: cost out of range";
        if (r.At < s_earliest || r.At > DateTimeOffset.UtcNow.AddDays(1)) return $"record {r.RequestId}: time {r.At:O} is out of range";
        return null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage batch {Sequence} from edge {Edge} refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, string edge, long sequence, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Usage batch {Sequence} from edge {Edge}: a record was skipped ({Reason})")]
    private static partial void LogSkipped(ILogger logger, string edge, long sequence, string reason);
}
