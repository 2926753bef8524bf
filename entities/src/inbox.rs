//! Inbox queries and the small commands that keep conversations in step with messages.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use crate::types::{Channel, ClientConversationStatus, ClientType};
use crate::{Error, Result, client, conversation, message, message_event};

/// A client omega creates itself (not onboarded by the platform): no name, consent not
/// withdrawn.
pub fn new_client(
    business_id: i64,
    id: i64,
    client_type: ClientType,
    phone: Option<String>,
    email: Option<String>,
    location_id: Option<i64>,
) -> client::ActiveModel {
    let now = Utc::now();
    client::ActiveModel {
        business_id: Set(business_id),
        id: Set(id),
        first_name: Set(None),
        last_name: Set(None),
        email: Set(email),
        phone: Set(phone),
        client_type: Set(client_type.as_str().into()),
        location_id: Set(location_id),
        sms_opt_in: Set(true),
        sms_opted_out_at: Set(None),
        sms_opt_out_reason: Set(None),
        email_opt_in: Set(true),
        email_opted_out_at: Set(None),
        email_opt_out_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Appends one entry to a message's status history.
pub async fn append_event(
    db: &impl ConnectionTrait,
    message_id: i64,
    status: crate::types::MessageStatus,
    error: Option<(Option<String>, Option<String>)>,
    source: &str,
    occurred_at: DateTime<Utc>,
) -> Result<()> {
    let (error_code, error_message) = error.unwrap_or((None, None));
    message_event::Entity::insert(message_event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        message_id: Set(message_id),
        status: Set(status.as_str().into()),
        error_code: Set(error_code),
        error_message: Set(error_message),
        source: Set(source.into()),
        dedupe_key: Set(None),
        occurred_at: Set(occurred_at),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The strings of a JSON array (cc, bcc lists); anything else is empty.
pub fn json_strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The client row, created (as a plain `client`, consent as yet unrecorded) when the platform
/// has not onboarded it yet, so that a recorded message is never refused for it.
pub async fn ensure_client(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
    channel: Channel,
    address: Option<&str>,
) -> Result<client::Model> {
    if let Some(found) = client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
    {
        return Ok(found);
    }
    let (phone, email) = match channel {
        Channel::Sms | Channel::Voice => (address.map(str::to_owned), None),
        Channel::Email => (None, address.map(str::to_owned)),
        Channel::Note => (None, None),
    };
    client::Entity::insert(new_client(
        business_id,
        client_id,
        ClientType::Client,
        phone,
        email,
        None,
    ))
    .on_conflict_do_nothing()
    .exec_without_returning(db)
    .await?;
    client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("client {client_id}")))
}

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

/// Moves a conversation's last activity forward to a new message; an inbound message also
/// counts as unread and reopens a resolved or snoozed conversation.
pub async fn touch_conversation(
    db: &impl ConnectionTrait,
    conversation_id: i64,
    message_id: i64,
    at: DateTime<Utc>,
    inbound: bool,
) -> Result<()> {
    conversation::Entity::update_many()
        .col_expr(conversation::Column::LastMessageId, Expr::value(message_id))
        .col_expr(conversation::Column::LastActivityAt, Expr::value(at))
        .filter(conversation::Column::Id.eq(conversation_id))
        .filter(conversation::Column::LastActivityAt.lte(at))
        .exec(db)
        .await?;
    if inbound {
        conversation::Entity::update_many()
            .col_expr(
                conversation::Column::UnreadCount,
                Expr::col(conversation::Column::UnreadCount).add(1),
            )
            .col_expr(
                conversation::Column::Status,
                Expr::value(ClientConversationStatus::Open.as_str()),
            )
            .col_expr(
                conversation::Column::SnoozedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(conversation::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(conversation::Column::Id.eq(conversation_id))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// The messages a send or record request created, in request order.
pub async fn messages_by_request(
    db: &impl ConnectionTrait,
    business_id: Option<i64>,
    request_id: &str,
) -> Result<Vec<message::Model>> {
    let mut q = message::Entity::find().filter(message::Column::RequestId.eq(request_id));
    if let Some(b) = business_id {
        q = q.filter(message::Column::BusinessId.eq(b));
    }
    Ok(q.order_by_asc(message::Column::BusinessId)
        .order_by_asc(message::Column::RequestIndex)
        .all(db)
        .await?)
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

/// A page of a conversation's timeline, newest first.
pub async fn conversation_messages(
    db: &impl ConnectionTrait,
    business_id: i64,
    conversation_id: i64,
    filter: crate::types::MessageFilterType,
    page: u64,
    page_size: u64,
) -> Result<Option<(Vec<message::Model>, u64)>> {
    use crate::types::MessageFilterType as F;
    use sea_orm::PaginatorTrait;
    let exists = conversation::Entity::find()
        .filter(conversation::Column::BusinessId.eq(business_id))
        .filter(conversation::Column::Id.eq(conversation_id))
        .one(db)
        .await?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let mut q = message::Entity::find()
        .filter(message::Column::BusinessId.eq(business_id))
        .filter(message::Column::ConversationId.eq(conversation_id));
    q = match filter {
        F::All => q,
        F::Unread => q.filter(message::Column::IsRead.eq(false)),
        F::Sms => q.filter(message::Column::Channel.eq("sms")),
        F::Email => q.filter(message::Column::Channel.eq("email")),
        F::Voice => q.filter(message::Column::Channel.eq("voice")),
        F::Notes => q.filter(message::Column::Channel.eq("note")),
        F::Failed => q.filter(message::Column::Status.eq("failed")),
        F::Inbound => q.filter(message::Column::Direction.eq("inbound")),
        F::Outbound => q.filter(message::Column::Direction.eq("outbound")),
    };
    let paginator = q
        .order_by_desc(message::Column::CreatedAt)
        .order_by_desc(message::Column::Id)
        .paginate(db, page_size);
    let total = paginator.num_items().await?;
    Ok(Some((paginator.fetch_page(page - 1).await?, total)))
}
