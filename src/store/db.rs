//! What the two backends share: the pool handle ([`Db`]), the dispatch macro [`on!`] that runs
//! one query body against whichever pool is open, a row reader ([`StoreRow`]) and the stored
//! time ([`Ts`]). Queries are written once, with `$1`-style parameters, which both SQLite and
//! PostgreSQL accept; only migrations, the chained audit insert and write locks differ.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgRow, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteRow, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, PgPool, Postgres, Row as _, Sqlite, SqlitePool, Transaction, Type};
use time::OffsetDateTime;

use super::StoreError;
use super::sqlite::{fmt_time, parse_time};

/// The open database.
#[derive(Debug, Clone)]
pub enum Db {
    /// The embedded file (the default).
    Sqlite(SqlitePool),
    /// A shared server (several replicas).
    Postgres(PgPool),
}

/// Run `$body` with `$pool` bound to the open pool, whichever backend it is; the body is
/// compiled once per backend, so it may use backend-generic sqlx calls only.
macro_rules! on {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::db::Db::Sqlite($pool) => $body,
            $crate::store::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on;

/// A stored instant. SQLite keeps fixed-width UTC text (text order is time order, see
/// `fmt_time`); PostgreSQL a `TIMESTAMPTZ`, so operators' queries can use `NOW()` and
/// intervals. Both keep microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ts(pub OffsetDateTime);

impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, Sqlite>>::encode(fmt_time(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as Decode<'r, Sqlite>>::decode(value)?;
        Ok(Self(parse_time(s)?))
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<'_, Postgres>>::encode_by_ref(&super::sqlite::micros(self.0), buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let t = <OffsetDateTime as Decode<'r, Postgres>>::decode(value)?;
        Ok(Self(t.to_offset(time::UtcOffset::UTC)))
    }
}

/// Reading a column of a row from either backend.
pub trait StoreRow {
    /// A text column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A floating-point column.
    fn float(&self, column: &str) -> Result<f64, StoreError>;
    /// A time column.
    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError>;
    /// A nullable time column.
    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError>;
}

macro_rules! store_row {
    ($row:ty) => {
        impl StoreRow for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn float(&self, column: &str) -> Result<f64, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
                Ok(self.try_get::<Ts, _>(column)?.0)
            }
            fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
                Ok(self.try_get::<Option<Ts>, _>(column)?.map(|t| t.0))
            }
        }
    };
}
store_row!(SqliteRow);
store_row!(PgRow);

/// PostgreSQL advisory lock key that serialises the store's read-then-write transactions
/// (the audit chain head, migrations) across every replica; SQLite's `BEGIN IMMEDIATE` does
/// the same for one file.
const WRITE_LOCK: i64 = 0x7761_7264_656e; // "warden"

/// A transaction that holds the store's write lock until it ends.
pub trait BeginWrite {
    /// The backend.
    type Db: sqlx::Database;
    /// Begin it.
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}
