using System.Data;
using System.Data.Common;
using System.Globalization;
using Shoal.Contracts;

namespace Shoal.Store;

// The usage ledger and replica runs (issue 16): stored once per request id / per replica run.
public abstract partial class SqlShoalStore
{
    /// <summary>Most rows one <see cref="ListUsageAsync"/> returns.</summary>
    public const int MaxListedUsage = 100_000;

    private static readonly Column[] s_usageColumns =
    [
        new("request_id", DbType.String), new("at", DbType.Int64), new("key_id", DbType.String), new("project", DbType.String),
        new("cluster", DbType.String), new("model", DbType.String), new("replica_id", DbType.String), new("node_id", DbType.String),
        new("prompt_tokens", DbType.Int64), new("completion_tokens", DbType.Int64), new("ttft_us", DbType.Int64), new("duration_us", DbType.Int64),
        new("status", DbType.Int32), new("attempts", DbType.Int32), new("streamed", DbType.Boolean), new("cut", DbType.Boolean),
        new("cost_nanos", DbType.Int64), new("edge", DbType.String), new("stored_at", DbType.Int64),
    ];

    private static readonly Column[] s_runColumns =
    [
        new("replica_id", DbType.String), new("started_at", DbType.Int64), new("ended_at", DbType.Int64), new("cluster_id", DbType.String),
        new("cluster", DbType.String), new("project", DbType.String), new("node_id", DbType.String), new("gpus", DbType.Int32),
    ];

    // Shipping a record twice (a batch resent after a lost ack, an edge restarted before its ack) stores it once.
    private static readonly string s_insertUsage = Rows.Insert("usage_records", s_usageColumns) + " ON CONFLICT (request_id) DO NOTHING";

    // A run written again keeps the end it was first given.
    private static readonly string s_upsertRun = Rows.Insert("replica_runs", s_runColumns) +
        " ON CONFLICT (replica_id, started_at) DO UPDATE SET ended_at = COALESCE(replica_runs.ended_at, excluded.ended_at)";

    private static readonly string s_usageSelect = $"SELECT {string.Join(", ", s_usageColumns.Select(c => c.Name))} FROM usage_records";
    private static readonly string s_runSelect = $"SELECT {string.Join(", ", s_runColumns.Select(c => c.Name))} FROM replica_runs";

    /// <summary>Nano-dollars in a US dollar: costs are stored as exact integers.</summary>
    private const decimal NanosPerUsd = 1_000_000_000m;

    /// <summary>Stores usage records, once per request id: a record whose id is stored already is skipped.</summary>
    public async Task AppendUsageAsync(IReadOnlyCollection<UsageRecord> records, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(records);
        if (records.Count == 0) return;
        var storedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var rows = records.Select(r => UsageValues(r, storedAt)).ToList();
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var transaction = await BeginWriteAsync(connection, cancellationToken);
        await ExecuteManyAsync(connection, transaction, s_insertUsage, s_usageColumns, rows, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Usage records that arrived in [<paramref name="since"/>, <paramref name="until"/>), oldest first, at most <see cref="MaxListedUsage"/>.</summary>
    public async Task<IReadOnlyList<UsageRecord>> ListUsageAsync(DateTimeOffset since, DateTimeOffset until, string? project = null, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, null,
            s_usageSelect + " WHERE at >= @since AND at < @until" + (project is null ? "" : " AND project = @project") +
            $" ORDER BY at, request_id LIMIT {MaxListedUsage}");
        AddParameter(command, "since", DbType.Int64, since.ToUnixTimeMilliseconds());
        AddParameter(command, "until", DbType.Int64, until.ToUnixTimeMilliseconds());
        if (project is not null) AddParameter(command, "project", DbType.String, project);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var result = new List<UsageRecord>();
        while (await reader.ReadAsync(cancellationToken)) result.Add(ReadUsage(reader));
        return result;
    }

    /// <summary>Replica runs that overlap [<paramref name="since"/>, <paramref name="until"/>).</summary>
    public async Task<IReadOnlyList<ReplicaRunRecord>> ListReplicaRunsAsync(DateTimeOffset since, DateTimeOffset until, string? project = null, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, null,
            s_runSelect + " WHERE started_at < @until AND (ended_at IS NULL OR ended_at > @since)" + (project is null ? "" : " AND project = @project") +
            " ORDER BY started_at, replica_id");
        AddParameter(command, "since", DbType.Int64, since.ToUnixTimeMilliseconds());
        AddParameter(command, "until", DbType.Int64, until.ToUnixTimeMilliseconds());
        if (project is not null) AddParameter(command, "project", DbType.String, project);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var result = new List<ReplicaRunRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            result.Add(new ReplicaRunRecord
            {
                ReplicaId = reader.GetString(0),
                StartedAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)),
                EndedAt = reader.IsDBNull(2) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)),
                ClusterId = reader.GetString(3),
                Cluster = reader.GetString(4),
                Project = reader.GetString(5),
                NodeId = reader.GetString(6),
                Gpus = reader.GetInt32(7),
            });
        }
        return result;
    }

    /// <summary>
    /// Usage in the query's period grouped by node, cluster, key or project: requests, tokens, cost and
    /// errors from the ledger; GPU-seconds from replica runs (nodes, clusters, projects). Sorted by group.
    /// </summary>
    public async Task<IReadOnlyList<UsageRowDto>> QueryUsageAsync(UsageQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        var column = query.By switch
        {
            UsageGroupings.Node => "node_id",
            UsageGroupings.Cluster => "cluster",
            UsageGroupings.Key => "key_id",
            UsageGroupings.Project => "project",
            _ => throw new ArgumentException($"usage is grouped by {UsageGroupings.Node}, {UsageGroupings.Cluster}, {UsageGroupings.Key} or {UsageGroupings.Project}", nameof(query)),
        };
        var rows = new SortedDictionary<string, UsageRowDto>(StringComparer.Ordinal);
        await using (var connection = await OpenConnectionAsync(cancellationToken))
        await using (var command = Command(connection, null,
            $"SELECT COALESCE({column}, '-'), COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_nanos), " +
            "SUM(CASE WHEN status >= 400 OR cut THEN 1 ELSE 0 END) FROM usage_records WHERE at >= @since AND at < @until" +
            (query.Project is null ? "" : " AND project = @project") + $" GROUP BY COALESCE({column}, '-')"))
        {
            AddParameter(command, "since", DbType.Int64, query.Since.ToUnixTimeMilliseconds());
            AddParameter(command, "until", DbType.Int64, query.Until.ToUnixTimeMilliseconds());
            if (query.Project is not null) AddParameter(command, "project", DbType.String, query.Project);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var group = reader.GetString(0);
                rows[group] = new UsageRowDto
                {
                    Group = group,
                    Requests = Long(reader, 1),
                    PromptTokens = Long(reader, 2),
                    CompletionTokens = Long(reader, 3),
                    CostUsd = Convert.ToDecimal(reader.GetValue(4), CultureInfo.InvariantCulture) / NanosPerUsd,
                    Errors = Long(reader, 5),
                };
            }
        }

        if (query.By != UsageGroupings.Key)
        {
            var runs = await ListReplicaRunsAsync(query.Since, query.Until, query.Project, cancellationToken);
            foreach (var run in runs)
            {
                var group = query.By switch
                {
                    UsageGroupings.Node => run.NodeId,
                    UsageGroupings.Cluster => run.Cluster,
                    _ => run.Project,
                };
                var seconds = run.GpuSecondsWithin(query.Since, query.Until);
                if (seconds <= 0) continue;
                rows[group] = rows.TryGetValue(group, out var row)
                    ? row with { GpuSeconds = row.GpuSeconds + seconds }
                    : new UsageRowDto { Group = group, GpuSeconds = seconds };
            }
        }
        return [.. rows.Values];

        static long Long(DbDataReader r, int i) => r.IsDBNull(i) ? 0 : Convert.ToInt64(r.GetValue(i), CultureInfo.InvariantCulture);
    }

    /// <summary>Writes the commit's replica runs (inside its transaction).</summary>
    private async Task WriteReplicaRunsAsync(DbConnection connection, DbTransaction transaction, StoreChanges changes, CancellationToken cancellationToken)
    {
        if (changes.ReplicaRuns.Count == 0) return;
        await ExecuteManyAsync(connection, transaction, s_upsertRun, s_runColumns,
            changes.ReplicaRuns.Select(r => new object?[]
            {
                r.ReplicaId, r.StartedAt.ToUnixTimeMilliseconds(), Rows.Ms(r.EndedAt), r.ClusterId, r.Cluster, r.Project, r.NodeId, r.Gpus,
            }).ToList(), cancellationToken);
    }

    /// <summary>Cost in nano-dollars, exact to the nano-dollar (rounded half away from zero below that).</summary>
    public static long ToNanos(decimal usd) => (long)Math.Round(usd * NanosPerUsd, MidpointRounding.AwayFromZero);

    private static object?[] UsageValues(UsageRecord r, long storedAt) =>
    [
        r.RequestId, r.At.ToUnixTimeMilliseconds(), r.KeyId, r.Project, r.Cluster, r.Model, r.ReplicaId, r.NodeId,
        r.PromptTokens, r.CompletionTokens, r.TimeToFirstTokenMs is { } t ? (object)Micros(t) : null, Micros(r.DurationMs),
        r.Status, r.Attempts, r.Streamed, r.Cut, ToNanos(r.CostUsd), r.Edge, storedAt,
    ];

    private static long Micros(double ms) => double.IsFinite(ms) ? (long)Math.Round(ms * 1000) : 0;

    private static UsageRecord ReadUsage(DbDataReader r) => new()
    {
        RequestId = r.GetString(0),
        At = DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(1)),
        KeyId = r.IsDBNull(2) ? null : r.GetString(2),
        Project = r.GetString(3),
        Cluster = r.GetString(4),
        Model = r.IsDBNull(5) ? null : r.GetString(5),
        ReplicaId = r.IsDBNull(6) ? null : r.GetString(6),
        NodeId = r.IsDBNull(7) ? null : r.GetString(7),
        PromptTokens = r.GetInt64(8),
        CompletionTokens = r.GetInt64(9),
        TimeToFirstTokenMs = r.IsDBNull(10) ? null : r.GetInt64(10) / 1000.0,
        DurationMs = r.GetInt64(11) / 1000.0,
        Status = r.GetInt32(12),
        Attempts = r.GetInt32(13),
        Streamed = r.GetBoolean(14),
        Cut = r.GetBoolean(15),
        CostUsd = r.GetInt64(16) / NanosPerUsd,
        Edge = r.IsDBNull(17) ? null : r.GetString(17),
    };
}
