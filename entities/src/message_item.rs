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
            attachments: m.attachments,
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
