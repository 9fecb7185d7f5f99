//! The PostgreSQL store: one database shared by several gateway replicas. Same tables and
//! column names as SQLite; instants are `TIMESTAMPTZ` (so the design's detection query, with
//! `NOW() - INTERVAL '10 minutes'`, runs as written). Migrations run under the store's
//! advisory write lock, so replicas starting together migrate once.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;
use super::db::BeginWrite as _;

/// Schema migrations, applied in order once each; never edit a shipped one. The first is the
/// SQLite schema as of its migration 7, in PostgreSQL's types.
pub(super) const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS mcp_audit (
    id BIGINT PRIMARY KEY,
    event_time TIMESTAMPTZ NOT NULL,
    request_id TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    server_name TEXT NOT NULL,
    tool_name TEXT NOT NULL,
    exposed_name TEXT NOT NULL,
    action_class TEXT NOT NULL,
    decision TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL,
    approval_id TEXT,
    chain_id TEXT NOT NULL,
    args_digest TEXT NOT NULL,
    latency_us BIGINT NOT NULL,
    output_decision TEXT NOT NULL DEFAULT '',
    findings TEXT NOT NULL DEFAULT '',
    quarantine_id TEXT,
    chain_depth BIGINT NOT NULL DEFAULT 0,
    prev_hash TEXT NOT NULL DEFAULT '',
    row_hash TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS mcp_audit_time ON mcp_audit (event_time);
CREATE INDEX IF NOT EXISTS mcp_audit_class_decision ON mcp_audit (action_class, decision, event_time);
CREATE TABLE IF NOT EXISTS gate_events (
    id BIGSERIAL PRIMARY KEY,
    event_time TIMESTAMPTZ NOT NULL,
    gate TEXT NOT NULL,
    upstream TEXT NOT NULL,
    detail TEXT NOT NULL,
    ticket TEXT
);
CREATE INDEX IF NOT EXISTS gate_events_time ON gate_events (gate, event_time);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    args_digest TEXT NOT NULL,
    manifest_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    decided_by TEXT,
    decided_at TIMESTAMPTZ,
    reason TEXT,
    used_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS approvals_binding ON approvals (principal, tool, args_digest, status);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, created_at);
CREATE TABLE IF NOT EXISTS control_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS disabled_upstreams (
    name TEXT PRIMARY KEY,
    disabled_by TEXT NOT NULL,
    disabled_at TIMESTAMPTZ NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    audience TEXT PRIMARY KEY,
    revoked_before TIMESTAMPTZ NOT NULL,
    revoked_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    principal TEXT NOT NULL,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    classes TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL,
    released_by TEXT,
    released_at TIMESTAMPTZ,
    release_reason TEXT,
    fetched_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS quarantine_status ON quarantine (status, created_at);
CREATE TABLE IF NOT EXISTS spent_handoffs (
    id TEXT PRIMARY KEY,
    spent_at TIMESTAMPTZ NOT NULL,
    principal TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);",
// `[audit] record_arguments`: the call's arguments as canonical JSON (NULL when not recorded).
"ALTER TABLE mcp_audit ADD COLUMN IF NOT EXISTS arguments TEXT;",
// Detection gates (see gates.rs): what each gate remembers between evaluations, and the lease
// that lets one replica evaluate them.
"CREATE TABLE IF NOT EXISTS gate_state (
    gate TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    hits BIGINT NOT NULL,
    total BIGINT NOT NULL,
    evaluated_at TIMESTAMPTZ NOT NULL,
    evaluated_by TEXT NOT NULL,
    breaching_since TIMESTAMPTZ,
    firing_since TIMESTAMPTZ,
    dedup_key TEXT,
    triggered_at TIMESTAMPTZ,
    last_page TEXT,
    last_paged_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);"];

/// Connect to `url` (`postgres://…`) and migrate.
pub(super) async fn open(url: &str) -> Result<PgPool, StoreError> {
    open_with(url.parse()?).await
}

/// Connect with `options` and migrate.
pub(super) async fn open_with(options: PgConnectOptions) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.application_name("mcp-warden"))
        .await?;
    migrate(&pool).await?;
    Ok(pool)
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin_write().await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS warden_migrations (version BIGINT PRIMARY KEY, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())",
    )
    .execute(&mut *tx)
    .await?;
    let applied: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::BIGINT FROM warden_migrations")
            .fetch_one(&mut *tx)
            .await?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1);
        if version <= applied {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO warden_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
