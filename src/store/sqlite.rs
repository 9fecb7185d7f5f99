//! The embedded SQLite store (the default): one file, nothing to install.

use std::path::Path;
use std::str::FromStr;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;
use super::db::BeginWrite as _;

/// Schema migrations, applied in order once each; never edit a shipped one.
pub(super) const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS mcp_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_time TEXT NOT NULL,
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
    latency_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mcp_audit_time ON mcp_audit (event_time);
CREATE INDEX IF NOT EXISTS mcp_audit_class_decision ON mcp_audit (action_class, decision, event_time);",
"CREATE TABLE IF NOT EXISTS gate_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_time TEXT NOT NULL,
    gate TEXT NOT NULL,
    upstream TEXT NOT NULL,
    detail TEXT NOT NULL,
    ticket TEXT
);
CREATE INDEX IF NOT EXISTS gate_events_time ON gate_events (gate, event_time);",
"CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    args_digest TEXT NOT NULL,
    manifest_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    reason TEXT,
    used_at TEXT
);
CREATE INDEX IF NOT EXISTS approvals_binding ON approvals (principal, tool, args_digest, status);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, created_at);",
"CREATE TABLE IF NOT EXISTS control_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS disabled_upstreams (
    name TEXT PRIMARY KEY,
    disabled_by TEXT NOT NULL,
    disabled_at TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    audience TEXT PRIMARY KEY,
    revoked_before TEXT NOT NULL,
    revoked_by TEXT NOT NULL
);",
"CREATE TABLE IF NOT EXISTS quarantine (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    principal TEXT NOT NULL,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    classes TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL,
    released_by TEXT,
    released_at TEXT,
    release_reason TEXT,
    fetched_at TEXT
);
CREATE INDEX IF NOT EXISTS quarantine_status ON quarantine (status, created_at);
ALTER TABLE mcp_audit ADD COLUMN output_decision TEXT NOT NULL DEFAULT '';
ALTER TABLE mcp_audit ADD COLUMN findings TEXT NOT NULL DEFAULT '';
ALTER TABLE mcp_audit ADD COLUMN quarantine_id TEXT;",
"CREATE TABLE IF NOT EXISTS spent_handoffs (
    id TEXT PRIMARY KEY,
    spent_at TEXT NOT NULL,
    principal TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
ALTER TABLE mcp_audit ADD COLUMN chain_depth INTEGER NOT NULL DEFAULT 0;",
// The tamper-evidence chain (see audit_chain.rs); rows from before it keep '' in both.
"ALTER TABLE mcp_audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE mcp_audit ADD COLUMN row_hash TEXT NOT NULL DEFAULT '';",
// `[audit] record_arguments`: the call's arguments as canonical JSON (NULL when not recorded).
// Not a hashed content column: the hashed `args_digest` already binds it (replay checks it).
"ALTER TABLE mcp_audit ADD COLUMN arguments TEXT;",
// Detection gates (see gates.rs): what each gate remembers between evaluations, and the lease
// that lets one replica evaluate them.
"CREATE TABLE IF NOT EXISTS gate_state (
    gate TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    hits BIGINT NOT NULL,
    total BIGINT NOT NULL,
    evaluated_at TEXT NOT NULL,
    evaluated_by TEXT NOT NULL,
    breaching_since TEXT,
    firing_since TEXT,
    dedup_key TEXT,
    triggered_at TEXT,
    last_page TEXT,
    last_paged_at TEXT
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TEXT NOT NULL
);"];

const TIME_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
);

/// A time as stored: UTC, fixed width, so text order is time order.
pub(super) fn fmt_time(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(TIME_FORMAT)
        .unwrap_or_default()
}

/// `t` at the stored precision (microseconds), so what is returned equals what is read back.
pub(super) fn micros(t: time::OffsetDateTime) -> time::OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

/// The inverse of [`fmt_time`].
pub(super) fn parse_time(s: &str) -> Result<time::OffsetDateTime, StoreError> {
    time::PrimitiveDateTime::parse(s, TIME_FORMAT)
        .map(time::PrimitiveDateTime::assume_utc)
        .map_err(|e| StoreError::Invalid(format!("time {s:?}: {e}")))
}

/// Open (creating if needed) and migrate the database at `path`.
pub(super) async fn open(path: &Path) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(std::time::Duration::from_secs(5))
        // 512 KiB of page cache per connection instead of SQLite's 2 MiB: the writer appends
        // and the periodic reads are indexed; the OS page cache holds the rest. Four connections
        // at 2 MiB were a sixth of the gateway's peak RSS under load.
        .pragma("cache_size", "-512");
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    migrate(&pool).await?;
    Ok(pool)
}

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    // IMMEDIATE: a CLI and a gateway opening the same file at once must not both migrate.
    let mut tx = pool.begin_write().await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS warden_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let applied: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM warden_migrations")
            .fetch_one(&mut *tx)
            .await?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1);
        if version <= applied {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO warden_migrations (version, applied_at) VALUES ($1, datetime('now'))",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
