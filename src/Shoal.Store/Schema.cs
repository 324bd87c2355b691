namespace Shoal.Store;

/// <summary>
/// The schema, as an ordered list of migrations. The same SQL runs on SQLite and PostgreSQL, so
/// it sticks to the common subset: TEXT, INTEGER, BIGINT, BOOLEAN, foreign keys with cascade.
/// Append new migrations; never edit one that has shipped.
/// </summary>
public static class Schema
{
    /// <summary>Applied migrations, one row each.</summary>
    internal const string CreateMigrationsTable =
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)";

    /// <summary>All migrations in order; versions start at 1 and have no gaps.</summary>
    public static IReadOnlyList<(int Version, string Sql)> Migrations { get; } =
    [
        (1, """
            CREATE TABLE clusters (
                id TEXT PRIMARY KEY,
                project TEXT NOT NULL,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                generation BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                CONSTRAINT ux_clusters_project_name UNIQUE (project, name)
            );

            CREATE TABLE replicas (
                id TEXT PRIMARY KEY,
                cluster_id TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
                generation BIGINT NOT NULL,
                node_id TEXT NULL,
                gpu_indexes TEXT NOT NULL,
                state TEXT NOT NULL,
                reason TEXT NULL,
                healthy BOOLEAN NOT NULL,
                restarts INTEGER NOT NULL,
                exit_code INTEGER NULL,
                host_port INTEGER NULL,
                created_at BIGINT NOT NULL,
                assigned_at BIGINT NULL,
                pulled_at BIGINT NULL,
                started_at BIGINT NULL,
                ready_at BIGINT NULL,
                updated_at BIGINT NOT NULL
            );
            CREATE INDEX ix_replicas_cluster_id ON replicas (cluster_id);
            CREATE INDEX ix_replicas_node_id ON replicas (node_id);

            CREATE TABLE nodes (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                secret_hash TEXT NOT NULL,
                hardware TEXT NOT NULL,
                runtimes TEXT NOT NULL,
                images TEXT NOT NULL,
                address TEXT NOT NULL,
                state TEXT NOT NULL,
                cordoned BOOLEAN NOT NULL,
                revision BIGINT NOT NULL,
                acked_revision BIGINT NOT NULL,
                disconnects INTEGER NOT NULL,
                registered_at BIGINT NOT NULL,
                last_seen_at BIGINT NULL
            );

            CREATE TABLE provisioning_tokens (
                id TEXT PRIMARY KEY,
                hash TEXT NOT NULL,
                description TEXT NULL,
                max_uses INTEGER NOT NULL,
                uses INTEGER NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT NULL,
                CONSTRAINT ux_provisioning_tokens_hash UNIQUE (hash)
            );
            """),
        (2, """
            ALTER TABLE clusters ADD COLUMN image_digest TEXT NULL;
            ALTER TABLE replicas ADD COLUMN image_digest TEXT NULL;
            """),
        (3, """
            CREATE TABLE cluster_events (
                seq BIGINT PRIMARY KEY,
                cluster_id TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
                at BIGINT NOT NULL,
                type TEXT NOT NULL,
                replica_id TEXT NULL,
                node_id TEXT NULL,
                node_name TEXT NULL,
                message TEXT NOT NULL
            );
            CREATE INDEX ix_cluster_events_cluster_seq ON cluster_events (cluster_id, seq);
            """),
        (4, """
            ALTER TABLE clusters ADD COLUMN rollout TEXT NULL;
            ALTER TABLE replicas ADD COLUMN draining_since BIGINT NULL;
            ALTER TABLE replicas ADD COLUMN drain_reason TEXT NULL;
            ALTER TABLE nodes ADD COLUMN draining BOOLEAN NOT NULL DEFAULT FALSE;
            """),
        (5, """
            CREATE TABLE projects (
                name TEXT PRIMARY KEY,
                description TEXT NULL,
                created_at BIGINT NOT NULL
            );
            INSERT INTO projects (name, description, created_at) SELECT DISTINCT project, NULL, 0 FROM clusters;

            CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                hash TEXT NOT NULL,
                prefix TEXT NOT NULL,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                project TEXT NULL,
                rate_limit INTEGER NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NULL,
                revoked_at BIGINT NULL,
                created_by TEXT NULL,
                CONSTRAINT ux_api_keys_hash UNIQUE (hash)
            );

            ALTER TABLE cluster_events ADD COLUMN actor TEXT NULL;
            """),
        // The operator's policy for nodes: carried by the token, copied onto each node it admits.
        (6, """
            ALTER TABLE provisioning_tokens ADD COLUMN manual_approval BOOLEAN NOT NULL DEFAULT FALSE;
            ALTER TABLE provisioning_tokens ADD COLUMN max_gpus INTEGER NULL;
            ALTER TABLE provisioning_tokens ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
            ALTER TABLE provisioning_tokens ADD COLUMN allow_direct BOOLEAN NOT NULL DEFAULT FALSE;
            ALTER TABLE nodes ADD COLUMN approved BOOLEAN NOT NULL DEFAULT TRUE;
            ALTER TABLE nodes ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
            ALTER TABLE nodes ADD COLUMN max_gpus INTEGER NULL;
            ALTER TABLE nodes ADD COLUMN direct_allowed BOOLEAN NOT NULL DEFAULT FALSE;
            """),
        // How a node is reached and how reliable it was, so a restarted server knows both before its agent is back.
        (7, """
            ALTER TABLE nodes ADD COLUMN tunnel BOOLEAN NOT NULL DEFAULT TRUE;
            ALTER TABLE nodes ADD COLUMN recent_disconnects TEXT NOT NULL DEFAULT '[]';
            """),
        // A replica's recent restarts and its last failure, so a crash loop is not forgotten when the server restarts.
        (8, """
            ALTER TABLE replicas ADD COLUMN recent_restarts TEXT NOT NULL DEFAULT '[]';
            ALTER TABLE replicas ADD COLUMN last_failure TEXT NULL;
            """),
        // The gateway's settings (issue 16): limits (GatewayLimits) and budget (BudgetSpec) as JSON, of endpoint keys and projects.
        (9, """
            ALTER TABLE api_keys ADD COLUMN gateway_limits TEXT NULL;
            ALTER TABLE api_keys ADD COLUMN budget TEXT NULL;
            ALTER TABLE projects ADD COLUMN gateway_limits TEXT NULL;
            ALTER TABLE projects ADD COLUMN budget TEXT NULL;
            """),
        // Issue 16: the usage ledger (one row per request id) and replica running time for GPU-seconds.
        (10, UsageSchema.Migration10),
    ];

    /// <summary>The version a fully migrated store reports.</summary>
    public static int LatestVersion => Migrations[^1].Version;
}
