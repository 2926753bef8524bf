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
    for chunk in events.chunks(crate::record::INSERT_CHUNK) {
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
    let ids: Vec<i64> = merged.keys().copied().collect();
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT id FROM conversations WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::bigint) ORDER BY id FOR UPDATE",
        [serde_json::json!(ids).into()],
    ))
    .await?;
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

/// The conversation and a page of its timeline, newest first.
pub async fn conversation_messages(
    db: &impl ConnectionTrait,
    business_id: i64,
    conversation_id: i64,
    filter: crate::types::MessageFilterType,
    page: u64,
    page_size: u64,
) -> Result<Option<(conversation::Model, Vec<message::Model>, u64)>> {
    use crate::types::MessageFilterType as F;
    use sea_orm::PaginatorTrait;
    let Some(found) = conversation::Entity::find()
        .filter(conversation::Column::BusinessId.eq(business_id))
        .filter(conversation::Column::Id.eq(conversation_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
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
    Ok(Some((found, paginator.fetch_page(page - 1).await?, total)))
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

async fn record_conversation_event(
    db: &impl ConnectionTrait,
    c: &conversation::Model,
    kind: &str,
    actor: Option<i64>,
    from: Option<String>,
    to: Option<String>,
) -> Result<()> {
    crate::conversation_event::Entity::insert(crate::conversation_event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        conversation_id: Set(c.id),
        business_id: Set(c.business_id),
        kind: Set(kind.into()),
        actor_staff_id: Set(actor),
        from_value: Set(from),
        to_value: Set(to),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// An internal note in the timeline (`channel: note`): never sent, never unread.
pub async fn add_note(
    db: &sea_orm::DatabaseConnection,
    business_id: i64,
    conversation_id: i64,
    staff_id: i64,
    note: &str,
) -> Result<message::Model> {
    use crate::types::{Direction, MessageStatus, UserType};
    let txn = crate::db::begin_write(db).await?;
    let c = conversation_in(&txn, business_id, conversation_id).await?;
    if crate::staff::Entity::find_by_id((business_id, staff_id))
        .one(&txn)
        .await?
        .is_none()
    {
        return Err(Error::Invalid(format!(
            "staff member {staff_id} is not of this business"
        )));
    }
    let now = Utc::now();
    let row = message::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        business_id: Set(business_id),
        conversation_id: Set(c.id),
        client_id: Set(c.client_id),
        location_id: Set((c.location_key != 0).then_some(c.location_key)),
        channel: Set(Channel::Note.as_str().into()),
        direction: Set(Direction::Outbound.as_str().into()),
        category: Set(None),
        notification_type: Set(None),
        sender_type: Set(UserType::Staff.as_str().into()),
        sent_by: Set(Some(staff_id)),
        staff_id: Set(Some(staff_id)),
        provider: Set(None),
        provider_message_id: Set(None),
        external_id: Set(None),
        request_id: Set(None),
        request_index: Set(None),
        subject: Set(None),
        body: Set(note.to_owned()),
        from_addr: Set(None),
        to_addr: Set(None),
        cc: Set(serde_json::json!([])),
        bcc: Set(serde_json::json!([])),
        attachments: Set(serde_json::json!([])),
        status: Set(MessageStatus::Sent.as_str().into()),
        error_code: Set(None),
        error_message: Set(None),
        is_read: Set(true),
        metadata: Set(serde_json::json!({})),
        sent_at: Set(Some(now)),
        delivered_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let inserted = message::Entity::insert(row)
        .exec_with_returning(&txn)
        .await?;
    touch_conversation(&txn, c.id, inserted.id, now, false, Channel::Note).await?;
    txn.commit().await?;
    Ok(inserted)
}

/// Assigns a conversation (or unassigns it with None); recorded as a conversation event.
pub async fn assign(
    db: &sea_orm::DatabaseConnection,
    business_id: i64,
    conversation_id: i64,
    staff_id: Option<i64>,
    assigned_by: Option<i64>,
) -> Result<()> {
    let txn = crate::db::begin_write(db).await?;
    let c = conversation_in(&txn, business_id, conversation_id).await?;
    if let Some(s) = staff_id
        && crate::staff::Entity::find_by_id((business_id, s))
            .one(&txn)
            .await?
            .is_none()
    {
        return Err(Error::Invalid(format!(
            "staff member {s} is not of this business"
        )));
    }
    conversation::Entity::update_many()
        .col_expr(conversation::Column::AssignedStaffId, Expr::value(staff_id))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(conversation::Column::Id.eq(c.id))
        .exec(&txn)
        .await?;
    let from = c.assigned_staff_id.map(|s| s.to_string());
    record_conversation_event(
        &txn,
        &c,
        "assigned",
        assigned_by,
        from,
        staff_id.map(|s| s.to_string()),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Sets a conversation's status (snoozed until a time, or not); recorded as an event.
pub async fn set_status(
    db: &sea_orm::DatabaseConnection,
    business_id: i64,
    conversation_id: i64,
    status: ClientConversationStatus,
    snoozed_until: Option<DateTime<Utc>>,
    actor: Option<i64>,
) -> Result<()> {
    let txn = crate::db::begin_write(db).await?;
    let c = conversation_in(&txn, business_id, conversation_id).await?;
    let until = if status == ClientConversationStatus::Snoozed {
        snoozed_until
    } else {
        None
    };
    conversation::Entity::update_many()
        .col_expr(conversation::Column::Status, Expr::value(status.as_str()))
        .col_expr(conversation::Column::SnoozedUntil, Expr::value(until))
        .col_expr(conversation::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(conversation::Column::Id.eq(c.id))
        .exec(&txn)
        .await?;
    record_conversation_event(
        &txn,
        &c,
        "status",
        actor,
        Some(c.status.clone()),
        Some(status.as_str().into()),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A conversation's events, oldest first.
pub async fn conversation_events(
    db: &impl ConnectionTrait,
    conversation_id: i64,
) -> Result<Vec<crate::conversation_event::Model>> {
    Ok(crate::conversation_event::Entity::find()
        .filter(crate::conversation_event::Column::ConversationId.eq(conversation_id))
        .order_by_asc(crate::conversation_event::Column::Id)
        .all(db)
        .await?)
}

/// Which messages a read-state change applies to (within one business); at least one is set.
#[derive(Clone, Debug, Default)]
pub struct ReadSelection {
    /// Messages of conversations assigned to this staff member.
    pub staff_id: Option<i64>,
    pub conversation_id: Option<i64>,
    pub client_id: Option<i64>,
    pub message_ids: Option<Vec<i64>>,
    pub channel: Option<Channel>,
    /// Messages created before this time.
    pub before: Option<DateTime<Utc>>,
}

/// Marks inbound messages read or unread and sets the unread counts of their conversations to
/// a recount, in one transaction (so counts never drift or go negative). Returns how many
/// messages changed.
pub async fn set_read(
    db: &sea_orm::DatabaseConnection,
    business_id: i64,
    is_read: bool,
    sel: &ReadSelection,
) -> Result<u64> {
    use sea_orm::{QuerySelect, sea_query::Query};
    let txn = crate::db::begin_write(db).await?;
    let mut q = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::ConversationId)
        .filter(message::Column::BusinessId.eq(business_id))
        .filter(message::Column::Direction.eq("inbound"))
        .filter(message::Column::IsRead.eq(!is_read));
    if let Some(c) = sel.conversation_id {
        q = q.filter(message::Column::ConversationId.eq(c));
    }
    if let Some(c) = sel.client_id {
        q = q.filter(message::Column::ClientId.eq(c));
    }
    if let Some(ids) = &sel.message_ids {
        q = q.filter(message::Column::Id.is_in(ids.clone()));
    }
    if let Some(ch) = sel.channel {
        q = q.filter(message::Column::Channel.eq(ch.as_str()));
    }
    if let Some(t) = sel.before {
        q = q.filter(message::Column::CreatedAt.lt(t));
    }
    if let Some(s) = sel.staff_id {
        q = q.filter(
            message::Column::ConversationId.in_subquery(
                Query::select()
                    .column(conversation::Column::Id)
                    .from(conversation::Entity)
                    .and_where(conversation::Column::BusinessId.eq(business_id))
                    .and_where(conversation::Column::AssignedStaffId.eq(s))
                    .to_owned(),
            ),
        );
    }
    let rows: Vec<(i64, i64)> = q.into_tuple().all(&txn).await?;
    if rows.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut conversations: Vec<i64> = rows.iter().map(|r| r.1).collect();
    conversations.sort_unstable();
    conversations.dedup();
    let mut changed = 0;
    for chunk in ids.chunks(500) {
        changed += message::Entity::update_many()
            .col_expr(message::Column::IsRead, Expr::value(is_read))
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?
            .rows_affected;
    }
    for chunk in conversations.chunks(500) {
        conversation::Entity::update_many()
            .col_expr(
                conversation::Column::UnreadCount,
                Expr::cust(
                    "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = conversations.id \
                     AND m.direction = 'inbound' AND m.is_read = false)",
                ),
            )
            .filter(conversation::Column::Id.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(changed)
}

/// Records a client's consent for a channel: an opt-out with when and why (the first one is
/// kept: a repeated STOP does not move its time), or an opt back in, which clears it.
/// Voice follows SMS (one number, one consent).
pub async fn set_consent(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
    channel: Channel,
    opt_in: bool,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<()> {
    let Some(found) = client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
    else {
        return Err(Error::NotFound(format!("client {client_id}")));
    };
    let mut row: client::ActiveModel = found.clone().into();
    match (channel, opt_in) {
        (Channel::Sms | Channel::Voice, true) => {
            row.sms_opt_in = Set(true);
            row.sms_opted_out_at = Set(None);
            row.sms_opt_out_reason = Set(None);
        }
        (Channel::Sms | Channel::Voice, false) => {
            row.sms_opt_in = Set(false);
            if found.sms_opted_out_at.is_none() {
                row.sms_opted_out_at = Set(Some(at));
                row.sms_opt_out_reason = Set(Some(reason.to_owned()));
            }
        }
        (Channel::Email, true) => {
            row.email_opt_in = Set(true);
            row.email_opted_out_at = Set(None);
            row.email_opt_out_reason = Set(None);
        }
        (Channel::Email, false) => {
            row.email_opt_in = Set(false);
            if found.email_opted_out_at.is_none() {
                row.email_opted_out_at = Set(Some(at));
                row.email_opt_out_reason = Set(Some(reason.to_owned()));
            }
        }
        (Channel::Note, _) => return Ok(()),
    }
    row.updated_at = Set(Utc::now());
    sea_orm::ActiveModelTrait::update(row, db).await?;
    Ok(())
}
