//! `POST …/sms/record` and `POST …/email/record`: record messages sent elsewhere. The
//! ingress validates and queues one RecordSms / RecordEmail job; a worker records them.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::record::{RecordBatch, RecordItem};
use entities::types::{
    Channel, Direction, MessageCategory, MessageStatus, NotificationType, Provider, UserType,
};
use jobs::Job;
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::enqueue::{Owner, Submission, enqueue_messages};
use super::message_fields::{
    EmailAttachment, MAX_EMAIL_CHARS, MAX_MESSAGES, MAX_SMS_CHARS, MAX_SUBJECT_CHARS,
    default_sender, request_batch, validate_attachments, validate_copies, validate_ids,
};
use super::schemas::QueuedResponse;
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

/// Record SMS messages sent elsewhere (nothing is sent).
#[derive(Debug, Object, Deserialize)]
pub struct RecordSmsRequest {
    pub category: MessageCategory,
    #[serde(default)]
    #[oai(nullable)]
    pub notification_type: Option<NotificationType>,
    #[serde(default)]
    #[oai(nullable)]
    pub staff_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub provider: Option<Provider>,
    #[serde(default)]
    #[oai(nullable)]
    pub sent_by: Option<i64>,
    /// Defaults to `staff`.
    #[serde(default = "default_sender")]
    #[oai(default = "default_sender")]
    pub sender_type: UserType,
    #[serde(default)]
    #[oai(nullable)]
    pub sent_at: Option<DateTime<Utc>>,
    /// `outbound` (default) or `inbound`.
    #[serde(default)]
    #[oai(nullable)]
    pub direction: Option<Direction>,
    /// The location whose conversation the messages belong to; else the client's own.
    #[serde(default)]
    #[oai(nullable)]
    pub location_id: Option<i64>,
    /// E.164; the default sender for items that name none.
    #[serde(default)]
    #[oai(nullable)]
    pub from_number: Option<String>,
    /// 1 to 1000 messages.
    pub messages: Vec<RecordMessageItem>,
}

#[derive(Debug, Object, Deserialize)]
pub struct RecordMessageItem {
    /// The caller's own id; a message with an id already recorded for this business and
    /// channel is recorded once.
    #[serde(default)]
    #[oai(nullable)]
    pub message_id: Option<i64>,
    pub client_id: i64,
    #[serde(default)]
    #[oai(nullable)]
    pub wl_user_id: Option<i64>,
    /// E.164.
    pub to_number: String,
    /// E.164; required for inbound messages (it is the client's number).
    #[serde(default)]
    #[oai(nullable)]
    pub from_number: Option<String>,
    /// 1 to 1600 characters.
    pub message: String,
    pub status: MessageStatus,
    #[serde(default)]
    #[oai(nullable)]
    pub provider_message_id: Option<String>,
    #[serde(default)]
    #[oai(nullable)]
    pub provider_metadata: Option<serde_json::Value>,
}

impl Validate for RecordSmsRequest {
    const MAX_BODY: usize = 16 << 20;

    fn validate(&mut self, c: &mut Checker) {
        if let Some(from) = self.from_number.as_mut() {
            c.phone("from_number", from);
        }
        validate_ids(c, self.staff_id, self.sent_by, self.location_id);
        c.count("messages", self.messages.len(), 1, MAX_MESSAGES);
        let inbound = self.direction == Some(Direction::Inbound);
        let envelope_from = self.from_number.is_some();
        c.at("messages", |c| {
            for (i, m) in self.messages.iter_mut().enumerate() {
                c.at(i, |c| {
                    c.positive("client_id", m.client_id);
                    c.phone("to_number", &mut m.to_number);
                    match m.from_number.as_mut() {
                        Some(from) => c.phone("from_number", from),
                        None if inbound && !envelope_from => c.fail(
                            "from_number",
                            "field required for inbound messages",
                            "missing",
                        ),
                        None => {}
                    }
                    c.length("message", &m.message, 1, MAX_SMS_CHARS);
                    validate_provider_fields(
                        c,
                        m.provider_message_id.as_deref(),
                        m.provider_metadata.as_ref(),
                    );
                });
            }
        });
    }
}

/// Record email sent elsewhere (nothing is sent). Addresses are checked strictly: the
/// published example's `"cc_email": ["string"]` is answered 422.
#[derive(Debug, Object, Deserialize)]
pub struct RecordEmailRequest {
    pub category: MessageCategory,
    #[serde(default)]
    #[oai(nullable)]
    pub notification_type: Option<NotificationType>,
    #[serde(default)]
    #[oai(nullable)]
    pub staff_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub provider: Option<Provider>,
    #[serde(default)]
    #[oai(nullable)]
    pub sent_by: Option<i64>,
    /// Defaults to `staff`.
    #[serde(default = "default_sender")]
    #[oai(default = "default_sender")]
    pub sender_type: UserType,
    #[serde(default)]
    #[oai(nullable)]
    pub sent_at: Option<DateTime<Utc>>,
    /// The sender; for inbound mail, the client's address (then required).
    #[serde(default)]
    #[oai(nullable)]
    pub from_email: Option<String>,
    /// `outbound` (default) or `inbound`.
    #[serde(default)]
    #[oai(nullable)]
    pub direction: Option<Direction>,
    #[serde(default)]
    #[oai(nullable)]
    pub location_id: Option<i64>,
    /// 1 to 1000 messages.
    pub messages: Vec<RecordEmailItem>,
}

#[derive(Debug, Object, Deserialize)]
pub struct RecordEmailItem {
    #[serde(default)]
    #[oai(nullable)]
    pub message_id: Option<i64>,
    pub client_id: i64,
    #[serde(default)]
    #[oai(nullable)]
    pub wl_user_id: Option<i64>,
    pub to_email: String,
    #[serde(default)]
    #[oai(nullable)]
    pub subject: Option<String>,
    /// The body, 1 to 1,000,000 characters.
    pub message: String,
    #[serde(default)]
    #[oai(nullable)]
    pub cc_email: Option<Vec<String>>,
    #[serde(default)]
    #[oai(nullable)]
    pub bcc_email: Option<Vec<String>>,
    #[serde(default)]
    #[oai(nullable)]
    pub attachments: Option<Vec<EmailAttachment>>,
    pub status: MessageStatus,
    #[serde(default)]
    #[oai(nullable)]
    pub provider_message_id: Option<String>,
    #[serde(default)]
    #[oai(nullable)]
    pub provider_metadata: Option<serde_json::Value>,
}

impl Validate for RecordEmailRequest {
    const MAX_BODY: usize = 32 << 20;

    fn validate(&mut self, c: &mut Checker) {
        if let Some(from) = &self.from_email {
            c.email("from_email", from);
        } else if self.direction == Some(Direction::Inbound) {
            c.fail(
                "from_email",
                "field required for inbound messages",
                "missing",
            );
        }
        validate_ids(c, self.staff_id, self.sent_by, self.location_id);
        c.count("messages", self.messages.len(), 1, MAX_MESSAGES);
        c.at("messages", |c| {
            for (i, m) in self.messages.iter().enumerate() {
                c.at(i, |c| {
                    c.positive("client_id", m.client_id);
                    c.email("to_email", &m.to_email);
                    if let Some(subject) = &m.subject {
                        c.length("subject", subject, 0, MAX_SUBJECT_CHARS);
                    }
                    c.length("message", &m.message, 1, MAX_EMAIL_CHARS);
                    validate_copies(c, &m.cc_email, &m.bcc_email);
                    validate_attachments(c, &m.attachments);
                    validate_provider_fields(
                        c,
                        m.provider_message_id.as_deref(),
                        m.provider_metadata.as_ref(),
                    );
                });
            }
        });
    }
}

fn validate_provider_fields(
    c: &mut Checker,
    provider_message_id: Option<&str>,
    metadata: Option<&serde_json::Value>,
) {
    if let Some(id) = provider_message_id {
        c.length("provider_message_id", id, 1, 255);
    }
    if let Some(m) = metadata
        && !(m.is_object() || m.is_null())
    {
        c.fail(
            "provider_metadata",
            "value is not a valid dict",
            "type_error.dict",
        );
    }
}

impl RecordSmsRequest {
    fn into_batch(self, business_id: i64, request_id: &str) -> RecordBatch {
        let batch = request_batch!(self, business_id, request_id, Channel::Sms);
        let request_from = self.from_number;
        let items = self
            .messages
            .into_iter()
            .map(|m| RecordItem {
                message_id: m.message_id,
                client_id: m.client_id,
                wl_user_id: m.wl_user_id,
                from: m.from_number.or_else(|| request_from.clone()),
                to: m.to_number,
                subject: None,
                body: m.message,
                cc: Vec::new(),
                bcc: Vec::new(),
                attachments: serde_json::json!([]),
                status: m.status,
                provider_message_id: m.provider_message_id,
                metadata: m.provider_metadata.unwrap_or_else(|| serde_json::json!({})),
                scheduled_at: None,
            })
            .collect();
        RecordBatch { items, ..batch }
    }
}

impl RecordEmailRequest {
    fn into_batch(self, business_id: i64, request_id: &str) -> RecordBatch {
        let batch = request_batch!(self, business_id, request_id, Channel::Email);
        let from = self.from_email;
        let items = self
            .messages
            .into_iter()
            .map(|m| RecordItem {
                message_id: m.message_id,
                client_id: m.client_id,
                wl_user_id: m.wl_user_id,
                from: from.clone(),
                to: m.to_email,
                subject: m.subject,
                body: m.message,
                cc: m.cc_email.unwrap_or_default(),
                bcc: m.bcc_email.unwrap_or_default(),
                attachments: serde_json::to_value(m.attachments.unwrap_or_default())
                    .unwrap_or_default(),
                status: m.status,
                provider_message_id: m.provider_message_id,
                metadata: m.provider_metadata.unwrap_or_else(|| serde_json::json!({})),
                scheduled_at: None,
            })
            .collect();
        RecordBatch { items, ..batch }
    }
}

pub struct RecordApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl RecordApi {
    /// Record SMS messages sent elsewhere, without sending
    ///
    /// Validates, queues a RecordSms job and answers at once; a worker records each message in
    /// its client's conversation (creating the client or conversation when needed).
    #[oai(
        path = "/businesses/:business_id/sms/record",
        method = "post",
        tag = "ApiTags::Sms"
    )]
    async fn record_sms(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: ValidJson<RecordSmsRequest>,
        trace: Data<&RequestId>,
    ) -> Result<QueuedResponse, ApiError> {
        let ValidJson { value, body_hash } = body;
        let count = value.messages.len();
        let sub = Submission {
            owner: Owner::Business(business_id.0),
            idempotency_key: idempotency_key.0,
            route: "sms/record",
            body_hash,
            trace: &trace,
        };
        enqueue_messages(&self.state, &auth, sub, count, |rid| {
            vec![Job::RecordSms(value.into_batch(business_id.0, rid))]
        })
        .await
    }

    /// Record email without sending
    ///
    /// Validates, queues a RecordEmail job and answers at once. Addresses (to, cc, bcc, from)
    /// are validated strictly, also for recorded mail.
    #[oai(
        path = "/businesses/:business_id/email/record",
        method = "post",
        tag = "ApiTags::Email"
    )]
    async fn record_email(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: ValidJson<RecordEmailRequest>,
        trace: Data<&RequestId>,
    ) -> Result<QueuedResponse, ApiError> {
        let ValidJson { value, body_hash } = body;
        let count = value.messages.len();
        let sub = Submission {
            owner: Owner::Business(business_id.0),
            idempotency_key: idempotency_key.0,
            route: "email/record",
            body_hash,
            trace: &trace,
        };
        enqueue_messages(&self.state, &auth, sub, count, |rid| {
            vec![Job::RecordEmail(value.into_batch(business_id.0, rid))]
        })
        .await
    }
}
