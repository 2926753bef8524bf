//! Amazon SNS deliveries of SES events: the SNS signature is checked with the certificate
//! SNS names, fetched only from an allow-listed host (`https://sns.<region>.amazonaws.com`,
//! or the prefix `OMEGA_SNS_TRUSTED_CERT_PREFIX` names, for tests) and cached; only topics
//! listed in `OMEGA_SES_TOPIC_ARNS` are accepted (an SNS signature proves the message came
//! from SNS, not from which account's topic). Subscription confirmations are confirmed by
//! fetching their `SubscribeURL` under the same allow-list.
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use entities::status::StatusReport;

use crate::email_events::{effect, message_ref, omega_id, report};
use entities::types::{MessageStatus, Provider};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::Value;
use x509_cert::der::{Decode, DecodePem, Encode};

#[derive(Debug, thiserror::Error)]
pub enum SnsError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
}

pub enum Notification {
    /// A subscription confirmation, confirmed.
    Confirmed,
    /// A notification's `Message` (the SES event), with the SNS message id.
    Message(SesMessage),
}

pub struct SesMessage {
    pub sns_message_id: String,
    pub event: Value,
}

/// The SNS settings and the certificates fetched so far.
pub struct SnsVerifier {
    topics: Vec<String>,
    trusted_prefix: Option<String>,
    http: reqwest::Client,
    certs: RwLock<HashMap<String, rsa::RsaPublicKey>>,
}

/// Whether a URL is SNS's own: https on `sns.<region>.amazonaws.com(.cn)`.
pub fn is_aws_sns_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = u.host_str() else {
        return false;
    };
    let region = host.strip_prefix("sns.").and_then(|h| {
        h.strip_suffix(".amazonaws.com")
            .or(h.strip_suffix(".amazonaws.com.cn"))
    });
    u.scheme() == "https"
        && u.port().is_none()
        && region.is_some_and(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// The text SNS signs: the named fields as `name\nvalue\n`, in this order, absent ones
/// left out.
fn string_to_sign(msg: &Value, kind: &str) -> Option<String> {
    let fields: &[&str] = if kind == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut out = String::new();
    for f in fields {
        match msg.get(*f).and_then(Value::as_str) {
            Some(v) => {
                out.push_str(f);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            None if *f == "Subject" => {}
            None => return None,
        }
    }
    Some(out)
}

impl SnsVerifier {
    pub fn new(topics: Vec<String>, trusted_prefix: Option<String>) -> Self {
        SnsVerifier {
            topics,
            trusted_prefix,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client with a timeout"),
            certs: RwLock::new(HashMap::new()),
        }
    }

    /// Where SNS's signing certificates are: `https://sns.<region>.amazonaws.com/SimpleNotificationService-<id>.pem`.
    fn allowed_cert(&self, url: &str) -> bool {
        let sns_path = reqwest::Url::parse(url).is_ok_and(|u| {
            u.query().is_none()
                && u.path()
                    .strip_prefix("/SimpleNotificationService-")
                    .and_then(|rest| rest.strip_suffix(".pem"))
                    .is_some_and(|id| {
                        !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
        });
        (is_aws_sns_url(url) && sns_path) || self.trusted(url)
    }

    fn trusted(&self, url: &str) -> bool {
        self.trusted_prefix
            .as_deref()
            .is_some_and(|p| url.starts_with(p))
    }

    fn allowed(&self, url: &str) -> bool {
        is_aws_sns_url(url) || self.trusted(url)
    }

    async fn key_at(&self, url: &str) -> Result<rsa::RsaPublicKey, SnsError> {
        if let Some(k) = self.certs.read().expect("cert cache poisoned").get(url) {
            return Ok(k.clone());
        }
        let pem = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                SnsError::Unavailable(format!("could not fetch the SNS certificate: {e}"))
            })?
            .text()
            .await
            .map_err(|e| {
                SnsError::Unavailable(format!("could not read the SNS certificate: {e}"))
            })?;
        let cert = x509_cert::Certificate::from_pem(pem.as_bytes())
            .or_else(|_| x509_cert::Certificate::from_der(pem.as_bytes()))
            .map_err(|e| {
                SnsError::Forbidden(format!("the signing certificate is unreadable: {e}"))
            })?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| {
                SnsError::Forbidden(format!("the certificate's key is unreadable: {e}"))
            })?;
        let key = rsa::RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| SnsError::Forbidden(format!("the certificate's key is not RSA: {e}")))?;
        self.certs
            .write()
            .expect("cert cache poisoned")
            .insert(url.to_owned(), key.clone());
        Ok(key)
    }

    /// Verifies one SNS delivery and, for a subscription confirmation, confirms it.
    pub async fn verify(&self, msg: &Value, now: DateTime<Utc>) -> Result<Notification, SnsError> {
        let field = |name: &str| msg.get(name).and_then(Value::as_str);
        let forbidden = |why: &str| Err(SnsError::Forbidden(why.to_owned()));
        let Some(kind) = field("Type") else {
            return forbidden("not an SNS message (no Type)");
        };
        let topic = field("TopicArn").unwrap_or_default();
        if !self.topics.iter().any(|t| t == topic) {
            return forbidden("topic not allowed (OMEGA_SES_TOPIC_ARNS)");
        }
        let (Some(cert_url), Some(signature), Some(text)) = (
            field("SigningCertURL").or(field("SigningCertUrl")),
            field("Signature"),
            string_to_sign(msg, kind),
        ) else {
            return forbidden("signature fields missing");
        };
        if !self.allowed_cert(cert_url) {
            return forbidden("certificate URL is not an SNS signing certificate");
        }
        let signed_at = field("Timestamp")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp());
        if !signed_at.is_some_and(|t| crate::email_events::fresh(t, now)) {
            return forbidden("Timestamp missing or not within 5 minutes of now");
        }
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            return forbidden("signature is not base64");
        };
        let Ok(sig) = Signature::try_from(sig.as_slice()) else {
            return forbidden("signature is malformed");
        };
        let key = self.key_at(cert_url).await?;
        let valid = match field("SignatureVersion") {
            Some("1") => VerifyingKey::<sha1::Sha1>::new(key)
                .verify(text.as_bytes(), &sig)
                .is_ok(),
            Some("2") => VerifyingKey::<sha2::Sha256>::new(key)
                .verify(text.as_bytes(), &sig)
                .is_ok(),
            _ => false,
        };
        if !valid {
            return forbidden("signature does not verify");
        }
        match kind {
            "SubscriptionConfirmation" => {
                let url = field("SubscribeURL").unwrap_or_default();
                if !self.allowed(url) {
                    return forbidden("SubscribeURL not on an allowed host");
                }
                self.http
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| {
                        SnsError::Unavailable(format!("could not confirm the subscription: {e}"))
                    })?;
                tracing::info!(topic, "confirmed the SNS subscription");
                Ok(Notification::Confirmed)
            }
            "UnsubscribeConfirmation" => {
                tracing::warn!(topic, "SNS says the subscription was removed");
                Ok(Notification::Confirmed)
            }
            "Notification" => {
                let message = field("Message").unwrap_or_default();
                let event = serde_json::from_str(message)
                    .map_err(|e| SnsError::Invalid(format!("the SNS Message is not JSON: {e}")))?;
                Ok(Notification::Message(SesMessage {
                    sns_message_id: field("MessageId").unwrap_or_default().to_owned(),
                    event,
                }))
            }
            other => Err(SnsError::Invalid(format!(
                "unknown SNS message type {other:?}"
            ))),
        }
    }
}

/// The report of an SES event (event publishing's `eventType`, or a notification's
/// `notificationType`). An event naming no message gives none.
pub fn ses_reports(m: &SesMessage) -> Result<Vec<StatusReport>, String> {
    let ev = &m.event;
    let kind = ev
        .get("eventType")
        .or(ev.get("notificationType"))
        .and_then(Value::as_str)
        .ok_or("the SES event has no eventType")?;
    let mail = ev.get("mail").ok_or("the SES event has no mail")?;
    let omega = omega_id(mail.get("tags").and_then(|t| t.get("omega_message_id")));
    let pid = mail.get("messageId").and_then(Value::as_str);
    let Some(message) = message_ref(omega, Provider::Ses, pid) else {
        return Ok(vec![]);
    };
    let detail = |k: &str| ev.get(k);
    let (event, status, opt_out, reason) = match kind {
        "Send" => ("send", Some(MessageStatus::Sent), false, None),
        "Delivery" => ("delivered", Some(MessageStatus::Delivered), false, None),
        "DeliveryDelay" => ("deferred", Some(MessageStatus::Sending), false, None),
        "Open" => ("open", Some(MessageStatus::Read), false, None),
        "Reject" => ("dropped", Some(MessageStatus::Failed), false, None),
        "Bounce" => {
            let b = detail("bounce");
            let permanent =
                b.and_then(|b| b.get("bounceType")).and_then(Value::as_str) == Some("Permanent");
            let reason = b
                .and_then(|b| b.pointer("/bouncedRecipients/0/diagnosticCode"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if permanent {
                ("bounce", Some(MessageStatus::Failed), true, reason)
            } else {
                ("soft_bounce", None, false, reason)
            }
        }
        "Complaint" => ("spamreport", None, true, None),
        "Subscription" => ("unsubscribe", None, true, None),
        _ => ("other", None, false, None),
    };
    let at = mail
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let event = if event == "other" { kind } else { event };
    Ok(vec![report(
        Provider::Ses,
        message,
        event,
        effect(status, opt_out),
        reason,
        at,
        format!("ses:{}", m.sns_message_id),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_serve_certificates() {
        assert!(is_aws_sns_url(
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"
        ));
        assert!(is_aws_sns_url(
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem"
        ));
        assert!(!is_aws_sns_url("http://sns.us-east-1.amazonaws.com/x.pem"));
        assert!(!is_aws_sns_url(
            "https://sns.us-east-1.amazonaws.com.evil.com/x.pem"
        ));
        assert!(!is_aws_sns_url(
            "https://evil.com/sns.us-east-1.amazonaws.com/x.pem"
        ));
        assert!(!is_aws_sns_url("https://sns..amazonaws.com/x.pem"));
        let verifier = SnsVerifier::new(vec![], None);
        assert!(verifier.allowed_cert(
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"
        ));
        for elsewhere in [
            "https://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com/uploads/SimpleNotificationService-1.pem",
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem?x=1",
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-.pem",
        ] {
            assert!(!verifier.allowed_cert(elsewhere), "{elsewhere}");
        }
        assert!(!is_aws_sns_url(
            "https://sns.us-east-1.amazonaws.com:8443/x.pem"
        ));
    }

    #[test]
    fn the_signed_text_follows_the_sns_order() {
        let msg = serde_json::json!({"Type":"Notification","MessageId":"m","TopicArn":"t","Message":"hi","Timestamp":"ts"});
        assert_eq!(
            string_to_sign(&msg, "Notification").unwrap(),
            "Message\nhi\nMessageId\nm\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
        );
        assert!(string_to_sign(&msg, "SubscriptionConfirmation").is_none());
    }
}
