using System.Data;
using System.Data.Common;
using System.Text.Json;
using Shoal.Contracts;
using Shoal.Core;
using Shoal.Core.Clusters;
using Shoal.Core.Security;

namespace Shoal.Store;

/// <summary>A column and the parameter type its values are sent with.</summary>
internal readonly record struct Column(string Name, DbType Type);

/// <summary>
/// How each record maps to its table: the column list (in the order used by SELECT and by the
/// parameters of INSERT) and the conversions both ways. Times are Unix milliseconds.
/// </summary>
internal static class Rows
{
    public static readonly Column[] ClusterColumns =
    [
        new("id", DbType.String), new("project", DbType.String), new("name", DbType.String),
        new("spec", DbType.String), new("generation", DbType.Int64), new("created_at", DbType.Int64),
        new("updated_at", DbType.Int64), new("image_digest", DbType.String), new("rollout", DbType.String),
    ];

    public static readonly Column[] ReplicaColumns =
    [
        new("id", DbType.String), new("cluster_id", DbType.String), new("generation", DbType.Int64),
        new("node_id", DbType.String), new("gpu_indexes", DbType.String), new("state", DbType.String),
        new("reason", DbType.String), new("healthy", DbType.Boolean), new("restarts", DbType.Int32),
        new("exit_code", DbType.Int32), new("host_port", DbType.Int32), new("created_at", DbType.Int64),
        new("assigned_at", DbType.Int64), new("pulled_at", DbType.Int64), new("started_at", DbType.Int64),
        new("ready_at", DbType.Int64), new("updated_at", DbType.Int64), new("image_digest", DbType.String),
        new("draining_since", DbType.Int64), new("drain_reason", DbType.String), new("recent_restarts", DbType.String),
        new("last_failure", DbType.String),
    ];

    public static readonly Column[] NodeColumns =
    [
        new("id", DbType.String), new("name", DbType.String), new("secret_hash", DbType.String),
        new("hardware", DbType.String), new("runtimes", DbType.String), new("images", DbType.String),
        new("address", DbType.String), new("state", DbType.String), new("cordoned", DbType.Boolean),
        new("revision", DbType.Int64), new("acked_revision", DbType.Int64), new("disconnects", DbType.Int32),
        new("registered_at", DbType.Int64), new("last_seen_at", DbType.Int64), new("draining", DbType.Boolean),
        new("approved", DbType.Boolean), new("labels", DbType.String), new("max_gpus", DbType.Int32), new("direct_allowed", DbType.Boolean),
        new("tunnel", DbType.Boolean), new("recent_disconnects", DbType.String),
    ];

    public static readonly Column[] TokenColumns =
    [
        new("id", DbType.String), new("hash", DbType.String), new("description", DbType.String),
        new("max_uses", DbType.Int32), new("uses", DbType.Int32), new("created_at", DbType.Int64),
        new("expires_at", DbType.Int64), new("revoked_at", DbType.Int64),
        new("manual_approval", DbType.Boolean), new("max_gpus", DbType.Int32), new("labels", DbType.String), new("allow_direct", DbType.Boolean),
    ];

    public static readonly Column[] EventColumns =
    [
        new("seq", DbType.Int64), new("cluster_id", DbType.String), new("at", DbType.Int64),
        new("type", DbType.String), new("replica_id", DbType.String), new("node_id", DbType.String),
        new("node_name", DbType.String), new("message", DbType.String), new("actor", DbType.String),
    ];

    public static readonly Column[] ProjectColumns =
    [
        new("name", DbType.String), new("description", DbType.String), new("created_at", DbType.Int64),
        new("gateway_limits", DbType.String), new("budget", DbType.String),
    ];

    public static readonly Column[] ApiKeyColumns =
    [
        new("id", DbType.String), new("hash", DbType.String), new("prefix", DbType.String), new("name", DbType.String),
        new("role", DbType.String), new("project", DbType.String), new("rate_limit", DbType.Int32),
        new("created_at", DbType.Int64), new("expires_at", DbType.Int64), new("revoked_at", DbType.Int64),
        new("created_by", DbType.String), new("gateway_limits", DbType.String), new("budget", DbType.String),
    ];

    public static readonly Column[] IdColumn = [new("id", DbType.String)];

    public static string Select(string table, Column[] columns, string orderBy) =>
        $"SELECT {string.Join(", ", columns.Select(c => c.Name))} FROM {table} ORDER BY {orderBy}";

    public static string Insert(string table, Column[] columns) =>
        $"INSERT INTO {table} ({string.Join(", ", columns.Select(c => c.Name))}) " +
        $"VALUES ({string.Join(", ", columns.Select(c => "@" + c.Name))})";

    /// <summary>INSERT … ON CONFLICT (id) DO UPDATE, which SQLite and PostgreSQL both understand.</summary>
    public static string Upsert(string table, Column[] columns) =>
        Insert(table, columns) + " ON CONFLICT (id) DO UPDATE SET " +
        string.Join(", ", columns.Where(c => c.Name != "id").Select(c => $"{c.Name} = excluded.{c.Name}"));

    public static long Ms(DateTimeOffset value) => value.ToUnixTimeMilliseconds();

    public static object Ms(DateTimeOffset? value) => value is { } v ? v.ToUnixTimeMilliseconds() : DBNull.Value;

    private static object OrNull(object? value) => value ?? DBNull.Value;

    /// <summary>The cluster's row, its secret values sealed with <paramref name="secrets"/>.</summary>
    public static object?[] Values(ClusterRecord c, SecretBox? secrets) =>
    [
        c.Id, c.Project, c.Spec.Name,
        JsonSerializer.Serialize(SecretSealing.Seal(c.Spec, secrets), CoreJsonContext.Default.ClusterSpec),
        c.Generation, Ms(c.CreatedAt), Ms(c.UpdatedAt), OrNull(c.ImageDigest),
        JsonSerializer.Serialize(SecretSealing.Seal(c.Rollout ?? new ClusterRollout(), secrets), CoreJsonContext.Default.ClusterRollout),
    ];

    public static object?[] Values(ReplicaRecord r) =>
    [
        r.Id, r.ClusterId, r.Generation, OrNull(r.NodeId),
        JsonSerializer.Serialize(r.GpuIndexes ?? [], ShoalJsonContext.Default.Int32Array),
        r.State.ToWire(), OrNull(r.Reason), r.Healthy, r.Restarts, OrNull(r.ExitCode), OrNull(r.HostPort),
        Ms(r.CreatedAt), Ms(r.AssignedAt), Ms(r.PulledAt), Ms(r.StartedAt), Ms(r.ReadyAt), Ms(r.UpdatedAt),
        OrNull(r.ImageDigest), Ms(r.DrainingSince), OrNull(r.DrainReason),
        JsonSerializer.Serialize(r.RecentRestarts ?? [], ShoalJsonContext.Default.DateTimeOffsetArray), OrNull(r.LastFailure),
    ];

    public static object?[] Values(NodeRecord n) =>
    [
        n.Id, n.Name, n.SecretHash,
        JsonSerializer.Serialize(n.Hardware ?? new NodeHardware(), ShoalJsonContext.Default.NodeHardware),
        JsonSerializer.Serialize(n.Runtimes ?? [], ShoalJsonContext.Default.StringArray),
        JsonSerializer.Serialize(n.Images ?? [], ShoalJsonContext.Default.StringArray),
        n.Address, n.State.ToWire(), n.Cordoned, n.Revision, n.AckedRevision, n.Disconnects,
        Ms(n.RegisteredAt), Ms(n.LastSeenAt), n.Draining,
        n.Approved, JsonSerializer.Serialize(n.Labels ?? [], ShoalJsonContext.Default.StringArray), OrNull(n.MaxGpus), n.DirectAllowed,
        n.Tunnel, JsonSerializer.Serialize(n.RecentDisconnects ?? [], ShoalJsonContext.Default.DateTimeOffsetArray),
    ];

    public static object?[] Values(ProvisioningTokenRecord t) =>
    [
        t.Id, t.Hash, OrNull(t.Description), t.MaxUses, t.Uses, Ms(t.CreatedAt), Ms(t.ExpiresAt), Ms(t.RevokedAt),
        t.ManualApproval, OrNull(t.MaxGpus), JsonSerializer.Serialize(t.Labels ?? [], ShoalJsonContext.Default.StringArray), t.AllowDirect,
    ];

    public static object?[] Values(ClusterEventRecord e) =>
    [
        e.Seq, e.ClusterId, Ms(e.At), e.Type, OrNull(e.ReplicaId), OrNull(e.NodeId), OrNull(e.NodeName), e.Message, OrNull(e.Actor),
    ];

    public static object?[] Values(ProjectRecord p) => [p.Name, OrNull(p.Description), Ms(p.CreatedAt), LimitsJson(p.Limits), BudgetJson(p.Budget)];

    /// <summary>Gateway limits as stored: JSON, or NULL when there are none.</summary>
    public static object LimitsJson(GatewayLimits? limits) =>
        limits is null || limits.IsEmpty ? DBNull.Value : JsonSerializer.Serialize(limits, ShoalJsonContext.Default.GatewayLimits);

    public static object BudgetJson(BudgetSpec? budget) =>
        budget is null ? DBNull.Value : JsonSerializer.Serialize(budget, ShoalJsonContext.Default.BudgetSpec);

    private static GatewayLimits? ReadLimits(DbDataReader r, int i) =>
        NullableString(r, i) is { } json ? Json(json, ShoalJsonContext.Default.GatewayLimits, "gateway limits") : null;

    private static BudgetSpec? ReadBudget(DbDataReader r, int i) =>
        NullableString(r, i) is { } json ? Json(json, ShoalJsonContext.Default.BudgetSpec, "budget") : null;

    public static object?[] Values(ApiKeyRecord k) =>
    [
        k.Id, k.Hash, k.Prefix, k.Name, k.Role, OrNull(k.Project), OrNull(k.RateLimitPerMinute),
        Ms(k.CreatedAt), Ms(k.ExpiresAt), Ms(k.RevokedAt), OrNull(k.CreatedBy), LimitsJson(k.Limits), BudgetJson(k.Budget),
    ];

    public static ProjectRecord ReadProject(DbDataReader r) => new()
    {
        Name = r.GetString(0),
        Description = NullableString(r, 1),
        CreatedAt = Time(r, 2),
        Limits = ReadLimits(r, 3),
        Budget = ReadBudget(r, 4),
    };

    public static ApiKeyRecord ReadApiKey(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        Hash = r.GetString(1),
        Prefix = r.GetString(2),
        Name = r.GetString(3),
        Role = r.GetString(4),
        Project = NullableString(r, 5),
        RateLimitPerMinute = NullableInt(r, 6),
        CreatedAt = Time(r, 7),
        ExpiresAt = NullableTime(r, 8),
        RevokedAt = NullableTime(r, 9),
        CreatedBy = NullableString(r, 10),
        Limits = ReadLimits(r, 11),
        Budget = ReadBudget(r, 12),
    };

    public static ClusterEventRecord ReadEvent(DbDataReader r) => new()
    {
        Seq = r.GetInt64(0),
        ClusterId = r.GetString(1),
        At = Time(r, 2),
        Type = r.GetString(3),
        ReplicaId = NullableString(r, 4),
        NodeId = NullableString(r, 5),
        NodeName = NullableString(r, 6),
        Message = r.GetString(7),
        Actor = NullableString(r, 8),
    };

    private static DateTimeOffset Time(DbDataReader r, int i) => DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(i));

    private static DateTimeOffset? NullableTime(DbDataReader r, int i) =>
        r.IsDBNull(i) ? null : DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(i));

    private static string? NullableString(DbDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    private static int? NullableInt(DbDataReader r, int i) => r.IsDBNull(i) ? null : r.GetInt32(i);

    private static T Json<T>(string json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string what) =>
        JsonSerializer.Deserialize(json, type) ?? throw new InvalidDataException($"stored {what} is null");

    /// <summary>A cluster's row, its secret values opened with <paramref name="secrets"/>.</summary>
    /// <exception cref="SecretsKeyException">A secret was sealed with another key (or none is given).</exception>
    public static ClusterRecord ReadCluster(DbDataReader r, SecretBox? secrets)
    {
        var spec = Json(r.GetString(3), CoreJsonContext.Default.ClusterSpec, "cluster spec");
        var rollout = NullableString(r, 8) is { } stored
            ? Json(stored, CoreJsonContext.Default.ClusterRollout, "cluster rollout")
            // Clusters stored before migration 4 have none: a finished rollout of their generation.
            : new ClusterRollout { StableGeneration = r.GetInt64(4) };
        try
        {
            return new()
            {
                Id = r.GetString(0),
                Project = r.GetString(1),
                Spec = SecretSealing.Open(spec, secrets),
                Generation = r.GetInt64(4),
                CreatedAt = Time(r, 5),
                UpdatedAt = Time(r, 6),
                ImageDigest = NullableString(r, 7),
                Rollout = SecretSealing.Open(rollout, secrets),
            };
        }
        catch (SecretsKeyException e)
        {
            throw new SecretsKeyException($"cluster '{spec.Name}': {e.Message}", e.SealedWith);
        }
    }

    public static ReplicaRecord ReadReplica(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        ClusterId = r.GetString(1),
        Generation = r.GetInt64(2),
        NodeId = NullableString(r, 3),
        GpuIndexes = Json(r.GetString(4), ShoalJsonContext.Default.Int32Array, "gpu indexes"),
        State = EnumNames.ParseReplicaState(r.GetString(5)),
        Reason = NullableString(r, 6),
        Healthy = r.GetBoolean(7),
        Restarts = r.GetInt32(8),
        ExitCode = NullableInt(r, 9),
        HostPort = NullableInt(r, 10),
        CreatedAt = Time(r, 11),
        AssignedAt = NullableTime(r, 12),
        PulledAt = NullableTime(r, 13),
        StartedAt = NullableTime(r, 14),
        ReadyAt = NullableTime(r, 15),
        UpdatedAt = Time(r, 16),
        ImageDigest = NullableString(r, 17),
        DrainingSince = NullableTime(r, 18),
        DrainReason = NullableString(r, 19),
        RecentRestarts = Json(r.GetString(20), ShoalJsonContext.Default.DateTimeOffsetArray, "replica restarts"),
        LastFailure = NullableString(r, 21),
    };

    public static NodeRecord ReadNode(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        Name = r.GetString(1),
        SecretHash = r.GetString(2),
        Hardware = Json(r.GetString(3), ShoalJsonContext.Default.NodeHardware, "node hardware"),
        Runtimes = Json(r.GetString(4), ShoalJsonContext.Default.StringArray, "node runtimes"),
        Images = Json(r.GetString(5), ShoalJsonContext.Default.StringArray, "node images"),
        Address = r.GetString(6),
        State = EnumNames.ParseNodeState(r.GetString(7)),
        Cordoned = r.GetBoolean(8),
        Revision = r.GetInt64(9),
        AckedRevision = r.GetInt64(10),
        Disconnects = r.GetInt32(11),
        RegisteredAt = Time(r, 12),
        LastSeenAt = NullableTime(r, 13),
        Draining = r.GetBoolean(14),
        Approved = r.GetBoolean(15),
        Labels = Json(r.GetString(16), ShoalJsonContext.Default.StringArray, "node labels"),
        MaxGpus = NullableInt(r, 17),
        DirectAllowed = r.GetBoolean(18),
        Tunnel = r.GetBoolean(19),
        RecentDisconnects = Json(r.GetString(20), ShoalJsonContext.Default.DateTimeOffsetArray, "node disconnects"),
    };

    public static ProvisioningTokenRecord ReadToken(DbDataReader r) => new()
    {
        Id = r.GetString(0),
        Hash = r.GetString(1),
        Description = NullableString(r, 2),
        MaxUses = r.GetInt32(3),
        Uses = r.GetInt32(4),
        CreatedAt = Time(r, 5),
        ExpiresAt = Time(r, 6),
        RevokedAt = NullableTime(r, 7),
        ManualApproval = r.GetBoolean(8),
        MaxGpus = NullableInt(r, 9),
        Labels = Json(r.GetString(10), ShoalJsonContext.Default.StringArray, "token labels"),
        AllowDirect = r.GetBoolean(11),
    };
}
