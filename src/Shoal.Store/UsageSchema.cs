namespace Shoal.Store;

/// <summary>The gateway's usage ledger and the providers' GPU-time metering (issue 16), as migration 10.</summary>
internal static class UsageSchema
{
    /// <summary>
    /// <c>usage_records</c>: one row per request id, written by the edges' spools (shipping a row twice
    /// stores it once). Times are Unix milliseconds, durations microseconds, cost nano-dollars (exact
    /// integers, never floating point). <c>replica_runs</c>: one row per time a replica ran (its id and
    /// start), closed when it stops; GPU-seconds are its GPUs times its overlap with the asked period.
    /// </summary>
    public const string Migration10 = """
        CREATE TABLE usage_records (
            request_id TEXT PRIMARY KEY,
            at BIGINT NOT NULL,
            key_id TEXT NULL,
            project TEXT NOT NULL,
            cluster TEXT NOT NULL,
            model TEXT NULL,
            replica_id TEXT NULL,
            node_id TEXT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            ttft_us BIGINT NULL,
            duration_us BIGINT NOT NULL,
            status INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            streamed BOOLEAN NOT NULL,
            cut BOOLEAN NOT NULL,
            cost_nanos BIGINT NOT NULL,
            edge TEXT NULL,
            stored_at BIGINT NOT NULL
        );
        CREATE INDEX ix_usage_records_at ON usage_records (at);
        CREATE INDEX ix_usage_records_project_at ON usage_records (project, at);
        CREATE INDEX ix_usage_records_key_at ON usage_records (key_id, at);
        CREATE INDEX ix_usage_records_cluster_at ON usage_records (cluster, at);
        CREATE INDEX ix_usage_records_node_at ON usage_records (node_id, at);

        CREATE TABLE replica_runs (
            replica_id TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            ended_at BIGINT NULL,
            cluster_id TEXT NOT NULL,
            cluster TEXT NOT NULL,
            project TEXT NOT NULL,
            node_id TEXT NOT NULL,
            gpus INTEGER NOT NULL,
            PRIMARY KEY (replica_id, started_at)
        );
        CREATE INDEX ix_replica_runs_started ON replica_runs (started_at);
        CREATE INDEX ix_replica_runs_ended ON replica_runs (ended_at);
        """;
}
