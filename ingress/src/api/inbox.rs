//! The staff's inbox commands, each one transaction in the ingress: mark messages read or
//! unread, add an internal note, assign a conversation, set its status; and a reply to the
//! client, queued as a send.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::inbox;
use entities::types::{Channel, ClientConversationStatus};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::enqueue::{Owner, Submission, Work, enqueue, queued};
use super::message_fields::{
    MAX_EMAIL_CHARS, MAX_SMS_CHARS, MAX_SUBJECT_CHARS, send_status, validate_send_at,
};
use super::schemas::MessageItem;
use super::schemas::QueuedResponse;
use super::status::UpdateSuccessResponse;
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

/// An internal note: in the timeline, never sent to the client. With a staff session,
/// `staff_id` must be the session's own (403 otherwise).
#[derive(Debug, Object, Deserialize)]
pub struct NoteRequest {
    pub staff_id: i64,
    /// 1 to 10,000 characters.
    pub note: String,
}

impl Validate for NoteRequest {
    fn validate(&mut self, c: &mut Checker) {
        c.positive("staff_id", self.staff_id);
        c.length("note", self.note.trim(), 1, 10_000);
    }
}

#[derive(ApiResponse)]
pub enum NoteCreated {
    #[oai(status = 201)]
    Created(Json<MessageItem>),
}

/// `staff_id: null` unassigns. `assigned_by`: with a staff session, the session's own staff
/// member (another id is 403).
#[derive(Debug, Object, Deserialize)]
pub struct AssignRequest {
    #[oai(nullable)]
    pub staff_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub assigned_by: Option<i64>,
}

impl Validate for AssignRequest {
    fn validate(&mut self, _c: &mut Checker) {}
}

/// A reply to the conversation's client, by `sms` (from the location's number) or `email`
/// (from the location's address, threaded under the client's last email; `subject`
/// defaults to "Re: " and the conversation's latest subject). With a staff session the
/// sender is the session's staff member (`staff_id` may be omitted; another is 403); with
/// an API key `staff_id` is required. `send_at` as for sends.
#[derive(Debug, Object, Deserialize)]
pub struct ReplyRequest {
    pub channel: Channel,
    /// SMS: 1 to 1,600 characters; email: the text body.
    pub message: String,
    #[serde(default)]
    #[oai(nullable)]
    pub subject: Option<String>,
    #[serde(default)]
    #[oai(nullable)]
    pub send_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[serde(default)]
    #[oai(nullable)]
    pub staff_id: Option<i64>,
}

impl Validate for ReplyRequest {
    fn validate(&mut self, c: &mut Checker) {
        match self.channel {
            Channel::Sms => {
                c.length("message", self.message.trim(), 1, MAX_SMS_CHARS);
                if self.subject.is_some() {
                    c.fail("subject", "an SMS has no subject", "value_error");
                }
            }
            Channel::Email => c.length("message", self.message.trim(), 1, MAX_EMAIL_CHARS),
            _ => c.fail(
                "channel",
                "a reply goes by sms or email",
                "value_error.channel",
            ),
        }
        if let Some(subject) = &self.subject {
            c.length("subject", subject, 1, MAX_SUBJECT_CHARS);
        }
        if let Some(id) = self.staff_id {
            c.positive("staff_id", id);
        }
        validate_send_at(c, self.send_at);
    }
}

#[derive(Debug, Object, Deserialize)]
pub struct ConversationStatusRequest {
    pub status: ClientConversationStatus,
    /// For `snoozed`: until when.
    #[serde(default)]
    #[oai(nullable)]
    pub snoozed_until: Option<DateTime<Utc>>,
    #[serde(default)]
    #[oai(nullable)]
    pub staff_id: Option<i64>,
}

impl Validate for ConversationStatusRequest {
    fn validate(&mut self, c: &mut Checker) {
        if self.status == ClientConversationStatus::Snoozed && self.snoozed_until.is_none() {
            c.fail("snoozed_until", "field required when snoozing", "missing");
        }
    }
}

/// Mark inbound messages read or unread: by staff (their assigned conversations),
/// conversation, client, ids, channel and/or created before a time; at least one selector.
#[derive(Debug, Object, Deserialize)]
pub struct MessageStatusUpdateFilters {
    pub is_read: bool,
    #[serde(default)]
    #[oai(nullable)]
    pub staff_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub conversation_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub client_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub message_ids: Option<Vec<i64>>,
    #[serde(default)]
    #[oai(nullable)]
    pub channel: Option<Channel>,
    #[serde(default)]
    #[oai(nullable)]
    pub before: Option<DateTime<Utc>>,
}

impl Validate for MessageStatusUpdateFilters {
    fn validate(&mut self, c: &mut Checker) {
        let any = self.staff_id.is_some()
            || self.conversation_id.is_some()
            || self.client_id.is_some()
            || self.message_ids.is_some()
            || self.channel.is_some()
            || self.before.is_some();
        if !any {
            c.fail("", "give at least one selector: staff_id, conversation_id, client_id, message_ids, channel or before", "value_error");
        }
        if let Some(ids) = &self.message_ids {
            c.count("message_ids", ids.len(), 1, 10_000);
        }
    }
}

pub struct InboxApi {
    pub state: Arc<AppState>,
}

impl InboxApi {
    /// The caller may work the business's inbox, and it exists.
    async fn can_work_inbox(&self, auth: &Auth, business_id: i64) -> Result<(), ApiError> {
        auth.principal().can_work_inbox(business_id)?;
        self.state.require_business_exists(business_id).await
    }
}

#[OpenApi]
impl InboxApi {
    /// Mark messages read or unread
    ///
    /// Inbound messages matching the selectors; the conversations' unread counts are recounted
    /// in the same transaction. `updated`: messages changed.
    #[oai(
        path = "/businesses/:business_id/messages/read-status",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn read_status(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        body: ValidJson<MessageStatusUpdateFilters>,
    ) -> Result<Json<UpdateSuccessResponse>, ApiError> {
        self.can_work_inbox(&auth, business_id.0).await?;
        let b = body.value;
        let sel = inbox::ReadSelection {
            staff_id: b.staff_id,
            conversation_id: b.conversation_id,
            client_id: b.client_id,
            message_ids: b.message_ids,
            channel: b.channel,
            before: b.before,
        };
        let updated = inbox::set_read(&self.state.db, business_id.0, b.is_read, &sel).await?;
        Ok(Json(UpdateSuccessResponse {
            success: true,
            updated: updated as u32,
        }))
    }

    /// Add internal note
    ///
    /// A timeline entry (`channel: "note"`) by a staff member of the business; never sent to
    /// the client and never counted unread.
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/notes",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn note(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        body: ValidJson<NoteRequest>,
    ) -> Result<NoteCreated, ApiError> {
        self.can_work_inbox(&auth, business_id.0).await?;
        let req = body.value;
        let author = auth
            .principal()
            .acting_staff(Some(req.staff_id))?
            .unwrap_or(req.staff_id);
        let row = inbox::add_note(
            &self.state.db,
            business_id.0,
            conversation_id.0,
            author,
            req.note.trim(),
        )
        .await
        .map_err(|e| invalid_at_body(e, "staff_id"))?;
        let item = MessageItem::from_model(row, None)
            .map_err(|e| ApiError::internal("stored note unreadable", e))?;
        Ok(NoteCreated::Created(Json(item)))
    }

    /// Assign a conversation
    ///
    /// To a staff member of the business (else 422), or nobody (`staff_id: null`); recorded as
    /// a conversation event.
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/assign",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn assign(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        body: ValidJson<AssignRequest>,
    ) -> Result<Json<UpdateSuccessResponse>, ApiError> {
        self.can_work_inbox(&auth, business_id.0).await?;
        let req = body.value;
        let assigned_by = auth.principal().acting_staff(req.assigned_by)?;
        inbox::assign(
            &self.state.db,
            business_id.0,
            conversation_id.0,
            req.staff_id,
            assigned_by,
        )
        .await
        .map_err(|e| invalid_at_body(e, "staff_id"))?;
        Ok(Json(UpdateSuccessResponse {
            success: true,
            updated: 1,
        }))
    }

    /// Reply to the client
    ///
    /// Queues a message to the conversation's client through the normal send path (its
    /// consent is checked when it is sent) and answers `SuccessResponse` with its
    /// `request_id`. Staff sessions of the business may reply, as may its API keys and the
    /// platform key (naming `staff_id`).
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/reply",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn reply(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        #[oai(name = "Idempotency-Key")] idempotency_key: poem_openapi::param::Header<
            Option<String>,
        >,
        body: ValidJson<ReplyRequest>,
        trace: poem::web::Data<&RequestId>,
    ) -> Result<QueuedResponse, ApiError> {
        let ValidJson { value, body_hash } = body;
        let principal = auth.principal();
        principal.can_work_inbox(business_id.0)?;
        let staff_id = principal.acting_staff(value.staff_id)?.ok_or_else(|| {
            ApiError::invalid_at(
                &["body", "staff_id"],
                "field required with an API key: who replies",
                "missing",
            )
        })?;
        let (status, scheduled_at) = send_status(value.send_at, Utc::now());
        let channel = value.channel;
        let reply = entities::reply::Reply {
            staff_id,
            channel,
            message: value.message,
            subject: value.subject,
            status,
            scheduled_at,
        };
        let sub = Submission {
            owner: Owner::Inbox(business_id.0),
            idempotency_key: idempotency_key.0,
            route: "conversations/reply",
            body_hash,
            trace: &trace,
        };
        let (b, c, db) = (business_id.0, conversation_id.0, &self.state.db);
        let (response, replayed) = enqueue(&self.state, &auth, sub, |request_id| async move {
            let job = entities::reply::compose(db, b, c, &reply, &request_id)
                .await
                .map_err(|e| match e {
                    entities::Error::Invalid(msg) if msg.starts_with("staff") => {
                        ApiError::invalid_at(&["body", "staff_id"], msg, "value_error")
                    }
                    // The client lacks the channel's address.
                    other => invalid_at_body(other, "channel"),
                })?;
            let job = match channel {
                Channel::Sms => jobs::Job::SendSms(job),
                _ => jobs::Job::SendEmail(job),
            };
            Ok(Work::new(vec![job], queued(request_id, 1)))
        })
        .await?;
        Ok(QueuedResponse::new(response, replayed))
    }

    /// Set a conversation's status
    ///
    /// open, pending, resolved or snoozed (with `snoozed_until`); recorded as a conversation
    /// event. An inbound message reopens a resolved or snoozed conversation.
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/status",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn status(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        body: ValidJson<ConversationStatusRequest>,
    ) -> Result<Json<UpdateSuccessResponse>, ApiError> {
        self.can_work_inbox(&auth, business_id.0).await?;
        let req = body.value;
        let actor = auth.principal().acting_staff(req.staff_id)?;
        inbox::set_status(
            &self.state.db,
            business_id.0,
            conversation_id.0,
            req.status,
            req.snoozed_until,
            actor,
        )
        .await?;
        Ok(Json(UpdateSuccessResponse {
            success: true,
            updated: 1,
        }))
    }
}

/// A request naming a staff member of another business is a validation error at that field.
fn invalid_at_body(e: entities::Error, field: &str) -> ApiError {
    match e {
        entities::Error::Invalid(msg) => ApiError::invalid_at(&["body", field], msg, "value_error"),
        other => other.into(),
    }
}
