//! Response schemas shared by several operations.
use chrono::{DateTime, Utc};
use entities::types::{
    Channel, Direction, MessageCategory, MessageStatus, NotificationType, Provider, UserType,
};
use entities::{message, message_event};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::{Deserialize, Serialize};

/// A request's jobs were queued.
#[derive(Clone, Debug, Object, Serialize, Deserialize)]
pub struct SuccessResponse {
    pub success: bool,
    pub message: String,
    /// Identifies the request's messages: `GET …/messages/requests/{request_id}`.
    pub request_id: String,
    pub accepted: u32,
}

#[derive(ApiResponse)]
pub enum QueuedResponse {
    /// Accepted and queued. `Idempotency-Replayed: true` when this is the stored answer to an
    /// earlier request with the same Idempotency-Key.
    #[oai(status = 200)]
    Ok(
        Json<SuccessResponse>,
        #[oai(header = "Idempotency-Replayed")] Option<String>,
    ),
}

impl QueuedResponse {
    pub fn new(response: SuccessResponse, replayed: bool) -> Self {
        QueuedResponse::Ok(Json(response), replayed.then(|| "true".to_owned()))
    }
}

/// One entry of a message's status history.
#[derive(Clone, Debug, Object)]
pub struct MessageEvent {
    pub status: MessageStatus,
    #[oai(nullable)]
    pub error_code: Option<String>,
    #[oai(nullable)]
    pub error_message: Option<String>,
    /// Who reported it: record, api, provider, worker.
    pub source: String,
    pub occurred_at: DateTime<Utc>,
}

/// A message of any channel, as a client sees it.
#[derive(Clone, Debug, Object)]
pub struct MessageItem {
    pub id: i64,
    pub conversation_id: i64,
    pub client_id: i64,
    #[oai(nullable)]
    pub location_id: Option<i64>,
    pub channel: Channel,
    pub direction: Direction,
    #[oai(nullable)]
    pub category: Option<MessageCategory>,
    #[oai(nullable)]
    pub notification_type: Option<NotificationType>,
    pub sender_type: UserType,
    #[oai(nullable)]
    pub sent_by: Option<i64>,
    #[oai(nullable)]
    pub staff_id: Option<i64>,
    #[oai(nullable)]
    pub provider: Option<Provider>,
    #[oai(nullable)]
    pub provider_message_id: Option<String>,
    /// The caller's own id for the message.
    #[oai(nullable)]
    pub message_id: Option<i64>,
    #[oai(nullable)]
    pub request_id: Option<String>,
    #[oai(nullable)]
    pub subject: Option<String>,
    pub body: String,
    #[oai(nullable)]
    pub from: Option<String>,
    #[oai(nullable)]
    pub to: Option<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub attachments: serde_json::Value,
    pub status: MessageStatus,
    #[oai(nullable)]
    pub error_code: Option<String>,
    #[oai(nullable)]
    pub error_message: Option<String>,
    pub is_read: bool,
    pub metadata: serde_json::Value,
    #[oai(nullable)]
    pub sent_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a `scheduled` message is due to be sent.
    #[oai(nullable)]
    pub scheduled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The status history, oldest first; only with `?include=events`.
    #[oai(skip_serializing_if_is_none)]
    pub events: Option<Vec<MessageEvent>>,
}

fn parse<T: std::str::FromStr<Err = entities::Error>>(s: &str) -> Result<T, entities::Error> {
    s.parse()
}

impl MessageItem {
    pub fn from_model(
        m: message::Model,
        events: Option<Vec<message_event::Model>>,
    ) -> Result<Self, entities::Error> {
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
                    .collect::<Result<Vec<_>, entities::Error>>()
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
            cc: entities::query::json_strings(&m.cc),
            bcc: entities::query::json_strings(&m.bcc),
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
