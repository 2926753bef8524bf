//! What the send and record requests share: their limits, the fields a request gives once
//! for all its messages, attachments, and the checks of those fields.
use base64::Engine;
use chrono::{DateTime, FixedOffset, Utc};
use entities::schedule::{self, Due};
use entities::types::{MessageStatus, UserType};
use poem_openapi::Object;
use serde::Deserialize;

use crate::validate::Checker;

/// Messages in one request.
pub const MAX_MESSAGES: usize = 1000;
/// An SMS body (Twilio's limit for a concatenated message).
pub const MAX_SMS_CHARS: usize = 1600;
/// An email body, text or HTML.
pub const MAX_EMAIL_CHARS: usize = 1_000_000;
/// A subject line (RFC 5322's line limit).
pub const MAX_SUBJECT_CHARS: usize = 998;
/// Addresses in cc or bcc.
pub const MAX_RECIPIENTS: usize = 100;
/// Media URLs of one MMS (Twilio's limit).
pub const MAX_MEDIA_URLS: usize = 10;
/// One attachment, decoded (the workers' limit for files fetched by URL too).
pub const MAX_ATTACHMENT_BYTES: usize = 10 << 20;
/// A URL a worker may fetch.
const MAX_URL_CHARS: usize = 2048;

/// Who sent a message when the request does not say: a staff member.
pub fn default_sender() -> UserType {
    UserType::Staff
}

/// An attachment: inline `content` (base64) or a `url`.
#[derive(Clone, Debug, Object, Deserialize, serde::Serialize)]
pub struct EmailAttachment {
    #[serde(default)]
    #[oai(skip_serializing_if_is_none)]
    pub content: Option<String>,
    #[serde(default)]
    #[oai(skip_serializing_if_is_none)]
    pub content_type: Option<String>,
    #[serde(default)]
    #[oai(skip_serializing_if_is_none)]
    pub filename: Option<String>,
    #[serde(default)]
    #[oai(skip_serializing_if_is_none)]
    pub url: Option<String>,
}

/// The queued form of a send or record request's messages, without them yet: the fields the
/// request gives once for all its messages. Those every such request names alike are taken
/// from it; the rest are given (a record request has them all: direction, default outbound,
/// `sent_at` and `location_id`).
macro_rules! request_batch {
    ($request:expr, $business_id:expr, $request_id:expr, $channel:expr) => {
        request_batch!(
            $request,
            $business_id,
            $request_id,
            $channel,
            $request
                .direction
                .unwrap_or(entities::types::Direction::Outbound),
            $request.sent_at,
            $request.location_id
        )
    };
    ($request:expr, $business_id:expr, $request_id:expr, $channel:expr, $direction:expr, $sent_at:expr, $location_id:expr) => {
        entities::record::RecordBatch {
            business_id: $business_id,
            request_id: $request_id.to_owned(),
            channel: $channel,
            direction: $direction,
            category: Some($request.category),
            notification_type: $request.notification_type,
            staff_id: $request.staff_id,
            provider: $request.provider,
            sent_by: $request.sent_by,
            sender_type: $request.sender_type,
            sent_at: $sent_at,
            location_id: $location_id,
            items: Vec::new(),
        }
    };
}
pub(crate) use request_batch;

/// Staff, sender and location ids are positive when given.
pub fn validate_ids(
    c: &mut Checker,
    staff_id: Option<i64>,
    sent_by: Option<i64>,
    location_id: Option<i64>,
) {
    for (field, value) in [
        ("staff_id", staff_id),
        ("sent_by", sent_by),
        ("location_id", location_id),
    ] {
        if let Some(v) = value {
            c.positive(field, v);
        }
    }
}

/// cc and bcc: at most `MAX_RECIPIENTS` valid addresses each.
pub fn validate_copies(c: &mut Checker, cc: &Option<Vec<String>>, bcc: &Option<Vec<String>>) {
    for (field, list) in [("cc_email", cc), ("bcc_email", bcc)] {
        let Some(list) = list else { continue };
        c.count(field, list.len(), 0, MAX_RECIPIENTS);
        c.at(field, |c| {
            for (j, addr) in list.iter().enumerate() {
                c.at(j, |c| c.email("", addr));
            }
        });
    }
}

/// Each attachment has content (valid base64) or an http(s) URL, and a sane file name.
pub fn validate_attachments(c: &mut Checker, attachments: &Option<Vec<EmailAttachment>>) {
    let Some(attachments) = attachments else {
        return;
    };
    c.at("attachments", |c| {
        for (j, a) in attachments.iter().enumerate() {
            c.at(j, |c| validate_attachment(c, a));
        }
    });
}

fn validate_attachment(c: &mut Checker, a: &EmailAttachment) {
    if a.content.is_none() && a.url.is_none() {
        c.fail(
            "",
            "an attachment needs `content` (base64) or a `url`",
            "value_error",
        );
    }
    if let Some(content) = &a.content {
        match base64::engine::general_purpose::STANDARD.decode(content) {
            Err(_) => c.fail("content", "value is not valid base64", "value_error.base64"),
            Ok(bytes) if bytes.len() > MAX_ATTACHMENT_BYTES => c.fail(
                "content",
                format!("an attachment is at most {} MB", MAX_ATTACHMENT_BYTES >> 20),
                "value_error.too_large",
            ),
            Ok(_) => {}
        }
    }
    if let Some(url) = &a.url
        && !is_http_url(url)
    {
        c.fail("url", "value is not a valid http(s) URL", "value_error.url");
    }
    if let Some(name) = &a.filename {
        c.length("filename", name, 1, 255);
    }
}

/// MMS media: at most `MAX_MEDIA_URLS` http(s) URLs.
pub fn validate_media_urls(c: &mut Checker, urls: &Option<Vec<String>>) {
    let Some(urls) = urls else { return };
    c.count("media_urls", urls.len(), 0, MAX_MEDIA_URLS);
    c.at("media_urls", |c| {
        for (j, u) in urls.iter().enumerate() {
            if !is_http_url(u) {
                c.at(j, |c| {
                    c.fail("", "value is not a valid http(s) URL", "value_error.url")
                });
            }
        }
    });
}

fn is_http_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= MAX_URL_CHARS
}

/// A `send_at` more than 35 days ahead is refused at its field.
pub fn validate_send_at(c: &mut Checker, send_at: Option<DateTime<FixedOffset>>) {
    if schedule::due(send_at, Utc::now()) == Due::TooFar {
        c.fail(
            "send_at",
            "send_at is at most 35 days ahead",
            "value_error.send_at",
        );
    }
}

/// The status a message to send is recorded with, and when it is due if later: `scheduled`
/// at its `send_at`, else `queued`.
pub fn send_status(
    send_at: Option<DateTime<FixedOffset>>,
    now: DateTime<Utc>,
) -> (MessageStatus, Option<DateTime<Utc>>) {
    match schedule::due(send_at, now) {
        Due::At(at) => (MessageStatus::Scheduled, Some(at)),
        Due::Now | Due::TooFar => (MessageStatus::Queued, None),
    }
}
