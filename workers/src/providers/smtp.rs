//! SMTP through a relay, with lettre.
use std::time::{Duration, Instant};

use entities::types::{MessageStatus, Provider};

use super::{Accepted, EmailOut, SendError, mime, observe};

/// Sends through an SMTP relay (`smtp://user:pass@host:port`; `smtps://` for TLS from the
/// start; `?tls=required` to insist on STARTTLS). The Message-ID omega sets names the message.
pub async fn smtp_send(url: &str, email: &EmailOut<'_>) -> Result<Accepted, SendError> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let started = Instant::now();
    let outcome = async {
        let message = mime::message(email)?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| SendError::Permanent {
                code: "smtp_invalid".into(),
                message: format!("OMEGA_SMTP_URL: {e}"),
            })?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        match transport.send(message).await {
            Ok(_) => Ok(Accepted {
                provider_message_id: email.message_id.to_owned(),
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
