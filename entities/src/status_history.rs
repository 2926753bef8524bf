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

/// Appends many history entries, with multi-row INSERTs.
pub(crate) async fn insert_events(
    db: &impl ConnectionTrait,
    events: Vec<message_event::ActiveModel>,
) -> Result<()> {
    for chunk in events.chunks(crate::db::INSERT_CHUNK) {
        message_event::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
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
