//! The answer to a HELP text: the business's help text, sent back from the number the client
//! wrote to, recorded as an outbound `system` message in the conversation, at most once per
//! number per 24 hours (carriers require an answer; a loop of answers helps no one).
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::outbound::SendJob;
use crate::record::{RecordBatch, RecordItem, record_one};
use crate::settings::MessagingSettings;
use crate::types::{Channel, Direction, MessageCategory, MessageStatus, UserType};
use crate::{Result, business, message};

/// One answer per number per this long.
pub const ANSWER_EVERY: Duration = Duration::hours(24);

/// Answers' request ids start with this (a producer's request id is a UUID).
const REQUEST_PREFIX: &str = "help:";

/// Whether a send is the answer to a HELP text. Carriers (CTIA) require HELP to be answered
/// whatever the number's opt-in status, so consent does not hold it back; nothing else is
/// exempt.
pub fn is_answer(batch: &RecordBatch) -> bool {
    batch.sender_type == UserType::System
        && batch.category == Some(MessageCategory::System)
        && batch.request_id.starts_with(REQUEST_PREFIX)
}

/// The help text that asked, as the answer needs it.
pub struct Asked<'a> {
    pub business_id: i64,
    pub location_id: i64,
    pub client_id: i64,
    /// The provider's id of the text: the answer's request is named after it, so a re-run
    /// finds the answer instead of making another.
    pub message_sid: &'a str,
    /// The client's number, and the business's number it wrote to.
    pub from: &'a str,
    pub to: &'a str,
}

/// Records the answer (in the caller's transaction) and gives the send job that delivers it;
/// None when the number was answered within the last 24 hours.
pub async fn answer(
    txn: &impl ConnectionTrait,
    asked: &Asked<'_>,
    settings: &MessagingSettings,
    now: DateTime<Utc>,
) -> Result<Option<SendJob>> {
    let request_id = format!("{REQUEST_PREFIX}{}", asked.message_sid);
    let made = message::Entity::find()
        .filter(message::Column::BusinessId.eq(asked.business_id))
        .filter(message::Column::RequestId.eq(request_id.as_str()))
        .count(txn)
        .await?
        > 0;
    if !made {
        let recent = message::Entity::find()
            .filter(message::Column::BusinessId.eq(asked.business_id))
            .filter(message::Column::Channel.eq(Channel::Sms.as_str()))
            .filter(message::Column::Direction.eq(Direction::Outbound.as_str()))
            .filter(message::Column::ToAddr.eq(asked.from))
            .filter(message::Column::RequestId.starts_with(REQUEST_PREFIX))
            .filter(message::Column::CreatedAt.gte(now - ANSWER_EVERY))
            .count(txn)
            .await?;
        if recent > 0 {
            return Ok(None);
        }
    }
    let name = business::Entity::find_by_id(asked.business_id)
        .one(txn)
        .await?
        .map(|b| b.name)
        .unwrap_or_default();
    let item = RecordItem {
        message_id: None,
        client_id: asked.client_id,
        wl_user_id: None,
        from: Some(asked.to.to_owned()),
        to: asked.from.to_owned(),
        subject: None,
        body: settings.help_answer(&name),
        cc: vec![],
        bcc: vec![],
        attachments: serde_json::json!([]),
        status: MessageStatus::Queued,
        provider_message_id: None,
        metadata: serde_json::json!({}),
        scheduled_at: None,
    };
    let batch = RecordBatch {
        business_id: asked.business_id,
        request_id,
        channel: Channel::Sms,
        direction: Direction::Outbound,
        category: Some(MessageCategory::System),
        notification_type: None,
        staff_id: None,
        provider: None,
        sent_by: None,
        sender_type: UserType::System,
        sent_at: None,
        location_id: Some(asked.location_id),
        items: vec![item],
    };
    if !made {
        record_one(txn, &batch, 0, &batch.items[0], now).await?;
    }
    Ok(Some(SendJob {
        batch,
        index: 0,
        media_urls: vec![],
        html: None,
        from_name: None,
        reply_to: None,
        thread: None,
    }))
}
