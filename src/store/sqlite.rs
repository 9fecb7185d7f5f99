//! The embedded SQLite store (the default): one file, nothing to install.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, SqliteConnection, SqlitePool};

use super::audit_chain::{self, Cell, Head};
use super::{AuditRecord, GateEvent, StoreError};

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

/// A SQLite-backed store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
}

impl SqliteStore {
    /// Open (creating if needed) and migrate the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // IMMEDIATE: a CLI and a gateway opening the same file at once must not both migrate.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
                "INSERT INTO warden_migrations (version, applied_at) VALUES (?, datetime('now'))",
            )
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Insert rows, 256 per statement (SQLite bounds the number of bound parameters: 21 × 256
    /// stays well under its limit), chained: one `BEGIN IMMEDIATE` transaction reads the chain
    /// head, links each row to the one before it and records the new head, so every writer of
    /// the file (the gateway's writer task, an admin CLI) extends one chain, across restarts
    /// too. All rows or none: a retried batch links from the same head again.
    pub async fn insert(&self, rows: &[AuditRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut head = audit_chain::head_for_write(&mut tx).await?;
        for chunk in rows.chunks(256) {
            let mut prev = head
                .as_ref()
                .map_or(audit_chain::GENESIS, |h| h.row_hash.as_str())
                .to_owned();
            let linked: Vec<Linked> = chunk
                .iter()
                .map(|r| {
                    let cells = audit_chain::cells(r);
                    let hash = audit_chain::row_hash(&prev, &cells);
                    let prev_hash = std::mem::replace(&mut prev, hash.clone());
                    Linked {
                        cells,
                        prev_hash,
                        row_hash: hash,
                    }
                })
                .collect();
            let id = insert_chunk(&mut tx, &linked).await?;
            head = Some(Head { id, row_hash: prev });
        }
        if let Some(head) = &head {
            audit_chain::record_head(&mut tx, head).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spend handoff `id` (single use, across restarts and replicas): `false` when it was
    /// spent before.
    pub async fn spend_handoff(
        &self,
        id: &str,
        principal: &str,
        chain_id: &str,
        expires_at: time::OffsetDateTime,
        now: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO spent_handoffs (id, spent_at, principal, chain_id, expires_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(fmt_time(now))
        .bind(principal)
        .bind(chain_id)
        .bind(fmt_time(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Record one gate event.
    pub async fn record_event(&self, e: &GateEvent) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO gate_events (event_time, gate, upstream, detail, ticket) VALUES (?, ?, ?, ?, ?)")
            .bind(fmt_time(e.event_time))
            .bind(e.gate)
            .bind(&e.upstream)
            .bind(&e.detail)
            .bind(&e.ticket)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One row ready to insert: its content and its links.
struct Linked {
    cells: [Cell; 19],
    prev_hash: String,
    row_hash: String,
}

/// Insert `rows` (not empty) in one statement; the id of the last.
async fn insert_chunk(conn: &mut SqliteConnection, rows: &[Linked]) -> Result<i64, StoreError> {
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO mcp_audit ({}, prev_hash, row_hash) ",
        audit_chain::column_list()
    ));
    qb.push_values(rows, |mut b, r| {
        for cell in &r.cells {
            match cell {
                Cell::Null => b.push_bind(None::<&str>),
                Cell::Int(n) => b.push_bind(*n),
                Cell::Text(s) => b.push_bind(s.as_str()),
            };
        }
        b.push_bind(r.prev_hash.as_str())
            .push_bind(r.row_hash.as_str());
    });
    Ok(qb.build().execute(conn).await?.last_insert_rowid())
}
