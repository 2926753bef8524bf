//! Provider clients: Twilio Messages; SendGrid, Mailgun, Postmark, Amazon SES and SMTP for
//! email; and the sandbox (a provider that follows Twilio's test-number conventions, for the
//! embedded default and tests). Errors are
//! classified: transient ones are retried on the queue's schedule, permanent ones fail the
//! message at once with the provider's code.
//!
//! Which provider and account a message goes through is decided in [`routing`].
mod mailgun;
mod mime;
mod postmark;
mod routing;
mod sandbox;
mod sendgrid;
mod ses;
mod smtp;
mod twilio;

use std::time::{Duration, Instant};

use base64::Engine;
use entities::types::{MessageStatus, Provider};

pub use mailgun::{MailgunAccount, mailgun_send};
pub use mime::{display_from, headers as email_headers};
pub use postmark::postmark_send;
pub use routing::{Chosen, EmailAccount, Lookups, ProviderSettings};
pub use sandbox::{sandbox_email, sandbox_sms};
pub use sendgrid::sendgrid_send;
pub use ses::{SesAccount, ses_send};
pub use smtp::smtp_send;
pub use twilio::twilio_send;

/// What a provider answered for an accepted message.
#[derive(Debug)]
pub struct Accepted {
    pub provider_message_id: String,
    pub status: MessageStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: timeouts, connection errors, 5xx, 429 (with the provider's Retry-After).
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the provider's code and message.
    #[error("{code}: {message}")]
    Permanent { code: String, message: String },
}

/// Twilio error codes that mean the recipient cannot get this message (API.md's list).
pub const PERMANENT_TWILIO_CODES: &[&str] = &["21211", "21610", "21612", "21614", "30006", "30007"];

pub struct SmsOut<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a str,
    pub media_urls: &'a [String],
    pub status_callback: &'a str,
}

/// A file to attach, its content at hand (given inline, or fetched from its URL).
#[derive(Clone, Debug)]
pub struct File {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl File {
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }
}

pub struct EmailOut<'a> {
    pub omega_id: i64,
    /// The `Message-ID` header, `<…>` included (`entities::threading`).
    pub message_id: &'a str,
    /// Threading a reply: the client's email it answers, and the chain before it.
    pub in_reply_to: Option<&'a str>,
    pub references: Option<&'a str>,
    pub from: &'a str,
    pub from_name: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub to: &'a str,
    pub cc: &'a [String],
    pub bcc: &'a [String],
    pub subject: &'a str,
    pub text: Option<&'a str>,
    pub html: Option<&'a str>,
    pub files: &'a [File],
    /// Campaign and automated email: the one-click unsubscribe URL (RFC 8058), sent as
    /// `List-Unsubscribe` with `List-Unsubscribe-Post`.
    pub unsubscribe_url: Option<&'a str>,
}

/// RFC 8058's `List-Unsubscribe-Post` value: the URL takes a one-click POST.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// Where the providers' APIs are (configurable, so that tests talk to local mocks).
#[derive(Clone, Debug)]
pub struct ApiBases {
    pub twilio: String,
    pub sendgrid: String,
    /// None: by the account's region.
    pub mailgun: Option<String>,
    pub postmark: String,
    /// None: `https://email.<region>.amazonaws.com`.
    pub ses: Option<String>,
}

#[derive(Clone)]
pub struct Clients {
    pub http: reqwest::Client,
    pub twilio_base: String,
    pub sendgrid_base: String,
    pub mailgun_base: Option<String>,
    pub postmark_base: String,
    pub ses_endpoint: Option<String>,
}

impl Clients {
    pub fn new(bases: &ApiBases) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with rustls");
        let trim = |b: &str| b.trim_end_matches('/').to_owned();
        Clients {
            http,
            twilio_base: trim(&bases.twilio),
            sendgrid_base: trim(&bases.sendgrid),
            mailgun_base: bases.mailgun.as_deref().map(trim),
            postmark_base: trim(&bases.postmark),
            ses_endpoint: bases.ses.as_deref().map(trim),
        }
    }
}

fn observe(provider: Provider, started: Instant, outcome: &Result<Accepted, SendError>) {
    let label = match outcome {
        Ok(_) => "accepted",
        Err(SendError::Transient { .. }) => "transient_error",
        Err(SendError::Permanent { .. }) => "permanent_error",
    };
    metrics::counter!("omega_provider_calls_total", "provider" => provider.as_str(), "outcome" => label).increment(1);
    metrics::histogram!("omega_provider_call_duration_seconds", "provider" => provider.as_str())
        .record(started.elapsed().as_secs_f64());
}

/// An email the provider accepted, named by the id it answered; without one by omega's
/// Message-ID (it was accepted all the same: a retry would send it twice).
fn queued_email(id: Option<&str>, email: &EmailOut<'_>) -> Accepted {
    Accepted {
        provider_message_id: id.unwrap_or(email.message_id).to_owned(),
        status: MessageStatus::Queued,
    }
}

fn transport(e: reqwest::Error) -> SendError {
    SendError::Transient {
        message: format!("provider unreachable: {e}"),
        retry_after: None,
    }
}

/// `Retry-After` in seconds (the form Twilio and SendGrid use).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Classifies a non-success HTTP answer.
/// 429 and 5xx are worth retrying; any other client error fails the same way again (for
/// Twilio that includes the recipient codes of `PERMANENT_TWILIO_CODES`).
fn http_error(
    status: reqwest::StatusCode,
    wait: Option<Duration>,
    code: Option<String>,
    message: String,
) -> SendError {
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return SendError::Transient {
            message: format!("HTTP {status}: {message}"),
            retry_after: wait,
        };
    }
    SendError::Permanent {
        code: code.unwrap_or_else(|| status.as_u16().to_string()),
        message,
    }
}
