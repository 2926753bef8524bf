//! Reading messages: a conversation's timeline and the messages of one request.
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::query::{Page, Paging};
use crate::{Result, conversation, message};

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

/// The conversation and a page of its timeline, newest first.
pub async fn conversation_messages(
    db: &impl ConnectionTrait,
    business_id: i64,
    conversation_id: i64,
    filter: crate::types::MessageFilterType,
    paging: Paging,
) -> Result<Option<(conversation::Model, Page<message::Model>)>> {
    use crate::types::MessageFilterType as F;
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
    let page = paging
        .fetch(
            db,
            q.order_by_desc(message::Column::CreatedAt)
                .order_by_desc(message::Column::Id),
        )
        .await?;
    Ok(Some((found, page)))
}
