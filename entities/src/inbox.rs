//! The staff's inbox commands, each one transaction: internal notes, assignment,
//! conversation status, read state; and the conversation events they leave.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, sea_query::Expr,
};

use crate::conversations::{conversation_in, touch_conversation};
use crate::db::IN_LIST_CHUNK;
use crate::event_log::{EventType, NewEvent};
use crate::types::{Channel, ClientConversationStatus};
use crate::{Error, Result, conversation, message};

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
        from_value: Set(from.clone()),
        to_value: Set(to.clone()),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    // The same change in the business's event log.
    let (event_type, was, now_is) = match kind {
        "assigned" => (
            EventType::ConversationAssigned,
            "previous_staff_id",
            "staff_id",
        ),
        _ => (
            EventType::ConversationStatusUpdated,
            "previous_status",
            "status",
        ),
    };
    let number = |v: &Option<String>| match v.as_deref().map(str::parse::<i64>) {
        Some(Ok(n)) => serde_json::json!(n),
        _ => serde_json::json!(v),
    };
    let (was_value, now_value) = if event_type == EventType::ConversationAssigned {
        (number(&from), number(&to))
    } else {
        (serde_json::json!(from), serde_json::json!(to))
    };
    let data = serde_json::json!({
        "conversation_id": c.id,
        "client_id": c.client_id,
        "location_id": (c.location_key != 0).then_some(c.location_key),
        was: was_value,
        now_is: now_value,
        "actor_staff_id": actor,
    });
    crate::event_log::append(
        db,
        vec![NewEvent::new(c.business_id, event_type, data)],
        Utc::now(),
    )
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
    require_staff(&txn, business_id, staff_id).await?;
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
        scheduled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let inserted = message::Entity::insert(row)
        .exec_with_returning(&txn)
        .await?;
    touch_conversation(&txn, c.id, inserted.id, now, false, Channel::Note).await?;
    let note = crate::event_log::message_data(inserted.clone())?;
    let data = serde_json::json!({"conversation_id": c.id, "client_id": c.client_id, "note": note});
    crate::event_log::append(
        &txn,
        vec![NewEvent::new(
            business_id,
            EventType::ConversationNoteAdded,
            data,
        )],
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(inserted)
}

/// 422 unless the staff member is the business's (who a note, an assignment or a reply
/// names).
pub(crate) async fn require_staff(
    db: &impl sea_orm::ConnectionTrait,
    business_id: i64,
    staff_id: i64,
) -> Result<()> {
    if crate::staff::Entity::find_by_id((business_id, staff_id))
        .one(db)
        .await?
        .is_none()
    {
        return Err(Error::Invalid(format!(
            "staff member {staff_id} is not of this business"
        )));
    }
    Ok(())
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
    if let Some(s) = staff_id {
        require_staff(&txn, business_id, s).await?;
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
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        changed += message::Entity::update_many()
            .col_expr(message::Column::IsRead, Expr::value(is_read))
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?
            .rows_affected;
    }
    for chunk in conversations.chunks(IN_LIST_CHUNK) {
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
