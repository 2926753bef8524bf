//! A message's status history: the event rows every writer appends (recording, sending,
//! status reports, calls) and the history as the inbox reads it.
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::{Result, message_event};

/// Appends one entry to a message's status history.
pub async fn append_event(
    db: &impl ConnectionTrait,
    message_id: i64,
    status: crate::types::MessageStatus,
    error: Option<(Option<String>, Option<String>)>,
    source: &str,
    occurred_at: DateTime<Utc>,
) -> Result<()> {
    message_event::Entity::insert(event_row(
        message_id,
        status,
        error,
        source,
        occurred_at,
        Utc::now(),
    ))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Appends many history entries, in their order.
pub(crate) async fn insert_events(
    db: &impl ConnectionTrait,
    events: Vec<message_event::ActiveModel>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    if crate::db::is_sqlite(db) {
        for chunk in events.chunks(crate::db::INSERT_CHUNK) {
            message_event::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(db)
                .await?;
        }
        return Ok(());
    }
    db.execute_raw(pg_insert(&events, "")).await?;
    Ok(())
}

/// Appends the history entries whose dedupe key (or any unique key) is not recorded yet, in
/// their order; answers the dedupe keys of those inserted.
pub(crate) async fn insert_new_events(
    db: &impl ConnectionTrait,
    events: Vec<message_event::ActiveModel>,
) -> Result<Vec<String>> {
    use sea_orm::sea_query::OnConflict;
    use sea_orm::{FromQueryResult, TryInsertResult};
    if events.is_empty() {
        return Ok(vec![]);
    }
    if crate::db::is_sqlite(db) {
        let mut fresh = Vec::with_capacity(events.len());
        for chunk in events.chunks(crate::db::INSERT_CHUNK) {
            if let TryInsertResult::Inserted(rows) =
                message_event::Entity::insert_many(chunk.to_vec())
                    .on_conflict(OnConflict::new().do_nothing().to_owned())
                    .try_insert()
                    .exec_with_returning_many(db)
                    .await?
            {
                fresh.extend(rows.into_iter().filter_map(|e| e.dedupe_key));
            }
        }
        return Ok(fresh);
    }
    #[derive(FromQueryResult)]
    struct Key {
        dedupe_key: Option<String>,
    }
    let rows = Key::find_by_statement(pg_insert(
        &events,
        " ON CONFLICT DO NOTHING RETURNING dedupe_key",
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().filter_map(|k| k.dedupe_key).collect())
}

/// One INSERT of all the entries on Postgres, the rows passed as one JSON array: its text is
/// the same for any number of rows, so each connection prepares and plans it once, where a
/// multi-row VALUES list is a new statement (parsed, planned, and crowding the statement
/// cache) for every batch size.
fn pg_insert(events: &[message_event::ActiveModel], tail: &str) -> sea_orm::Statement {
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            // A field left unset is NULL, which the table refuses where it must not be.
            serde_json::json!({
                "message_id": e.message_id.try_as_ref(),
                "status": e.status.try_as_ref(),
                "error_code": e.error_code.try_as_ref(),
                "error_message": e.error_message.try_as_ref(),
                "source": e.source.try_as_ref(),
                "dedupe_key": e.dedupe_key.try_as_ref(),
                "occurred_at": e.occurred_at.try_as_ref().map(|t| crate::db::pg_timestamp(*t)),
                "created_at": e.created_at.try_as_ref().map(|t| crate::db::pg_timestamp(*t)),
            })
        })
        .collect();
    sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        format!(
            "INSERT INTO message_events \
               (message_id, status, error_code, error_message, source, dedupe_key, occurred_at, created_at) \
             SELECT message_id, status, error_code, error_message, source, dedupe_key, occurred_at, created_at \
             FROM jsonb_to_recordset($1::jsonb) AS v(message_id bigint, status text, error_code text, \
               error_message text, source text, dedupe_key text, occurred_at timestamptz, created_at timestamptz){tail}"
        ),
        [serde_json::Value::Array(rows).into()],
    )
}

/// One entry of a message's status history, to insert.
pub fn event_row(
    message_id: i64,
    status: crate::types::MessageStatus,
    error: Option<(Option<String>, Option<String>)>,
    source: &str,
    occurred_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> message_event::ActiveModel {
    let (error_code, error_message) = error.unwrap_or((None, None));
    message_event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        message_id: Set(message_id),
        status: Set(status.as_str().into()),
        error_code: Set(error_code),
        error_message: Set(error_message),
        source: Set(source.into()),
        dedupe_key: Set(None),
        occurred_at: Set(occurred_at),
        created_at: Set(now),
    }
}

/// A message's status history, oldest first.
pub async fn message_events(
    db: &impl ConnectionTrait,
    message_id: i64,
) -> Result<Vec<message_event::Model>> {
    Ok(message_event::Entity::find()
        .filter(message_event::Column::MessageId.eq(message_id))
        .order_by_asc(message_event::Column::OccurredAt)
        .order_by_asc(message_event::Column::Id)
        .all(db)
        .await?)
}
