//! A message as clients see it: the API's `MessageItem`, and the `data` of message events
//! (written with the change, so it is built here, from the row).
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::types::{
    Channel, Direction, MessageCategory, MessageStatus, NotificationType, Provider, UserType,
};
use crate::{message, message_event};

/// One entry of a message's status history.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct MessageEvent {
    pub status: MessageStatus,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub error_code: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub error_message: Option<String>,
    /// Who reported it: record, api, provider, worker.
    pub source: String,
    pub occurred_at: DateTime<Utc>,
}

/// A message of any channel, as a client sees it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct MessageItem {
    pub id: i64,
    pub conversation_id: i64,
    pub client_id: i64,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub location_id: Option<i64>,
    pub channel: Channel,
    pub direction: Direction,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub category: Option<MessageCategory>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub notification_type: Option<NotificationType>,
    pub sender_type: UserType,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub sent_by: Option<i64>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub staff_id: Option<i64>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub provider: Option<Provider>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub provider_message_id: Option<String>,
    /// The caller's own id for the message.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub message_id: Option<i64>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub request_id: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub subject: Option<String>,
    pub body: String,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub from: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub to: Option<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// Each attachment's `filename`, `content_type`, `size` (bytes) and `url` when given by
    /// one; content kept by omega is downloaded from
    /// `GET /businesses/{business_id}/messages/{id}/attachments/{index}`, not listed here.
    pub attachments: serde_json::Value,
    pub status: MessageStatus,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub error_code: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub error_message: Option<String>,
    pub is_read: bool,
    pub metadata: serde_json::Value,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub sent_at: Option<DateTime<Utc>>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a `scheduled` message is due to be sent.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub scheduled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The status history, oldest first; only with `?include=events`.
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<MessageEvent>>,
}

/// Attachments as listed: content replaced by its size.
fn listed(attachments: &serde_json::Value) -> serde_json::Value {
    let Some(list) = attachments.as_array() else {
        return serde_json::json!([]);
    };
    list.iter()
        .enumerate()
        .map(|(index, a)| {
            let mut out = a.as_object().cloned().unwrap_or_default();
            if let Some(content) = out.remove("content") {
                let size = content.as_str().map(base64_len).unwrap_or(0);
                out.insert("size".into(), size.into());
            }
            out.insert("index".into(), index.into());
            serde_json::Value::Object(out)
        })
        .collect()
}

/// The decoded length of base64 text, without decoding it.
fn base64_len(text: &str) -> usize {
    let text = text.trim_end();
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
    (text.len() / 4 * 3 + (text.len() % 4).saturating_sub(1)).saturating_sub(padding)
}

/// One attachment's file, when omega keeps its content: (filename, content type, bytes).
pub async fn attachment(
    db: &impl sea_orm::ConnectionTrait,
    business_id: i64,
    message_id: i64,
    index: usize,
) -> Result<Option<(String, String, Vec<u8>)>, crate::Error> {
    use base64::Engine;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let Some(m) = message::Entity::find_by_id(message_id)
        .filter(message::Column::BusinessId.eq(business_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Some(a) = m.attachments.get(index) else {
        return Ok(None);
    };
    let Some(content) = a["content"].as_str() else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content)
        .map_err(|e| {
            crate::Error::Corrupt(format!("attachment {index} of message {message_id}: {e}"))
        })?;
    Ok(Some((
        a["filename"].as_str().unwrap_or("attachment").to_owned(),
        a["content_type"]
            .as_str()
            .unwrap_or("application/octet-stream")
            .to_owned(),
        bytes,
    )))
}

fn parse<T: std::str::FromStr<Err = crate::Error>>(s: &str) -> Result<T, crate::Error> {
    s.parse()
}

impl MessageItem {
    pub fn from_model(
        m: message::Model,
        events: Option<Vec<message_event::Model>>,
    ) -> Result<Self, crate::Error> {
        let events = events
            .map(|evs| {
                evs.into_iter()
                    .map(|e| {
                        Ok(MessageEvent {
                            status: parse(&e.status)?,
                            error_code: e.error_code,
                            error_message: e.error_message,
                            source: e.source,
                            occurred_at: e.occurred_at,
                        })
                    })
                    .collect::<Result<Vec<_>, crate::Error>>()
            })
            .transpose()?;
        Ok(MessageItem {
            id: m.id,
            conversation_id: m.conversation_id,
            client_id: m.client_id,
            location_id: m.location_id,
            channel: parse(&m.channel)?,
            direction: parse(&m.direction)?,
            category: m.category.as_deref().map(parse).transpose()?,
            notification_type: m.notification_type.as_deref().map(parse).transpose()?,
            sender_type: parse(&m.sender_type)?,
            sent_by: m.sent_by,
            staff_id: m.staff_id,
            provider: m.provider.as_deref().map(parse).transpose()?,
            provider_message_id: m.provider_message_id,
            message_id: m.external_id,
            request_id: m.request_id,
            subject: m.subject,
            body: m.body,
            from: m.from_addr,
            to: m.to_addr,
            cc: crate::query::json_strings(&m.cc),
            bcc: crate::query::json_strings(&m.bcc),
            attachments: listed(&m.attachments),
            status: parse(&m.status)?,
            error_code: m.error_code,
            error_message: m.error_message,
            is_read: m.is_read,
            metadata: m.metadata,
            sent_at: m.sent_at,
            delivered_at: m.delivered_at,
            scheduled_at: m.scheduled_at,
            created_at: m.created_at,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn listed_attachments_show_sizes_not_content() {
        use base64::Engine;
        for n in 0..10 {
            let text = base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
            assert_eq!(super::base64_len(&text), n, "{text}");
        }
        let listed = super::listed(&serde_json::json!([
            {"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="},
            {"url": "https://example.com/b.pdf"}
        ]));
        assert_eq!(
            listed,
            serde_json::json!([
                {"filename": "a.txt", "content_type": "text/plain", "size": 5, "index": 0},
                {"url": "https://example.com/b.pdf", "index": 1}
            ])
        );
    }
}
