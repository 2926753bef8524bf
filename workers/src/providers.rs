//! Provider clients: Twilio Messages, SendGrid Mail Send, and the sandbox (a provider that
//! follows Twilio's test-number conventions, for the embedded default and tests). Errors are
//! classified: transient ones are retried on the queue's schedule, permanent ones fail the
//! message at once with the provider's code.
use std::time::{Duration, Instant};

use entities::credentials::TwilioCredentials;
use entities::types::{MessageStatus, Provider};
use serde_json::{Value, json};

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

pub struct EmailOut<'a> {
    pub omega_id: i64,
    pub from: &'a str,
    pub from_name: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub to: &'a str,
    pub cc: &'a [String],
    pub bcc: &'a [String],
    pub subject: &'a str,
    pub text: Option<&'a str>,
    pub html: Option<&'a str>,
    pub attachments: &'a Value,
}

#[derive(Clone)]
pub struct Clients {
    pub http: reqwest::Client,
    pub twilio_base: String,
    pub sendgrid_base: String,
}

impl Clients {
    pub fn new(twilio_base: &str, sendgrid_base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with rustls");
        Clients {
            http,
            twilio_base: twilio_base.trim_end_matches('/').to_owned(),
            sendgrid_base: sendgrid_base.trim_end_matches('/').to_owned(),
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

pub async fn twilio_send(
    clients: &Clients,
    creds: &TwilioCredentials,
    sms: &SmsOut<'_>,
) -> Result<Accepted, SendError> {
    let started = Instant::now();
    let outcome = async {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            clients.twilio_base, creds.account_sid
        );
        let mut form: Vec<(&str, &str)> = vec![
            ("To", sms.to),
            ("From", sms.from),
            ("Body", sms.body),
            ("StatusCallback", sms.status_callback),
        ];
        for m in sms.media_urls {
            form.push(("MediaUrl", m));
        }
        let resp = clients
            .http
            .post(url)
            .basic_auth(&creds.account_sid, Some(&creds.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            let sid = body["sid"].as_str().ok_or_else(|| SendError::Transient {
                message: "Twilio answered without a sid".into(),
                retry_after: None,
            })?;
            let st = match body["status"].as_str() {
                Some("sent") => MessageStatus::Sent,
                Some("sending") => MessageStatus::Sending,
                _ => MessageStatus::Queued,
            };
            return Ok(Accepted {
                provider_message_id: sid.to_owned(),
                status: st,
            });
        }
        let code = body["code"].as_i64().map(|c| c.to_string());
        let message = body["message"]
            .as_str()
            .unwrap_or("Twilio refused the message")
            .to_owned();
        Err(http_error(status, wait, code, message))
    }
    .await;
    observe(Provider::Twilio, started, &outcome);
    outcome
}

pub async fn sendgrid_send(
    clients: &Clients,
    api_key: &str,
    email: &EmailOut<'_>,
) -> Result<Accepted, SendError> {
    let started = Instant::now();
    let outcome = async {
        let mut personalization = json!({
            "to": [{"email": email.to}],
            "custom_args": {"omega_message_id": email.omega_id.to_string()},
        });
        if !email.cc.is_empty() {
            personalization["cc"] = email.cc.iter().map(|e| json!({"email": e})).collect();
        }
        if !email.bcc.is_empty() {
            personalization["bcc"] = email.bcc.iter().map(|e| json!({"email": e})).collect();
        }
        let mut content = Vec::new();
        if let Some(text) = email.text {
            content.push(json!({"type": "text/plain", "value": text}));
        }
        if let Some(html) = email.html {
            content.push(json!({"type": "text/html", "value": html}));
        }
        let mut from = json!({"email": email.from});
        if let Some(name) = email.from_name {
            from["name"] = json!(name);
        }
        let mut body = json!({
            "personalizations": [personalization],
            "from": from,
            "subject": email.subject,
            "content": content,
        });
        if let Some(reply_to) = email.reply_to {
            body["reply_to"] = json!({"email": reply_to});
        }
        let attachments: Vec<Value> = email
            .attachments
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|a| a["content"].is_string())
                    .map(|a| {
                        let mut out = json!({"content": a["content"], "filename": a["filename"].as_str().unwrap_or("attachment")});
                        if let Some(t) = a["content_type"].as_str() {
                            out["type"] = json!(t);
                        }
                        out
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !attachments.is_empty() {
            body["attachments"] = json!(attachments);
        }
        let resp = clients
            .http
            .post(format!("{}/v3/mail/send", clients.sendgrid_base))
            .bearer_auth(api_key)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            // SendGrid names the message in X-Message-Id. Without it the mail was still
            // accepted (retrying would send it twice); events map back by omega's id in
            // custom_args, so a stand-in id does.
            let id = resp
                .headers()
                .get("x-message-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("omega-{}", email.omega_id));
            return Ok(Accepted { provider_message_id: id, status: MessageStatus::Queued });
        }
        let wait = retry_after(resp.headers());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = body["errors"][0]["message"].as_str().unwrap_or("SendGrid refused the message").to_owned();
        Err(http_error(status, wait, None, message))
    }
    .await;
    observe(Provider::Sendgrid, started, &outcome);
    outcome
}

/// The sandbox's verdict on an SMS, by Twilio's test numbers.
pub fn sandbox_sms(to: &str) -> Result<Accepted, SendError> {
    let refuse = |code: &str, message: &str| {
        Err(SendError::Permanent {
            code: code.into(),
            message: message.into(),
        })
    };
    match to {
        "+15005550001" => refuse("21211", "The 'To' number is not a valid phone number."),
        "+15005550002" => refuse("21612", "The 'To' phone number is not currently reachable."),
        "+15005550004" => refuse("21610", "Attempt to send to unsubscribed recipient."),
        "+15005550009" => refuse("21614", "'To' number is not a valid mobile number."),
        _ => Ok(Accepted {
            provider_message_id: format!("SB{}", uuid::Uuid::new_v4().simple()),
            status: MessageStatus::Sent,
        }),
    }
}

/// The sandbox accepts every email; an address at `bounce.example` bounces afterwards.
pub fn sandbox_email(to: &str) -> (Accepted, bool) {
    let bounces = to
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case("bounce.example"));
    (
        Accepted {
            provider_message_id: format!("SB{}", uuid::Uuid::new_v4().simple()),
            status: MessageStatus::Sent,
        },
        bounces,
    )
}

/// Sends through an SMTP relay (`smtp://user:pass@host:port`; `smtps://` for TLS from the
/// start; `?tls=required` to insist on STARTTLS). The Message-ID omega sets names the message.
pub async fn smtp_send(url: &str, email: &EmailOut<'_>) -> Result<Accepted, SendError> {
    use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let started = Instant::now();
    let outcome = async {
        let invalid = |what: &str, e: &dyn std::fmt::Display| SendError::Permanent {
            code: "smtp_invalid".into(),
            message: format!("{what}: {e}"),
        };
        let mailbox = |name: Option<&str>, addr: &str| -> Result<Mailbox, SendError> {
            let address = addr.parse().map_err(|e| invalid("address", &e))?;
            Ok(Mailbox::new(name.map(str::to_owned), address))
        };
        let message_id = format!("<omega-{}@omega.invalid>", email.omega_id);
        let mut builder = Message::builder()
            .from(mailbox(email.from_name, email.from)?)
            .to(mailbox(None, email.to)?)
            .subject(email.subject)
            .message_id(Some(message_id.clone()));
        if let Some(r) = email.reply_to {
            builder = builder.reply_to(mailbox(None, r)?);
        }
        for cc in email.cc {
            builder = builder.cc(mailbox(None, cc)?);
        }
        for bcc in email.bcc {
            builder = builder.bcc(mailbox(None, bcc)?);
        }
        let body = match (email.text, email.html) {
            (Some(t), Some(h)) => MultiPart::alternative_plain_html(t.to_owned(), h.to_owned()),
            (None, Some(h)) => MultiPart::mixed().singlepart(SinglePart::html(h.to_owned())),
            (t, None) => {
                MultiPart::mixed().singlepart(SinglePart::plain(t.unwrap_or_default().to_owned()))
            }
        };
        let mut mixed = MultiPart::mixed().multipart(body);
        for a in email.attachments.as_array().into_iter().flatten() {
            let Some(content) = a["content"].as_str() else {
                continue;
            };
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(content)
                .map_err(|e| invalid("attachment", &e))?;
            let kind = ContentType::parse(
                a["content_type"]
                    .as_str()
                    .unwrap_or("application/octet-stream"),
            )
            .unwrap_or(
                ContentType::parse("application/octet-stream").expect("a valid content type"),
            );
            mixed = mixed.singlepart(
                Attachment::new(a["filename"].as_str().unwrap_or("attachment").to_owned())
                    .body(bytes, kind),
            );
        }
        let message = builder
            .multipart(mixed)
            .map_err(|e| invalid("message", &e))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| invalid("OMEGA_SMTP_URL", &e))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        match transport.send(message).await {
            Ok(_) => Ok(Accepted {
                provider_message_id: message_id,
                status: MessageStatus::Sent,
            }),
            Err(e) if e.is_permanent() => Err(SendError::Permanent {
                code: e
                    .status()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "smtp".into()),
                message: e.to_string(),
            }),
            Err(e) => Err(SendError::Transient {
                message: format!("SMTP: {e}"),
                retry_after: None,
            }),
        }
    }
    .await;
    observe(Provider::Smtp, started, &outcome);
    outcome
}
