//! The relay's place in the event log: events after it have not yet been handed on (to
//! webhook delivery jobs and to the streams' wake-up). One relay runs at a time: on Postgres
//! a round holds a transaction-scoped advisory lock, and a process that cannot take it
//! leaves the round to the one that did; SQLite has one process.
use sea_orm::{ConnectionTrait, EntityTrait, Set, Statement};

use crate::event_log::EventId;
use crate::{Error, Result, relay_position};

/// The advisory lock's key (an arbitrary constant: "omega relay").
const LOCK: i64 = 0x6f6d_6567_6172_6c79;
const ROW: i32 = 1;

/// Takes the relay for the caller's transaction; false when another process has it.
pub async fn claim(txn: &impl ConnectionTrait) -> Result<bool> {
    if crate::db::is_sqlite(txn) {
        return Ok(true);
    }
    let row = txn
        .query_one_raw(Statement::from_string(
            txn.get_database_backend(),
            format!("SELECT pg_try_advisory_xact_lock({LOCK}) AS claimed"),
        ))
        .await?
        .ok_or_else(|| Error::Corrupt("pg_try_advisory_xact_lock answered nothing".into()))?;
    Ok(row.try_get::<bool>("", "claimed")?)
}

/// Where the relay stands (the migration writes the row).
pub async fn cursor(db: &impl ConnectionTrait) -> Result<EventId> {
    let row = relay_position::Entity::find_by_id(ROW)
        .one(db)
        .await?
        .ok_or_else(|| Error::Corrupt("the event relay's row is missing".into()))?;
    Ok(EventId {
        txid: row.after_txid,
        seq: row.after_seq,
    })
}

/// Moves the relay past `to`.
pub async fn advance(db: &impl ConnectionTrait, to: EventId) -> Result<()> {
    relay_position::Entity::update(relay_position::ActiveModel {
        id: Set(ROW),
        after_txid: Set(to.txid),
        after_seq: Set(to.seq),
    })
    .exec(db)
    .await?;
    Ok(())
}
