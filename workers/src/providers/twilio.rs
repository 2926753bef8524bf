//! Twilio Messages: one form POST per message, the status callback pointing back at omega.
use std::time::Instant;

use entities::credentials::TwilioCredentials;
use entities::types::{MessageStatus, Provider};
use serde_json::Value;

use super::{Accepted, Clients, SendError, SmsOut, http_error, observe, retry_after, transport};

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
