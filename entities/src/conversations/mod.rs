//! Conversation upkeep: one conversation per client and location, found or created
//! race-safely, and kept in step with its messages (last activity, channels, unread count).
//! The list the inbox pages through and its filter counts are in [`list`].
pub mod list;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use crate::types::{Channel, ClientConversationStatus};
use crate::{Error, Result, client, conversation};

/// The one conversation of a client at a location (race-safe: insert-or-ignore, then read).
pub async fn find_or_create_conversation(
    db: &impl ConnectionTrait,
    business_id: i64,
    location_id: Option<i64>,
    client_id: i64,
    at: DateTime<Utc>,
) -> Result<conversation::Model> {
    Ok(conversation_of(db, business_id, location_id, client_id, at)
        .await?
        .0)
}

/// The conversation, and whether this call created it.
async fn conversation_of(
    db: &impl ConnectionTrait,
    business_id: i64,
    location_id: Option<i64>,
    client_id: i64,
    at: DateTime<Utc>,
) -> Result<(conversation::Model, bool)> {
    let location_key = location_id.unwrap_or(0);
    let find = || {
        conversation::Entity::find()
            .filter(conversation::Column::BusinessId.eq(business_id))
            .filter(conversation::Column::LocationKey.eq(location_key))
            .filter(conversation::Column::ClientId.eq(client_id))
    };
    if let Some(found) = find().one(db).await? {
        return Ok((found, false));
    }
    let now = Utc::now();
    let inserted = conversation::Entity::insert(conversation::ActiveModel {
        business_id: Set(business_id),
        location_key: Set(location_key),
        client_id: Set(client_id),
        status: Set(ClientConversationStatus::Open.as_str().into()),
        assigned_staff_id: Set(None),
        unread_count: Set(0),
        last_message_id: Set(None),
        last_activity_at: Set(at),
        snoozed_until: Set(None),
        channels: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            conversation::Column::BusinessId,
            conversation::Column::LocationKey,
            conversation::Column::ClientId,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let created = inserted > 0;
    let found = find()
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("conversation of client {client_id}")))?;
    Ok((found, created))
}

/// What one message does to its conversation.
#[derive(Clone, Copy, Debug)]
pub struct Touch {
    pub conversation_id: i64,
    pub message_id: i64,
    pub at: DateTime<Utc>,
    pub channel: Channel,
    pub inbound: bool,
}

/// Moves one conversation's last activity to a message (if it is the newest), records its
/// channel, and for an inbound message counts it unread and reopens the conversation.
pub async fn touch_conversation(
    db: &impl ConnectionTrait,
    conversation_id: i64,
    message_id: i64,
    at: DateTime<Utc>,
    inbound: bool,
    channel: Channel,
) -> Result<()> {
    touch_conversations(
        db,
        &[Touch {
            conversation_id,
            message_id,
            at,
            channel,
            inbound,
        }],
    )
    .await
}

/// Conversation changes of many messages, merged per conversation (the newest message,
/// every channel, the unread count), applied with the rows locked in id order so that two
/// concurrent batches cannot deadlock. On Postgres this is two statements for any number
/// of conversations.
pub async fn touch_conversations(db: &impl ConnectionTrait, touches: &[Touch]) -> Result<()> {
    use std::collections::BTreeMap;
    // id -> (newest (at, message id), channel bits, inbound count)
    type Merged = ((DateTime<Utc>, i64), i32, i32);
    let mut merged: BTreeMap<i64, Merged> = BTreeMap::new();
    for t in touches {
        let e = merged
            .entry(t.conversation_id)
            .or_insert(((t.at, t.message_id), 0, 0));
        e.0 = e.0.max((t.at, t.message_id));
        e.1 |= t.channel.bit();
        e.2 += i32::from(t.inbound);
    }
    if merged.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    if crate::db::is_sqlite(db) {
        // One writer at a time: statement by statement, in id order.
        for (id, ((at, message_id), channels, unread)) in merged {
            touch_one(db, id, message_id, at, channels, unread, now).await?;
        }
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = merged
        .iter()
        .map(|(id, ((at, message_id), channels, unread))| {
            serde_json::json!({"id": id, "message_id": message_id, "at": at, "channels": channels, "unread": unread})
        })
        .collect();
    crate::db::lock_in_order(db, "conversations", merged.keys().copied()).await?;
    // Every SET reads the row as it was, so the CASEs agree with each other.
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "UPDATE conversations c SET
            channels = c.channels | v.channels,
            last_message_id = CASE WHEN c.last_activity_at <= v.at THEN v.message_id ELSE c.last_message_id END,
            last_activity_at = CASE WHEN c.last_activity_at <= v.at THEN v.at ELSE c.last_activity_at END,
            unread_count = c.unread_count + v.unread,
            status = CASE WHEN v.unread > 0 THEN 'open' ELSE c.status END,
            snoozed_until = CASE WHEN v.unread > 0 THEN NULL ELSE c.snoozed_until END,
            updated_at = CASE WHEN v.unread > 0 THEN $2 ELSE c.updated_at END
         FROM jsonb_to_recordset($1::jsonb) AS v(id bigint, message_id bigint, at timestamptz, channels int, unread int)
         WHERE c.id = v.id",
        [serde_json::Value::Array(rows).into(), now.into()],
    ))
    .await?;
    Ok(())
}

async fn touch_one(
    db: &impl ConnectionTrait,
    conversation_id: i64,
    message_id: i64,
    at: DateTime<Utc>,
    channels: i32,
    unread: i32,
    now: DateTime<Utc>,
) -> Result<()> {
    let newer = Expr::col(conversation::Column::LastActivityAt).lte(at);
    let mut update = conversation::Entity::update_many()
        .col_expr(
            conversation::Column::Channels,
            Expr::col(conversation::Column::Channels).bit_or(channels),
        )
        .col_expr(
            conversation::Column::LastMessageId,
            Expr::case(newer.clone(), message_id)
                .finally(Expr::col(conversation::Column::LastMessageId))
                .into(),
        )
        .col_expr(
            conversation::Column::LastActivityAt,
            Expr::case(newer, at)
                .finally(Expr::col(conversation::Column::LastActivityAt))
                .into(),
        );
    if unread > 0 {
        update = update
            .col_expr(
                conversation::Column::UnreadCount,
                Expr::col(conversation::Column::UnreadCount).add(unread),
            )
            .col_expr(
                conversation::Column::Status,
                Expr::value(ClientConversationStatus::Open.as_str()),
            )
            .col_expr(
                conversation::Column::SnoozedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(conversation::Column::UpdatedAt, Expr::value(now));
    }
    update
        .filter(conversation::Column::Id.eq(conversation_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Creates the conversation of a client at a location, or finds it; true when created.
/// Race-safe: concurrent calls yield one conversation.
pub async fn open_conversation(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
    location_id: Option<i64>,
) -> Result<(conversation::Model, bool)> {
    if client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
        .is_none()
    {
        return Err(Error::NotFound(format!("client {client_id}")));
    }
    if let Some(l) = location_id
        && crate::location::Entity::find_by_id((business_id, l))
            .one(db)
            .await?
            .is_none()
    {
        return Err(Error::NotFound(format!("location {l}")));
    }
    conversation_of(db, business_id, location_id, client_id, Utc::now()).await
}

/// The conversation, if it belongs to the business.
pub async fn conversation_in(
    db: &impl ConnectionTrait,
    business_id: i64,
    conversation_id: i64,
) -> Result<conversation::Model> {
    conversation::Entity::find()
        .filter(conversation::Column::BusinessId.eq(business_id))
        .filter(conversation::Column::Id.eq(conversation_id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("conversation {conversation_id}")))
}
