//! Opening the database: Postgres for the scaled deployment, SQLite for the embedded one.
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

use crate::Result;

/// Rows per multi-row INSERT: well under both backends' bound-parameter limits (SQLite's
/// 32,766, Postgres's 65,535) for the widest table written in bulk.
pub const INSERT_CHUNK: usize = 500;
/// Values per `IN (…)` list when a statement names rows by many keys.
pub const IN_LIST_CHUNK: usize = 1000;

/// Connects with settings fit for a server: a bounded pool, and for SQLite WAL mode with a
/// busy timeout so that the ingress and the workers of one process can share the file.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
        });
    Ok(Database::connect(opts).await?)
}

/// One round trip, for health checks.
pub async fn ping(db: &DatabaseConnection) -> Result<()> {
    db.execute_unprepared("SELECT 1").await?;
    Ok(())
}

pub fn is_sqlite(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Sqlite
}

/// A time as Postgres reads it from text (JSON rows), to the microsecond it stores,
/// truncated like a bound parameter.
pub(crate) fn pg_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Begins a transaction that will write. On SQLite it takes the write lock at BEGIN
/// (IMMEDIATE), so concurrent writers wait on the busy timeout instead of failing when a
/// read transaction cannot be upgraded; on Postgres it is an ordinary BEGIN.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    Ok(db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?)
}

/// Locks rows of `table` by id in id order (Postgres; SQLite has one writer at a time), before
/// a batch updates them: an UPDATE of many rows takes its locks in whatever order its plan
/// meets them, so two batches sharing rows could each hold one the other waits for. Taken in
/// one order, they queue instead of deadlocking.
pub async fn lock_in_order(
    txn: &impl ConnectionTrait,
    table: &str,
    ids: impl IntoIterator<Item = i64>,
) -> Result<()> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let mut ids: Vec<i64> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    txn.execute_raw(sea_orm::Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("SELECT 1 FROM {table} WHERE id = ANY($1) ORDER BY id FOR UPDATE"),
        [ids.into()],
    ))
    .await?;
    Ok(())
}

/// For a transaction whose statements all look rows up by key: on Postgres, tells the
/// planner to probe indexes rather than scan. Statistics lag behind a table that grows fast
/// (they may say "a few rows" of a table that holds a million), and a scan chosen on them
/// reads the whole table once per batch. No effect on SQLite.
pub async fn by_key_only(txn: &impl ConnectionTrait) -> Result<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(
            "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)",
        )
        .await?;
    }
    Ok(())
}
