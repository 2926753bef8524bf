//! `POST /messages/process`: record a message of any channel and direction (sent or received
//! elsewhere) into its client's conversation, creating the client (as a lead) or the
//! conversation when needed. Queued like every other record.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::inbound::ProcessedMessage;
use entities::types::{Channel, Direction, MessageStatus, Provider, UserType};
use jobs::{Inbound, Job};
use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::enqueue::{Owner, Submission, enqueue_messages};
use super::schemas::QueuedResponse;
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

/// A message from any supported channel (`sms`, `email`, `voice`; notes are added through
/// the conversation's notes endpoint). `from`/`to` are E.164 numbers for SMS and voice, email
/// addresses for email. Without `client_id` the client is found by the address on its side
/// (`from` when inbound, `to` when outbound), or created as a `lead`. `status` defaults to
/// `received` for inbound and `sent` for outbound messages.
#[derive(Debug, Object, Deserialize)]
pub struct RipplesMessageRequest {
    pub business_id: i64,
    pub channel: Channel,
    pub direction: Direction,
    #[serde(default)]
    #[oai(nullable)]
    pub client_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub location_id: Option<i64>,
    pub from: String,
    pub to: String,
    #[serde(default)]
    #[oai(nullable)]
    pub subject: Option<String>,
    pub body: String,
    pub provider: Provider,
    #[serde(default)]
    #[oai(nullable)]
    pub provider_message_id: Option<String>,
    pub sender_type: UserType,
    #[serde(default)]
    #[oai(nullable)]
    pub status: Option<MessageStatus>,
    #[serde(default)]
    #[oai(nullable)]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[oai(nullable)]
    pub metadata: Option<serde_json::Value>,
}

impl Validate for RipplesMessageRequest {
    fn validate(&mut self, c: &mut Checker) {
        c.positive("business_id", self.business_id);
        if let Some(id) = self.client_id
            && id == 0
        {
            c.fail("client_id", "client_id must not be 0", "value_error");
        }
        if let Some(id) = self.location_id {
            c.positive("location_id", id);
        }
        match self.channel {
            Channel::Sms | Channel::Voice => {
                c.phone("from", &mut self.from);
                c.phone("to", &mut self.to);
            }
            Channel::Email => {
                self.from = self.from.trim().to_owned();
                self.to = self.to.trim().to_owned();
                c.email("from", &self.from);
                c.email("to", &self.to);
            }
            Channel::Note => c.fail(
                "channel",
                "notes are added with POST …/conversations/{id}/notes",
                "value_error",
            ),
        }
        c.length("body", &self.body, 0, 100_000);
        if let Some(s) = &self.subject {
            c.length("subject", s, 0, 998);
        }
        if let Some(p) = &self.provider_message_id {
            c.length("provider_message_id", p, 1, 255);
        }
        if let Some(m) = &self.metadata
            && !m.is_object()
        {
            c.fail("metadata", "metadata must be an object", "type_error.dict");
        }
    }
}

pub struct ProcessApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl ProcessApi {
    /// Process and record a message from any channel
    ///
    /// Queues one `ProcessInbound` job and answers `SuccessResponse` at once; the worker
    /// resolves or creates the client's conversation. A repeat of the same
    /// `provider_message_id` is recorded once.
    #[oai(path = "/messages/process", method = "post", tag = "ApiTags::Messages")]
    async fn process(
        &self,
        auth: Auth,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: ValidJson<RipplesMessageRequest>,
        trace: Data<&RequestId>,
    ) -> Result<QueuedResponse, ApiError> {
        let ValidJson {
            value: m,
            body_hash,
        } = body;
        let sub = Submission {
            owner: Owner::Business(m.business_id),
            idempotency_key: idempotency_key.0,
            route: "messages/process",
            body_hash,
            trace: &trace,
        };
        enqueue_messages(&self.state, &auth, sub, 1, |request_id| {
            let status = m.status.unwrap_or(match m.direction {
                Direction::Inbound => MessageStatus::Received,
                Direction::Outbound => MessageStatus::Sent,
            });
            let job = Job::ProcessInbound(Inbound::Message(ProcessedMessage {
                request_id: request_id.to_owned(),
                business_id: m.business_id,
                channel: m.channel,
                direction: m.direction,
                client_id: m.client_id,
                location_id: m.location_id,
                from: m.from,
                to: m.to,
                subject: m.subject,
                body: m.body,
                provider: m.provider,
                provider_message_id: m.provider_message_id,
                sender_type: m.sender_type,
                status,
                sent_at: m.sent_at,
                metadata: m.metadata.unwrap_or_else(|| serde_json::json!({})),
            }));
            vec![job]
        })
        .await
    }
}
