//! Tamper evidence for `mcp_audit`. Each row carries `row_hash`, the sha256 of its content and
//! of `prev_hash`, which is the `row_hash` of the chained row before it (by id); the first
//! chained row links to [`GENESIS`]. Editing a row breaks its own hash; deleting one breaks the
//! link of the row after it. The head (the last row's id and hash) is also kept in
//! `control_state`, so a deleted tail is seen too. `mcp-warden audit verify` walks the chain.
//!
//! Rows written before the chain existed (migration 7) have '' in both columns: they are
//! counted as "not chained", not as tampering, and the chain starts at the first chained row.
//!
//! What it shows, honestly: the chain is unkeyed. Whoever can write the database file can
//! recompute every hash after an edit, the head with them; the chain shows edits made without
//! doing so (by hand, by a tool that does not know the scheme), and an operator who copies the
//! head hash that `verify` prints somewhere else can later show that everything before it is
//! unchanged.
//!
//! Writers: every insert is one transaction holding the store's write lock (SQLite's
//! `BEGIN IMMEDIATE`, PostgreSQL's advisory lock: see `db::BeginWrite`) that reads the head,
//! links the new rows, gives them the next ids and moves the head (see `Store::insert`). So
//! the gateway's writer task, a restarted gateway, an admin CLI writing its audit row and every
//! replica sharing one PostgreSQL extend one chain, with ids that grow by one.

use std::fmt;

use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::QueryBuilder;

use super::db::{BeginWrite as _, StoreRow, Ts, on};
use super::spool::Mark;
use super::sqlite::fmt_time;
use super::{AuditRecord, Store, StoreError};

/// `prev_hash` of the first chained row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Names the serialization hashed below; a change to it (a new content column) is a new
/// scheme, never a silent change of this one.
const SCHEME: &str = "mcp_audit/v1";

/// The `control_state` key of the head.
const HEAD_KEY: &str = "audit_chain_head";

/// How a content column is stored.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Time,
    Text,
    OptText,
    Int,
}

/// The content columns of `mcp_audit` (every column but `id`, `prev_hash`, `row_hash`), in
/// the order they are inserted and hashed.
const COLUMNS: [(&str, Kind); 19] = [
    ("event_time", Kind::Time),
    ("request_id", Kind::Text),
    ("actor_id", Kind::Text),
    ("server_name", Kind::Text),
    ("tool_name", Kind::Text),
    ("exposed_name", Kind::Text),
    ("action_class", Kind::Text),
    ("decision", Kind::Text),
    ("stage", Kind::Text),
    ("reason", Kind::Text),
    ("outcome", Kind::Text),
    ("approval_id", Kind::OptText),
    ("chain_id", Kind::Text),
    ("args_digest", Kind::Text),
    ("latency_us", Kind::Int),
    ("output_decision", Kind::Text),
    ("findings", Kind::Text),
    ("quarantine_id", Kind::OptText),
    ("chain_depth", Kind::Int),
];

/// One stored value of a content column: what is bound on insert, read back by `verify`, and
/// hashed (as JSON: `null`, a number or a string, so no byte can move between fields unseen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(super) enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// The names of the content columns, comma-separated, in [`COLUMNS`] order.
pub(super) fn column_list() -> String {
    COLUMNS.map(|(name, _)| name).join(", ")
}

/// `r` as stored, in [`COLUMNS`] order.
pub(super) fn cells(r: &AuditRecord) -> [Cell; 19] {
    let text = |s: &str| Cell::Text(s.to_owned());
    let opt = |s: &Option<String>| s.clone().map_or(Cell::Null, Cell::Text);
    [
        Cell::Text(fmt_time(r.event_time)),
        text(&r.request_id),
        text(&r.actor_id),
        text(&r.server_name),
        text(&r.tool_name),
        text(&r.exposed_name),
        text(&r.action_class),
        text(r.decision.as_str()),
        text(r.stage),
        text(&r.reason),
        text(r.outcome),
        opt(&r.approval_id),
        text(&r.chain_id),
        text(&r.args_digest),
        Cell::Int(r.latency_us),
        text(r.output_decision),
        text(&r.findings),
        opt(&r.quarantine_id),
        Cell::Int(i64::from(r.chain_depth)),
    ]
}

/// A stored row's content, in [`COLUMNS`] order (an error when a value has the wrong type:
/// the writer never stores one). Instants are hashed as SQLite stores them, whatever the
/// backend.
fn read_cells(row: &impl StoreRow) -> Result<Vec<Cell>, StoreError> {
    COLUMNS
        .iter()
        .map(|&(name, kind)| {
            Ok(match kind {
                Kind::Time => Cell::Text(fmt_time(row.time(name)?)),
                Kind::Text => Cell::Text(row.text(name)?),
                Kind::OptText => row.opt_text(name)?.map_or(Cell::Null, Cell::Text),
                Kind::Int => Cell::Int(row.int(name)?),
            })
        })
        .collect()
}

/// The `row_hash` of a row with content `cells` whose predecessor's hash is `prev`: sha256,
/// hex, of the JSON array `[SCHEME, prev, [cells…]]`.
pub(super) fn row_hash(prev: &str, cells: &[Cell]) -> String {
    // Strings, integers and null always serialize; the empty fallback is never taken.
    let body = serde_json::to_vec(&(SCHEME, prev, cells)).unwrap_or_default();
    hex::encode(Sha256::digest(&body))
}

/// The last chained row: its id and `row_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Its `mcp_audit.id`.
    pub id: i64,
    /// Its `row_hash`.
    pub row_hash: String,
}

fn parse_head(value: &str) -> Result<Head, StoreError> {
    serde_json::from_str(value)
        .map_err(|e| StoreError::Invalid(format!("{HEAD_KEY} {value:?}: {e}")))
}

/// One row ready to insert: its content and its links.
struct Linked<'a> {
    row: &'a AuditRecord,
    cells: [Cell; 19],
    prev_hash: String,
    row_hash: String,
}

/// Rows per INSERT statement. Only these sizes are used, largest first (a batch of 37 rows is
/// 2 × 16 + 4 + 1), so each connection caches at most four insert statements. Any batch size
/// as its own statement let the statement caches grow with every new size seen: a prepared
/// multi-row INSERT holds ~600 bytes of SQLite program per row, and a gateway under load
/// reached 70 MiB. 64 rows × 23 parameters stay far under both backends' limits.
const SHAPES: [usize; 4] = [64, 16, 4, 1];

/// Split `rows` into consecutive chunks whose lengths are all in [`SHAPES`].
fn shaped<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = SHAPES.into_iter().find(|&s| s <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

impl Store {
    /// Insert rows, chained: one transaction under the write lock reads the chain head (the
    /// recorded one, so rows deleted from the tail stay missing; else the last chained row),
    /// links each row to the one before it, numbers them from the head on and records the
    /// new head. All rows or none: a retried batch links from the same head again.
    pub async fn insert(&self, rows: &[AuditRecord]) -> Result<(), StoreError> {
        self.insert_marked(rows, None).await
    }

    /// [`Store::insert`], recording in the same transaction how far this process's audit spool
    /// is committed (see `spool`).
    pub(super) async fn insert_marked(
        &self,
        rows: &[AuditRecord],
        mark: Option<&Mark>,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        on!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let recorded: Option<String> =
                sqlx::query_scalar("SELECT value FROM control_state WHERE key = $1")
                    .bind(HEAD_KEY)
                    .fetch_optional(&mut *tx)
                    .await?;
            let mut head = match recorded {
                Some(v) => Some(parse_head(&v)?),
                None => sqlx::query(
                    "SELECT id, row_hash FROM mcp_audit WHERE row_hash != '' \
                     ORDER BY id DESC LIMIT 1",
                )
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| {
                    Ok::<_, StoreError>(Head {
                        id: r.int("id")?,
                        row_hash: r.text("row_hash")?,
                    })
                })
                .transpose()?,
            };
            let max_id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM mcp_audit")
                .fetch_one(&mut *tx)
                .await?;
            let mut next_id = head.as_ref().map_or(0, |h| h.id).max(max_id);
            for chunk in shaped(rows) {
                let mut prev = head
                    .as_ref()
                    .map_or(GENESIS, |h| h.row_hash.as_str())
                    .to_owned();
                let linked: Vec<Linked<'_>> = chunk
                    .iter()
                    .map(|row| {
                        let cells = cells(row);
                        let hash = row_hash(&prev, &cells);
                        let prev_hash = std::mem::replace(&mut prev, hash.clone());
                        Linked {
                            row,
                            cells,
                            prev_hash,
                            row_hash: hash,
                        }
                    })
                    .collect();
                let first = next_id.saturating_add(1);
                next_id = next_id.saturating_add(i64::try_from(linked.len()).unwrap_or(0));
                let mut qb = QueryBuilder::new(format!(
                    "INSERT INTO mcp_audit (id, {}, prev_hash, row_hash, arguments) ",
                    column_list()
                ));
                let mut id = first;
                qb.push_values(&linked, |mut b, r| {
                    b.push_bind(id);
                    id = id.saturating_add(1);
                    b.push_bind(Ts(r.row.event_time));
                    for cell in r.cells.iter().skip(1) {
                        match cell {
                            Cell::Null => b.push_bind(None::<&str>),
                            Cell::Int(n) => b.push_bind(*n),
                            Cell::Text(s) => b.push_bind(s.as_str()),
                        };
                    }
                    b.push_bind(r.prev_hash.as_str())
                        .push_bind(r.row_hash.as_str())
                        .push_bind(r.row.arguments.as_deref());
                });
                qb.build().execute(&mut *tx).await?;
                head = Some(Head {
                    id: next_id,
                    row_hash: prev,
                });
            }
            if let Some(head) = &head {
                let value = serde_json::to_string(head)
                    .map_err(|e| StoreError::Invalid(format!("{HEAD_KEY}: {e}")))?;
                sqlx::query(
                    "INSERT INTO control_state (key, value, set_by, set_at) \
                     VALUES ($1, $2, 'audit-writer', $3) ON CONFLICT (key) DO UPDATE \
                     SET value = excluded.value, set_at = excluded.set_at",
                )
                .bind(HEAD_KEY)
                .bind(value)
                .bind(Ts(time::OffsetDateTime::now_utc()))
                .execute(&mut *tx)
                .await?;
            }
            if let Some(mark) = mark {
                sqlx::query(
                    "INSERT INTO control_state (key, value, set_by, set_at) \
                     VALUES ($1, $2, 'audit-writer', $3) ON CONFLICT (key) DO UPDATE \
                     SET value = excluded.value, set_at = excluded.set_at",
                )
                .bind(&mark.key)
                .bind(mark.seq.to_string())
                .bind(Ts(time::OffsetDateTime::now_utc()))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// How far spool `key` is committed (`None`: nothing recorded).
    pub(super) async fn spool_mark(&self, key: &str) -> Result<Option<u64>, StoreError> {
        on!(self, |pool| {
            let value: Option<String> =
                sqlx::query_scalar("SELECT value FROM control_state WHERE key = $1")
                    .bind(key)
                    .fetch_optional(pool)
                    .await?;
            value
                .map(|v| {
                    v.parse()
                        .map_err(|e| StoreError::Invalid(format!("{key} {v:?}: {e}")))
                })
                .transpose()
        })
    }

    /// Forget spool `key`'s mark.
    pub(super) async fn delete_spool_mark(&self, key: &str) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query("DELETE FROM control_state WHERE key = $1")
                .bind(key)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The head as the writers recorded it, if they have.
    async fn recorded_head(&self) -> Result<Option<Head>, StoreError> {
        on!(self, |pool| {
            let value: Option<String> =
                sqlx::query_scalar("SELECT value FROM control_state WHERE key = $1")
                    .bind(HEAD_KEY)
                    .fetch_optional(pool)
                    .await?;
            value.as_deref().map(parse_head).transpose()
        })
    }
}

/// Something `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Row `id`'s content (or its `prev_hash`) does not hash to its `row_hash`: it was edited.
    Edited {
        /// The row.
        id: i64,
    },
    /// Row `id`'s `prev_hash` is not the `row_hash` of the chained row before it (`prev`,
    /// `None` when `id` is the first chained row and does not link to genesis): rows between
    /// them were deleted, or this one was put there.
    LinkBroken {
        /// The row.
        id: i64,
        /// The chained row before it.
        prev: Option<i64>,
    },
    /// The ids between `after` and `before` (exclusive) are missing from the chain.
    Gap {
        /// The last id present before the gap.
        after: i64,
        /// The first id present after it.
        before: i64,
    },
    /// Row `id` has no hash although the chain started before it.
    Unchained {
        /// The row.
        id: i64,
    },
    /// The last chained row is not the head the writers recorded: rows were deleted from the
    /// end (`last` before `recorded`), added by something else (after), or the last row was
    /// rewritten with its hash.
    HeadMismatch {
        /// The head as recorded.
        recorded: Head,
        /// The last chained row found (`None`: there is none).
        last: Option<Head>,
    },
    /// There are chained rows but no recorded head (it was deleted).
    HeadMissing {
        /// The last chained row found.
        last: Head,
    },
}

impl Problem {
    /// A stable code for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Edited { .. } => "edited",
            Self::LinkBroken { .. } => "link_broken",
            Self::Gap { .. } => "id_gap",
            Self::Unchained { .. } => "unchained",
            Self::HeadMismatch { .. } => "head_mismatch",
            Self::HeadMissing { .. } => "head_missing",
        }
    }

    /// The row it is about.
    pub fn row_id(&self) -> Option<i64> {
        match self {
            Self::Edited { id } | Self::LinkBroken { id, .. } | Self::Unchained { id } => Some(*id),
            Self::Gap { before, .. } => Some(*before),
            Self::HeadMismatch { last, .. } => last.as_ref().map(|h| h.id),
            Self::HeadMissing { last } => Some(last.id),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Edited { id } => write!(
                f,
                "row {id} was edited: its content does not match its row_hash"
            ),
            Self::LinkBroken {
                id,
                prev: Some(prev),
            } => write!(
                f,
                "link broken at row {id}: its prev_hash does not match row {prev}'s row_hash \
                 (a row between them is missing)"
            ),
            Self::LinkBroken { id, prev: None } => write!(
                f,
                "link broken at row {id}: the first chained row does not link to genesis \
                 (rows before it are missing)"
            ),
            Self::Gap { after, before } => write!(
                f,
                "rows {}..={} are missing (id gap between rows {after} and {before})",
                after.saturating_add(1),
                before.saturating_sub(1)
            ),
            Self::Unchained { id } => write!(
                f,
                "row {id} has no hash although the chain started before it"
            ),
            Self::HeadMismatch {
                recorded,
                last: None,
            } => write!(
                f,
                "every chained row is missing: the writers' last row was {}",
                recorded.id
            ),
            Self::HeadMismatch {
                recorded,
                last: Some(last),
            } if last.id < recorded.id => write!(
                f,
                "rows after {} are missing: the writers' last row was {}",
                last.id, recorded.id
            ),
            Self::HeadMismatch {
                recorded,
                last: Some(last),
            } if last.id > recorded.id => write!(
                f,
                "rows {}..={} were not written by the gateway: its last row was {}",
                recorded.id.saturating_add(1),
                last.id,
                recorded.id
            ),
            Self::HeadMismatch {
                last: Some(last), ..
            } => write!(
                f,
                "row {} was rewritten together with its row_hash: the writers recorded another",
                last.id
            ),
            Self::HeadMissing { last } => write!(
                f,
                "the recorded head is missing (the last chained row is {})",
                last.id
            ),
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// Rows read.
    pub rows: u64,
    /// Rows before the chain started (written before it existed).
    pub unchained: u64,
    /// The first chained row.
    pub first_chained: Option<i64>,
    /// The last chained row (what an operator may copy elsewhere as an external anchor).
    pub head: Option<Head>,
    /// What is wrong, in row order; the head check last.
    pub problems: Vec<Problem>,
}

impl Verification {
    /// Whether the chain is intact.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Walk `mcp_audit` in id order: recompute each row's hash, check each link and the id
    /// sequence, then compare the last row with the recorded head. Reads as it goes.
    pub async fn verify_audit(&self) -> Result<Verification, StoreError> {
        let mut v = Verification::default();
        let mut last_id: Option<i64> = None;
        // The head first: writers keep extending the chain while the rows are read (other
        // replicas, a live gateway), and rows written after this read are no problem.
        let recorded = self.recorded_head().await?;
        let mut at_recorded: Option<Head> = None;
        let sql = format!(
            "SELECT id, prev_hash, row_hash, {} FROM mcp_audit ORDER BY id",
            column_list()
        );
        on!(self, |pool| {
            let mut rows = sqlx::query(&sql).fetch(pool);
            while let Some(row) = rows.try_next().await? {
                v.rows = v.rows.saturating_add(1);
                let id = row.int("id")?;
                let prev_hash = row.text("prev_hash")?;
                let stored = row.text("row_hash")?;
                let started = v.head.is_some();
                // Ids only grow by one (the writer numbers rows from the head under its lock).
                let gap = last_id
                    .filter(|&last| started && id != last.saturating_add(1))
                    .map(|after| Problem::Gap { after, before: id });
                last_id = Some(id);
                if prev_hash.is_empty() && stored.is_empty() {
                    if started {
                        v.problems.extend(gap);
                        v.problems.push(Problem::Unchained { id });
                    } else {
                        v.unchained = v.unchained.saturating_add(1);
                    }
                    continue;
                }
                v.first_chained.get_or_insert(id);
                let intact = read_cells(&row).is_ok_and(|c| row_hash(&prev_hash, &c) == stored);
                if !intact {
                    v.problems.push(Problem::Edited { id });
                }
                let expected = v.head.as_ref().map_or(GENESIS, |h| h.row_hash.as_str());
                if prev_hash != expected {
                    v.problems.push(Problem::LinkBroken {
                        id,
                        prev: v.head.as_ref().map(|h| h.id),
                    });
                } else if let Some(gap) = gap {
                    // Only without a broken link: a deleted row is one problem, not two.
                    v.problems.push(gap);
                }
                let here = Head {
                    id,
                    row_hash: stored,
                };
                if recorded.as_ref().is_some_and(|r| r.id == id) {
                    at_recorded = Some(here.clone());
                }
                v.head = Some(here);
            }
            Ok::<_, StoreError>(())
        })?;
        match (recorded, &v.head) {
            (None, None) => {}
            // No head before the rows were read: the first rows may have come since.
            (None, Some(last)) => match self.recorded_head().await? {
                Some(now) if now.id > last.id || now == *last => {}
                _ => v.problems.push(Problem::HeadMissing { last: last.clone() }),
            },
            // The row the head named when the reading began must be there, unchanged.
            (Some(recorded), last) if at_recorded.as_ref() != Some(&recorded) => {
                v.problems.push(Problem::HeadMismatch {
                    recorded,
                    last: at_recorded.or_else(|| last.clone()),
                });
            }
            // Rows past the head as it is now were not written by a writer (which moves the
            // head in the same transaction).
            (Some(_), Some(last)) => {
                if let Some(now) = self.recorded_head().await?
                    && last.id > now.id
                {
                    v.problems.push(Problem::HeadMismatch {
                        recorded: now,
                        last: Some(last.clone()),
                    });
                }
            }
            (Some(_), None) => {}
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
