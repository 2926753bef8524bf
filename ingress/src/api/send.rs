//! `POST …/sms/send` and `POST …/email/send`: one SendSms / SendEmail job per message, so each
//! message retries on its own. Workers record, check consent, dispatch and record the result.
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use entities::outbound::SendJob;
use entities::record::{RecordBatch, RecordItem};
use entities::types::{Channel, Direction, MessageCategory, NotificationType, Provider, UserType};
use jobs::Job;
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::enqueue::{Owner, Submission, enqueue_messages};
use super::message_fields::{
    EmailAttachment, MAX_EMAIL_CHARS, MAX_MESSAGES, MAX_SMS_CHARS, MAX_SUBJECT_CHARS,
    default_sender, request_batch, send_status, validate_attachments, validate_copies,
    validate_ids, validate_media_urls, validate_send_at,
};
use super::schemas::QueuedResponse;
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

/// SMS to send. `provider`: `twilio` or `sandbox` (default: the configured one).
#[derive(Debug, Object, Deserialize)]
pub struct SendSmsRequest {
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
    #[serde(default = "default_sender")]
    #[oai(default = "default_sender")]
    pub sender_type: UserType,
    /// The sending location: its number is the From.
    pub location_id: i64,
    /// E.164; overrides the location's number. Must be one of the business's locations'
    /// numbers (or, through its own Twilio account, a number no other business holds): 422
    /// otherwise.
    #[serde(default)]
    #[oai(nullable)]
    pub from_number: Option<String>,
    /// When to send (RFC 3339 with its offset): recorded `scheduled` now and sent then, up
    /// to 35 days ahead (422 beyond); past or within a second, sent at once. A message's own
    /// `send_at` overrides this.
    #[serde(default)]
    #[oai(nullable)]
    pub send_at: Option<DateTime<FixedOffset>>,
    /// 1 to 1000 messages.
    pub messages: Vec<SendSmsItem>,
}

#[derive(Debug, Object, Deserialize)]
pub struct SendSmsItem {
    #[serde(default)]
    #[oai(nullable)]
    pub message_id: Option<i64>,
    pub client_id: i64,
    #[serde(default)]
    #[oai(nullable)]
    pub wl_user_id: Option<i64>,
    /// E.164.
    pub to_number: String,
    /// 1 to 1600 characters.
    pub message: String,
    #[serde(default)]
    #[oai(nullable)]
    pub media_urls: Option<Vec<String>>,
    /// This message's own `send_at` (see the request's).
    #[serde(default)]
    #[oai(nullable)]
    pub send_at: Option<DateTime<FixedOffset>>,
}

impl Validate for SendSmsRequest {
    const MAX_BODY: usize = 16 << 20;

    fn validate(&mut self, c: &mut Checker) {
        validate_ids(c, self.staff_id, self.sent_by, Some(self.location_id));
        if let Some(p) = self.provider
            && !matches!(p, Provider::Twilio | Provider::Sandbox)
        {
            c.fail(
                "provider",
                "SMS is sent through twilio or sandbox",
                "value_error.provider",
            );
        }
        if let Some(from) = self.from_number.as_mut() {
            c.phone("from_number", from);
        }
        validate_send_at(c, self.send_at);
        c.count("messages", self.messages.len(), 1, MAX_MESSAGES);
        c.at("messages", |c| {
            for (i, m) in self.messages.iter_mut().enumerate() {
                c.at(i, |c| {
                    c.positive("client_id", m.client_id);
                    c.phone("to_number", &mut m.to_number);
                    c.length("message", &m.message, 1, MAX_SMS_CHARS);
                    validate_media_urls(c, &m.media_urls);
                    validate_send_at(c, m.send_at);
                });
            }
        });
    }
}

/// An email's body: `text`, `html`, or both.
#[derive(Debug, Object, Deserialize)]
pub struct EmailContent {
    #[serde(default)]
    #[oai(nullable)]
    pub html: Option<String>,
    #[serde(default)]
    #[oai(nullable)]
    pub text: Option<String>,
}

/// Email to send. `provider`: `sendgrid`, `mailgun`, `postmark`, `ses`, `smtp` or `sandbox`
/// (default: the business's own account, else the configured one). HTML-only content is
/// recorded and sent with a plain-text body derived from the HTML.
#[derive(Debug, Object, Deserialize)]
pub struct SendEmailRequest {
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
    #[serde(default = "default_sender")]
    #[oai(default = "default_sender")]
    pub sender_type: UserType,
    #[serde(default)]
    #[oai(nullable)]
    pub location_id: Option<i64>,
    /// The sender; default: the business's email provider's address. Must be a location's
    /// address, the business's own email account's, or on a domain it owns (onboarding's
    /// `email_domains`): 422 otherwise.
    #[serde(default)]
    #[oai(nullable)]
    pub from_email: Option<String>,
    #[serde(default)]
    #[oai(nullable)]
    pub from_name: Option<String>,
    #[serde(default)]
    #[oai(nullable)]
    pub reply_to: Option<String>,
    /// When to send (RFC 3339 with its offset): recorded `scheduled` now and sent then, up
    /// to 35 days ahead (422 beyond); past or within a second, sent at once. A message's own
    /// `send_at` overrides this.
    #[serde(default)]
    #[oai(nullable)]
    pub send_at: Option<DateTime<FixedOffset>>,
    /// 1 to 1000 messages.
    pub messages: Vec<SendEmailItem>,
}

#[derive(Debug, Object, Deserialize)]
pub struct SendEmailItem {
    #[serde(default)]
    #[oai(nullable)]
    pub message_id: Option<i64>,
    pub client_id: i64,
    #[serde(default)]
    #[oai(nullable)]
    pub wl_user_id: Option<i64>,
    pub to_email: String,
    pub subject: String,
    pub content: EmailContent,
    #[serde(default)]
    #[oai(nullable)]
    pub cc_email: Option<Vec<String>>,
    #[serde(default)]
    #[oai(nullable)]
    pub bcc_email: Option<Vec<String>>,
    #[serde(default)]
    #[oai(nullable)]
    pub attachments: Option<Vec<EmailAttachment>>,
    /// This message's own `send_at` (see the request's).
    #[serde(default)]
    #[oai(nullable)]
    pub send_at: Option<DateTime<FixedOffset>>,
}

impl Validate for SendEmailRequest {
    const MAX_BODY: usize = 32 << 20;

    fn validate(&mut self, c: &mut Checker) {
        validate_ids(c, self.staff_id, self.sent_by, self.location_id);
        if let Some(p) = self.provider
            && !p.sends_email()
        {
            c.fail(
                "provider",
                "email is sent through sendgrid, mailgun, postmark, ses, smtp or sandbox",
                "value_error.provider",
            );
        }
        for (field, value) in [
            ("from_email", &self.from_email),
            ("reply_to", &self.reply_to),
        ] {
            if let Some(v) = value {
                c.email(field, v);
            }
        }
        if let Some(name) = &self.from_name {
            c.length("from_name", name, 1, 255);
        }
        validate_send_at(c, self.send_at);
        c.count("messages", self.messages.len(), 1, MAX_MESSAGES);
        c.at("messages", |c| {
            for (i, m) in self.messages.iter().enumerate() {
                c.at(i, |c| {
                    c.positive("client_id", m.client_id);
                    c.email("to_email", &m.to_email);
                    c.length("subject", &m.subject, 1, MAX_SUBJECT_CHARS);
                    match (&m.content.text, &m.content.html) {
                        (None, None) => c.fail("content", "give text, html or both", "value_error"),
                        (text, html) => {
                            for (field, v) in [("text", text), ("html", html)] {
                                if let Some(v) = v {
                                    c.at("content", |c| c.length(field, v, 1, MAX_EMAIL_CHARS));
                                }
                            }
                        }
                    }
                    validate_copies(c, &m.cc_email, &m.bcc_email);
                    validate_attachments(c, &m.attachments);
                    validate_send_at(c, m.send_at);
                });
            }
        });
    }
}

impl SendSmsRequest {
    fn into_jobs(self, business_id: i64, request_id: &str, now: DateTime<Utc>) -> Vec<Job> {
        let shared = request_batch!(
            self,
            business_id,
            request_id,
            Channel::Sms,
            Direction::Outbound,
            None,
            Some(self.location_id)
        );
        let (from, send_at) = (self.from_number, self.send_at);
        self.messages
            .into_iter()
            .enumerate()
            .map(|(index, m)| {
                let (status, scheduled_at) = send_status(m.send_at.or(send_at), now);
                let item = RecordItem {
                    message_id: m.message_id,
                    client_id: m.client_id,
                    wl_user_id: m.wl_user_id,
                    from: from.clone(),
                    to: m.to_number,
                    subject: None,
                    body: m.message,
                    cc: vec![],
                    bcc: vec![],
                    attachments: serde_json::json!(
                        m.media_urls
                            .iter()
                            .flatten()
                            .map(|u| serde_json::json!({"url": u}))
                            .collect::<Vec<_>>()
                    ),
                    status,
                    provider_message_id: None,
                    metadata: serde_json::json!({}),
                    scheduled_at,
                };
                Job::SendSms(SendJob {
                    batch: RecordBatch {
                        items: vec![item],
                        ..shared.clone()
                    },
                    index: index as i32,
                    media_urls: m.media_urls.unwrap_or_default(),
                    html: None,
                    from_name: None,
                    reply_to: None,
                    thread: None,
                })
            })
            .collect()
    }
}

impl SendEmailRequest {
    fn into_jobs(self, business_id: i64, request_id: &str, now: DateTime<Utc>) -> Vec<Job> {
        let shared = request_batch!(
            self,
            business_id,
            request_id,
            Channel::Email,
            Direction::Outbound,
            None,
            self.location_id
        );
        let (from, from_name, reply_to, send_at) =
            (self.from_email, self.from_name, self.reply_to, self.send_at);
        self.messages
            .into_iter()
            .enumerate()
            .map(|(index, m)| {
                let (status, scheduled_at) = send_status(m.send_at.or(send_at), now);
                let item = RecordItem {
                    message_id: m.message_id,
                    client_id: m.client_id,
                    wl_user_id: m.wl_user_id,
                    from: from.clone(),
                    to: m.to_email,
                    subject: Some(m.subject),
                    // HTML alone: its text is the preview, what search finds and the
                    // text part.
                    body: m
                        .content
                        .text
                        .or_else(|| m.content.html.as_deref().map(entities::email_text::from_html))
                        .unwrap_or_default(),
                    cc: m.cc_email.unwrap_or_default(),
                    bcc: m.bcc_email.unwrap_or_default(),
                    attachments: serde_json::to_value(m.attachments.unwrap_or_default())
                        .unwrap_or_default(),
                    status,
                    provider_message_id: None,
                    // Kept so that a retry can send the same mail again.
                    metadata: serde_json::json!({"html": m.content.html.clone(), "from_name": from_name.clone(), "reply_to": reply_to.clone()}),
                    scheduled_at,
                };
                Job::SendEmail(SendJob {
                    batch: RecordBatch {
                        items: vec![item],
                        ..shared.clone()
                    },
                    index: index as i32,
                    media_urls: vec![],
                    html: m.content.html,
                    from_name: from_name.clone(),
                    reply_to: reply_to.clone(),
                    thread: None,
                })
            })
            .collect()
    }
}

pub struct SendApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl SendApi {
    /// Queue SMS for sending and database recording
    ///
    /// One job per message. A client who opted out of SMS is not sent to: the message is
    /// recorded `failed` with the reason. Twilio errors that retrying cannot fix (21211,
    /// 21610, 21612, 21614, 30006, 30007, other 4xx) fail the message at once.
    #[oai(
        path = "/businesses/:business_id/sms/send",
        method = "post",
        tag = "ApiTags::Sms"
    )]
    async fn send_sms(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: ValidJson<SendSmsRequest>,
        trace: Data<&RequestId>,
    ) -> Result<QueuedResponse, ApiError> {
        let ValidJson { value, body_hash } = body;
        if let Some(from) = &value.from_number {
            auth.principal().can_write(business_id.0)?;
            let state = &self.state;
            state
                .check_sender_number(business_id.0, from, "from_number")
                .await?;
        }
        let count = value.messages.len();
        let sub = Submission {
            owner: Owner::Business(business_id.0),
            idempotency_key: idempotency_key.0,
            route: "sms/send",
            body_hash,
            trace: &trace,
        };
        enqueue_messages(&self.state, &auth, sub, count, |rid| {
            value.into_jobs(business_id.0, rid, Utc::now())
        })
        .await
    }

    /// Queue email for sending and database recording
    ///
    /// One job per message, sent through SendGrid (omega's message id in `custom_args`) or the
    /// sandbox. A client who opted out of email is not sent to.
    #[oai(
        path = "/businesses/:business_id/email/send",
        method = "post",
        tag = "ApiTags::Email"
    )]
    async fn send_email(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: ValidJson<SendEmailRequest>,
        trace: Data<&RequestId>,
    ) -> Result<QueuedResponse, ApiError> {
        let ValidJson { value, body_hash } = body;
        if let Some(from) = &value.from_email {
            auth.principal().can_write(business_id.0)?;
            let state = &self.state;
            state
                .check_sender_address(business_id.0, from, "from_email")
                .await?;
        }
        let count = value.messages.len();
        let sub = Submission {
            owner: Owner::Business(business_id.0),
            idempotency_key: idempotency_key.0,
            route: "email/send",
            body_hash,
            trace: &trace,
        };
        enqueue_messages(&self.state, &auth, sub, count, |rid| {
            value.into_jobs(business_id.0, rid, Utc::now())
        })
        .await
    }
}
