//! Email providers' webhooks: checking each provider's signature scheme, and reading its
//! events as status reports on omega's messages.
//!
//! Event → status (API.md): processed → sent, deferred → sending, delivered → delivered,
//! open → read, bounce / dropped / blocked → failed with the reason. Spam complaints and
//! unsubscribes (and hard bounces) are kept as events and withdraw the client's email
//! consent. Any other event is kept as an event and leaves the status alone.
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use entities::status::{MessageRef, StatusReport};
use entities::types::{MessageStatus, Provider};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a signed timestamp (SendGrid, Mailgun, SNS) may be from now: a delivery
/// replayed later is older, and is refused even with a valid signature.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Whether a signed time (seconds since the epoch) is within [`MAX_SKEW_SECS`] of `now`.
pub fn fresh(signed_at_secs: i64, now: DateTime<Utc>) -> bool {
    (now.timestamp() - signed_at_secs).abs() <= MAX_SKEW_SECS
}

/// SendGrid's Event Webhook key as SendGrid shows it: base64 of the DER public key.
pub fn sendgrid_key(base64_der: &str) -> Result<p256::ecdsa::VerifyingKey, String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64_der.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    p256::ecdsa::VerifyingKey::from_public_key_der(&der)
        .map_err(|e| format!("not a P-256 public key: {e}"))
}

/// SendGrid: ECDSA P-256 (SHA-256) over the timestamp header followed by the raw body; the
/// signature header is base64 of the DER signature; the timestamp must be fresh.
pub fn sendgrid_verify(
    key: &p256::ecdsa::VerifyingKey,
    timestamp: &str,
    body: &[u8],
    signature_b64: &str,
    now: DateTime<Utc>,
) -> bool {
    if !timestamp.trim().parse().is_ok_and(|ts| fresh(ts, now)) {
        return false;
    }
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(signature) = p256::ecdsa::Signature::from_der(&der) else {
        return false;
    };
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &signature).is_ok()
}

/// Mailgun: hex HMAC-SHA256 of timestamp + token under the webhook signing key, and a
/// timestamp no older than a few minutes.
pub fn mailgun_verify(
    signing_key: &str,
    timestamp: &str,
    token: &str,
    signature_hex: &str,
    now: DateTime<Utc>,
) -> bool {
    if !timestamp.parse().is_ok_and(|ts| fresh(ts, now)) {
        return false;
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_key.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    bool::from(expected.as_bytes().ct_eq(signature_hex.as_bytes()))
}

/// Postmark: HTTP Basic credentials configured for the webhook (constant-time compare).
pub fn basic_matches(header: Option<&str>, user: &str, password: &str) -> bool {
    let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{user}:{password}");
    bool::from(decoded.ct_eq(expected.as_bytes()))
}

/// What one provider event does to its message.
pub(crate) struct Effect {
    status: Option<MessageStatus>,
    opt_out: bool,
}

pub(crate) fn effect(status: Option<MessageStatus>, opt_out: bool) -> Effect {
    Effect { status, opt_out }
}

/// omega's id, from the value a provider echoes back (a string or a number).
pub(crate) fn omega_id(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        Value::Array(a) => omega_id(a.first()),
        _ => None,
    }
    .filter(|id| *id > 0)
}

pub(crate) fn message_ref(
    omega: Option<i64>,
    provider: Provider,
    provider_id: Option<&str>,
) -> Option<MessageRef> {
    match (omega, provider_id.filter(|p| !p.is_empty())) {
        (Some(message_id), pid) => Some(MessageRef::Omega {
            message_id,
            provider: Some(provider),
            provider_message_id: pid.map(str::to_owned),
        }),
        (None, Some(pid)) => Some(MessageRef::Provider {
            business_id: None,
            provider: Some(provider),
            provider_message_id: pid.to_owned(),
        }),
        (None, None) => None,
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn unix_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let secs = v?.as_f64()?;
    Utc.timestamp_millis_opt((secs * 1000.0) as i64).single()
}

/// One report from a provider's event (every provider's, SES's too).
#[allow(clippy::too_many_arguments)]
pub(crate) fn report(
    provider: Provider,
    message: MessageRef,
    event: &str,
    e: Effect,
    reason: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    dedupe_key: String,
) -> StatusReport {
    let failed = e.status == Some(MessageStatus::Failed);
    StatusReport {
        message,
        status: e.status,
        error_code: (failed || e.opt_out).then(|| event.to_owned()),
        error_message: reason.clone(),
        occurred_at: occurred_at.unwrap_or_else(Utc::now),
        source: format!("{provider}:{event}"),
        dedupe_key,
        opt_out: e.opt_out.then(|| {
            format!(
                "{provider} {event}{}",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            )
        }),
    }
}

/// The reports of a SendGrid Event Webhook body (a JSON array of events). Events that name
/// no message are skipped.
pub fn sendgrid_reports(body: &Value) -> Result<Vec<StatusReport>, String> {
    let events = body.as_array().ok_or("expected a JSON array of events")?;
    let mut out = Vec::with_capacity(events.len());
    for (i, ev) in events.iter().enumerate() {
        let event = str_of(ev, "event").ok_or_else(|| format!("event {i} has no \"event\""))?;
        // sg_message_id is `<X-Message-Id>.<filter>…`: omega kept the first part.
        let sg_id = str_of(ev, "sg_message_id").map(|s| s.split('.').next().unwrap_or(s));
        let Some(message) = message_ref(
            omega_id(ev.get("omega_message_id")),
            Provider::Sendgrid,
            sg_id,
        ) else {
            continue;
        };
        let e = match event {
            "processed" => effect(Some(MessageStatus::Sent), false),
            "deferred" => effect(Some(MessageStatus::Sending), false),
            "delivered" => effect(Some(MessageStatus::Delivered), false),
            "open" => effect(Some(MessageStatus::Read), false),
            // A block is the receiving server's temporary refusal; a bounce is the address.
            "bounce" => effect(
                Some(MessageStatus::Failed),
                str_of(ev, "type") != Some("blocked"),
            ),
            "dropped" | "blocked" => effect(Some(MessageStatus::Failed), false),
            "spamreport" | "unsubscribe" | "group_unsubscribe" => effect(None, true),
            _ => effect(None, false),
        };
        let reason = str_of(ev, "reason")
            .or(str_of(ev, "response"))
            .map(str::to_owned);
        let dedupe = match str_of(ev, "sg_event_id") {
            Some(id) => format!("sendgrid:{id}"),
            None => format!(
                "sendgrid:{event}:{}",
                ev.get("timestamp").cloned().unwrap_or_default()
            ),
        };
        out.push(report(
            Provider::Sendgrid,
            message,
            event,
            e,
            reason,
            unix_time(ev.get("timestamp")),
            dedupe,
        ));
    }
    Ok(out)
}

/// A Mailgun webhook body: `{signature: {timestamp, token, signature}, "event-data": {…}}`.
pub struct MailgunBody<'a> {
    pub timestamp: &'a str,
    pub token: &'a str,
    pub signature: &'a str,
    pub event: &'a Value,
}

pub fn mailgun_body(body: &Value) -> Result<MailgunBody<'_>, String> {
    let sig = body.get("signature").ok_or("no \"signature\" object")?;
    let field = |k: &str| -> Result<&str, String> {
        match sig.get(k) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => Err(format!("signature.{k} is missing")),
        }
    };
    Ok(MailgunBody {
        timestamp: field("timestamp")?,
        token: field("token")?,
        signature: field("signature")?,
        event: body.get("event-data").ok_or("no \"event-data\" object")?,
    })
}

pub fn mailgun_reports(ev: &Value) -> Result<Vec<StatusReport>, String> {
    let event = str_of(ev, "event").ok_or("event-data has no \"event\"")?;
    let header_id = ev
        .get("message")
        .and_then(|m| m.get("headers"))
        .and_then(|h| str_of(h, "message-id"));
    let omega = omega_id(
        ev.get("user-variables")
            .and_then(|u| u.get("omega_message_id")),
    );
    let Some(message) = message_ref(omega, Provider::Mailgun, header_id) else {
        return Ok(vec![]);
    };
    let permanent = str_of(ev, "severity") != Some("temporary");
    let e = match event {
        "accepted" => effect(Some(MessageStatus::Sent), false),
        "delivered" => effect(Some(MessageStatus::Delivered), false),
        "opened" => effect(Some(MessageStatus::Read), false),
        "failed" if permanent => effect(Some(MessageStatus::Failed), true),
        "failed" => effect(Some(MessageStatus::Sending), false),
        "rejected" => effect(Some(MessageStatus::Failed), false),
        "complained" | "unsubscribed" => effect(None, true),
        _ => effect(None, false),
    };
    let reason = ev
        .get("delivery-status")
        .and_then(|d| str_of(d, "description").or(str_of(d, "message")))
        .filter(|r| !r.is_empty())
        .or(str_of(ev, "reason"))
        .map(str::to_owned);
    let dedupe = match str_of(ev, "id") {
        Some(id) => format!("mailgun:{id}"),
        None => format!(
            "mailgun:{event}:{}",
            ev.get("timestamp").cloned().unwrap_or_default()
        ),
    };
    Ok(vec![report(
        Provider::Mailgun,
        message,
        event,
        e,
        reason,
        unix_time(ev.get("timestamp")),
        dedupe,
    )])
}

/// A Postmark webhook body: one record (`RecordType` Delivery, Bounce, SpamComplaint, Open,
/// Click, SubscriptionChange).
pub fn postmark_reports(ev: &Value) -> Result<Vec<StatusReport>, String> {
    let kind = str_of(ev, "RecordType").ok_or("no \"RecordType\"")?;
    let omega = omega_id(ev.get("Metadata").and_then(|m| m.get("omega_message_id")));
    let Some(message) = message_ref(omega, Provider::Postmark, str_of(ev, "MessageID")) else {
        return Ok(vec![]);
    };
    let hard = matches!(
        str_of(ev, "Type"),
        Some("HardBounce" | "BadEmailAddress" | "ManuallyDeactivated" | "SpamNotification")
    );
    let (event, e) = match kind {
        "Delivery" => ("delivered", effect(Some(MessageStatus::Delivered), false)),
        "Open" => ("open", effect(Some(MessageStatus::Read), false)),
        "Bounce" if hard => ("bounce", effect(Some(MessageStatus::Failed), true)),
        "Bounce" => ("soft_bounce", effect(None, false)),
        "SpamComplaint" => ("spamreport", effect(None, true)),
        "SubscriptionChange" if ev.get("SuppressSending") == Some(&Value::Bool(true)) => {
            ("unsubscribe", effect(None, true))
        }
        _ => ("other", effect(None, false)),
    };
    let reason = str_of(ev, "Description")
        .or(str_of(ev, "Details"))
        .or(str_of(ev, "SuppressionReason"))
        .map(str::to_owned);
    let at = ["DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt"]
        .iter()
        .find_map(|k| str_of(ev, k))
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let dedupe = format!(
        "postmark:{kind}:{}:{}",
        ev.get("ID").cloned().unwrap_or_default(),
        at.map(|t| t.timestamp_millis()).unwrap_or_default()
    );
    let source_event = if event == "other" { kind } else { event };
    Ok(vec![report(
        Provider::Postmark,
        message,
        source_event,
        e,
        reason,
        at,
        dedupe,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendgrid_events_map_as_the_contract_says() {
        let body = serde_json::json!([
            {"event":"processed","sg_message_id":"abc.filter1","sg_event_id":"e1","timestamp":1700000000},
            {"event":"bounce","omega_message_id":"42","sg_event_id":"e2","reason":"550 no such user","type":"bounce"},
            {"event":"blocked","omega_message_id":"42","sg_event_id":"e3"},
            {"event":"spamreport","omega_message_id":"42","sg_event_id":"e4"},
            {"event":"click","omega_message_id":"42","sg_event_id":"e5"},
            {"event":"delivered","sg_event_id":"e6"}
        ]);
        let r = sendgrid_reports(&body).unwrap();
        assert_eq!(r.len(), 5, "the event naming no message is skipped");
        assert_eq!(r[0].status, Some(MessageStatus::Sent));
        assert_eq!(
            r[0].message,
            MessageRef::Provider {
                business_id: None,
                provider: Some(Provider::Sendgrid),
                provider_message_id: "abc".into()
            }
        );
        assert_eq!(
            r[1].message,
            MessageRef::Omega {
                message_id: 42,
                provider: Some(Provider::Sendgrid),
                provider_message_id: None
            }
        );
        assert_eq!(r[1].status, Some(MessageStatus::Failed));
        assert!(
            r[1].opt_out
                .as_deref()
                .unwrap()
                .contains("550 no such user")
        );
        assert_eq!(r[2].opt_out, None);
        assert_eq!((r[3].status, r[3].opt_out.is_some()), (None, true));
        assert_eq!((r[4].status, r[4].opt_out.is_some()), (None, false));
        assert!(sendgrid_reports(&serde_json::json!({"event":"open"})).is_err());
    }

    #[test]
    fn mailgun_signatures_expire() {
        let now = Utc::now();
        let ts = now.timestamp().to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(format!("{ts}tok").as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        assert!(mailgun_verify("key", &ts, "tok", &sig, now));
        assert!(!mailgun_verify("other", &ts, "tok", &sig, now));
        assert!(!mailgun_verify("key", &ts, "tok2", &sig, now));
        let later = now + chrono::Duration::seconds(MAX_SKEW_SECS + 1);
        assert!(!mailgun_verify("key", &ts, "tok", &sig, later));
    }

    #[test]
    fn basic_credentials_compare() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        );
        assert!(basic_matches(Some(&header), "u", "p"));
        assert!(!basic_matches(Some(&header), "u", "q"));
        assert!(!basic_matches(None, "u", "p"));
        assert!(!basic_matches(Some("Bearer x"), "u", "p"));
    }
}
