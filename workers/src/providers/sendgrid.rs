//! SendGrid Mail Send v3: JSON, omega's message id in `custom_args` so that event webhooks
//! name the message.
use std::time::Instant;

use entities::types::{MessageStatus, Provider};
use serde_json::{Value, json};

use super::{
    Accepted, Clients, EmailOut, SendError, http_error, mime, observe, retry_after, transport,
};

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
        body["headers"] = mime::headers(email)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Value::String(value)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let attachments: Vec<Value> = email
            .files
            .iter()
            .map(|f| json!({"content": f.base64(), "filename": f.filename, "type": f.content_type}))
            .collect();
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
            return Ok(Accepted {
                provider_message_id: id,
                status: MessageStatus::Queued,
            });
        }
        let wait = retry_after(resp.headers());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = body["errors"][0]["message"]
            .as_str()
            .unwrap_or("SendGrid refused the message")
            .to_owned();
        Err(http_error(status, wait, None, message))
    }
    .await;
    observe(Provider::Sendgrid, started, &outcome);
    outcome
}
