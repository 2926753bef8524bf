//! SMTP through a relay, with lettre.
use std::time::{Duration, Instant};

use entities::types::{MessageStatus, Provider};

use super::{Accepted, EmailOut, ONE_CLICK, SendError, observe};

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
        if let Some(url) = email.unsubscribe_url {
            use lettre::message::header::{HeaderName, HeaderValue};
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    ONE_CLICK.to_owned(),
                ));
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
