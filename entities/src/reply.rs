//! A staff member's answer from the inbox: the send job of a reply in a conversation, by SMS
//! from the location's number or by email from the location's address, threaded under the
//! client's last email. It goes through the normal send path (consent checked at send time).
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::conversations::conversation_in;
use crate::outbound::SendJob;
use crate::record::{RecordBatch, RecordItem};
use crate::types::{Channel, Direction, MessageCategory, MessageStatus, UserType};
use crate::{Error, Result, client, location, message};

/// What the staff member wrote, and when it should go.
#[derive(Clone, Debug)]
pub struct Reply {
    pub staff_id: i64,
    pub channel: Channel,
    pub message: String,
    /// Email only; default: "Re: " and the subject of the conversation's latest email.
    pub subject: Option<String>,
    /// `scheduled` with its time, or `queued`.
    pub status: MessageStatus,
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// The send job of a reply (`request_id` is the request's); 404 for a conversation of
/// another business, 422 for a staff member of another or a client without the address.
pub async fn compose(
    db: &impl ConnectionTrait,
    business_id: i64,
    conversation_id: i64,
    reply: &Reply,
    request_id: &str,
) -> Result<SendJob> {
    let conversation = conversation_in(db, business_id, conversation_id).await?;
    crate::inbox::require_staff(db, business_id, reply.staff_id).await?;
    let client = client::Entity::find_by_id((business_id, conversation.client_id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("client {}", conversation.client_id)))?;
    let location_id = (conversation.location_key != 0).then_some(conversation.location_key);
    let (to, from, subject, thread) = match reply.channel {
        Channel::Sms => {
            let to = client
                .phone
                .ok_or_else(|| Error::Invalid("the client has no phone number".into()))?;
            // The worker sends from the location's number.
            (to, None, None, None)
        }
        Channel::Email => {
            let to = client
                .email
                .ok_or_else(|| Error::Invalid("the client has no email address".into()))?;
            let subject = match &reply.subject {
                Some(s) => s.clone(),
                None => last_subject(db, business_id, conversation_id)
                    .await?
                    .map(|s| {
                        if s.to_ascii_lowercase().starts_with("re:") {
                            s
                        } else {
                            format!("Re: {s}")
                        }
                    })
                    .unwrap_or_else(|| "Re: your message".into()),
            };
            let thread = crate::inbound_email::thread_of(db, business_id, conversation_id).await?;
            // From the location's address (the worker falls back to the account's own).
            let from = match location_id {
                Some(l) => location::Entity::find_by_id((business_id, l))
                    .one(db)
                    .await?
                    .and_then(|p| p.email),
                None => None,
            };
            (to, from, Some(subject), thread)
        }
        other => {
            return Err(Error::Invalid(format!(
                "a reply goes by sms or email, not {other}"
            )));
        }
    };
    let batch = RecordBatch {
        business_id,
        request_id: request_id.to_owned(),
        channel: reply.channel,
        direction: Direction::Outbound,
        category: Some(MessageCategory::Conversation),
        notification_type: None,
        staff_id: Some(reply.staff_id),
        provider: None,
        sent_by: Some(reply.staff_id),
        sender_type: UserType::Staff,
        sent_at: None,
        location_id,
        items: vec![RecordItem {
            message_id: None,
            client_id: client.id,
            wl_user_id: None,
            from,
            to,
            subject,
            body: reply.message.clone(),
            cc: vec![],
            bcc: vec![],
            attachments: serde_json::json!([]),
            status: reply.status,
            provider_message_id: None,
            // Kept so that a retry threads the same way.
            metadata: serde_json::json!({"thread": thread}),
            scheduled_at: reply.scheduled_at,
        }],
    };
    Ok(SendJob {
        batch,
        index: 0,
        media_urls: vec![],
        html: None,
        from_name: None,
        reply_to: None,
        thread,
    })
}

/// The subject of the conversation's latest email, either way.
async fn last_subject(
    db: &impl ConnectionTrait,
    business_id: i64,
    conversation_id: i64,
) -> Result<Option<String>> {
    Ok(message::Entity::find()
        .filter(message::Column::BusinessId.eq(business_id))
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::Channel.eq(Channel::Email.as_str()))
        .order_by_desc(message::Column::Id)
        .one(db)
        .await?
        .and_then(|m| m.subject))
}
