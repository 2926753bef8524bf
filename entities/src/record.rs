//! Recording messages: each into its client's conversation, with a first status event.
//! Idempotent: a message already recorded (same request slot, caller id or provider id) is
//! skipped, so a job that runs twice records nothing twice.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, Set, TryInsertResult,
};
use serde::{Deserialize, Serialize};

use crate::inbox::{ensure_client, find_or_create_conversation, touch_conversation};
use crate::types::{
    Channel, Direction, MessageCategory, MessageStatus, NotificationType, Provider, UserType,
};
use crate::{Result, message};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordBatch {
    pub business_id: i64,
    pub request_id: String,
    pub channel: Channel,
    pub direction: Direction,
    pub category: Option<MessageCategory>,
    pub notification_type: Option<NotificationType>,
    pub staff_id: Option<i64>,
    pub provider: Option<Provider>,
    pub sent_by: Option<i64>,
    pub sender_type: UserType,
    pub sent_at: Option<DateTime<Utc>>,
    pub location_id: Option<i64>,
    pub items: Vec<RecordItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordItem {
    pub message_id: Option<i64>,
    pub client_id: i64,
    pub wl_user_id: Option<i64>,
    pub from: Option<String>,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub attachments: serde_json::Value,
    pub status: MessageStatus,
    pub provider_message_id: Option<String>,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    pub recorded: usize,
    pub duplicates: usize,
}

/// Records the whole batch in one transaction.
pub async fn record_batch(db: &DatabaseConnection, batch: &RecordBatch) -> Result<RecordOutcome> {
    let txn = crate::db::begin_write(db).await?;
    let mut outcome = RecordOutcome::default();
    let now = Utc::now();
    for (index, item) in batch.items.iter().enumerate() {
        if record_one(&txn, batch, index as i32, item, now).await? {
            outcome.recorded += 1;
        } else {
            outcome.duplicates += 1;
        }
    }
    txn.commit().await?;
    Ok(outcome)
}

/// Records one message at position `index` of its request (or finds it, when a run before
/// recorded it) and returns its row. The send path's first step.
pub async fn record_at(
    db: &DatabaseConnection,
    batch: &RecordBatch,
    index: i32,
    item: &RecordItem,
) -> Result<message::Model> {
    let txn = crate::db::begin_write(db).await?;
    record_one(&txn, batch, index, item, Utc::now()).await?;
    let row = message::Entity::find()
        .filter(message::Column::RequestId.eq(batch.request_id.as_str()))
        .filter(message::Column::RequestIndex.eq(index))
        .one(&txn)
        .await?;
    txn.commit().await?;
    match row {
        Some(row) => Ok(row),
        // The caller's message id was recorded by another request: that row is the message.
        None => {
            let existing = match item.message_id {
                Some(ext) => {
                    message::Entity::find()
                        .filter(message::Column::BusinessId.eq(batch.business_id))
                        .filter(message::Column::Channel.eq(batch.channel.as_str()))
                        .filter(message::Column::ExternalId.eq(ext))
                        .one(db)
                        .await?
                }
                None => None,
            };
            existing.ok_or_else(|| {
                crate::Error::NotFound(format!("message {index} of request {}", batch.request_id))
            })
        }
    }
}

pub(crate) async fn record_one(
    db: &impl ConnectionTrait,
    batch: &RecordBatch,
    index: i32,
    item: &RecordItem,
    now: DateTime<Utc>,
) -> Result<bool> {
    let inbound = batch.direction == Direction::Inbound;
    // The client's own address: where an outbound message went, where an inbound one came from.
    let client_address = if inbound {
        item.from.as_deref()
    } else {
        Some(item.to.as_str())
    };
    let client = ensure_client(
        db,
        batch.business_id,
        item.client_id,
        batch.channel,
        client_address,
    )
    .await?;
    let location_id = batch.location_id.or(client.location_id);
    let at = batch.sent_at.unwrap_or(now);
    let conversation =
        find_or_create_conversation(db, batch.business_id, location_id, client.id, at).await?;

    let mut metadata = item.metadata.clone();
    if let Some(wl) = item.wl_user_id {
        if let Some(obj) = metadata.as_object_mut() {
            obj.insert("wl_user_id".into(), wl.into());
        } else {
            metadata = serde_json::json!({ "wl_user_id": wl });
        }
    }
    let row = message::ActiveModel {
        id: NotSet,
        business_id: Set(batch.business_id),
        conversation_id: Set(conversation.id),
        client_id: Set(client.id),
        location_id: Set(location_id),
        channel: Set(batch.channel.as_str().into()),
        direction: Set(batch.direction.as_str().into()),
        category: Set(batch.category.map(|c| c.as_str().into())),
        notification_type: Set(batch.notification_type.map(|n| n.as_str().into())),
        sender_type: Set(batch.sender_type.as_str().into()),
        sent_by: Set(batch.sent_by),
        staff_id: Set(batch.staff_id),
        provider: Set(batch.provider.map(|p| p.as_str().into())),
        provider_message_id: Set(item.provider_message_id.clone()),
        external_id: Set(item.message_id),
        request_id: Set(Some(batch.request_id.clone())),
        request_index: Set(Some(index)),
        subject: Set(item.subject.clone()),
        body: Set(item.body.clone()),
        from_addr: Set(item.from.clone()),
        to_addr: Set(Some(item.to.clone())),
        cc: Set(serde_json::json!(item.cc)),
        bcc: Set(serde_json::json!(item.bcc)),
        attachments: Set(if item.attachments.is_null() {
            serde_json::json!([])
        } else {
            item.attachments.clone()
        }),
        status: Set(item.status.as_str().into()),
        error_code: Set(None),
        error_message: Set(None),
        is_read: Set(!inbound),
        metadata: Set(if metadata.is_null() {
            serde_json::json!({})
        } else {
            metadata
        }),
        sent_at: Set(batch.sent_at),
        delivered_at: Set((item.status == MessageStatus::Delivered).then_some(at)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    // Any of the message's unique keys (request slot, caller id, provider id) may already hold
    // it: a conflict on any of them means "recorded before", hence no conflict target.
    let message_id = match message::Entity::insert(row)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .try_insert()
        .exec(db)
        .await?
    {
        TryInsertResult::Inserted(res) => res.last_insert_id,
        TryInsertResult::Conflicted | TryInsertResult::Empty => return Ok(false),
    };
    crate::inbox::append_event(db, message_id, item.status, None, "record", at).await?;
    touch_conversation(db, conversation.id, message_id, at, inbound, batch.channel).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{DbBackend, QueryTrait};

    #[test]
    fn message_insert_ignores_every_conflict() {
        let row = message::ActiveModel {
            id: NotSet,
            business_id: Set(1),
            ..Default::default()
        };
        let sql = message::Entity::insert(row)
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .build(DbBackend::Sqlite)
            .to_string();
        assert!(
            sql.ends_with("ON CONFLICT  DO NOTHING"),
            "no conflict target: {sql}"
        );
    }
}
