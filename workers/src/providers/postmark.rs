//! Postmark: `POST {base}/email` with the server token in `X-Postmark-Server-Token`. omega's
//! message id rides in `Metadata`, which Postmark's webhooks echo back.
use std::time::Instant;

use entities::types::Provider;
use serde_json::{Value, json};

use super::{
    Accepted, Clients, EmailOut, SendError, http_error, mime, observe, queued_email, retry_after,
    transport,
};

/// Postmark's API error codes that a retry can fix: 405 "not allowed to send" (a paused
/// account or exhausted credits is resumed by its owner), 429 and the like come as HTTP
/// statuses. Everything else (invalid addresses, 406 inactive recipient, …) fails for good.
const RETRYABLE: &[i64] = &[405];

fn body(email: &EmailOut<'_>) -> Value {
    let mut body = json!({
        "From": mime::display_from(email),
        "To": email.to,
        "Subject": email.subject,
        "Headers": mime::headers(email)
            .into_iter()
            .map(|(name, value)| json!({"Name": name, "Value": value}))
            .collect::<Vec<_>>(),
        "Metadata": {"omega_message_id": email.omega_id.to_string()},
    });
    if !email.cc.is_empty() {
        body["Cc"] = json!(email.cc.join(","));
    }
    if !email.bcc.is_empty() {
        body["Bcc"] = json!(email.bcc.join(","));
    }
    if let Some(text) = email.text {
        body["TextBody"] = json!(text);
    }
    if let Some(html) = email.html {
        body["HtmlBody"] = json!(html);
    }
    if let Some(reply_to) = email.reply_to {
        body["ReplyTo"] = json!(reply_to);
    }
    if !email.files.is_empty() {
        body["Attachments"] = email
            .files
            .iter()
            .map(|f| json!({"Name": f.filename, "Content": f.base64(), "ContentType": f.content_type}))
            .collect();
    }
    body
}

pub async fn postmark_send(
    clients: &Clients,
    server_token: &str,
    email: &EmailOut<'_>,
) -> Result<Accepted, SendError> {
    let started = Instant::now();
    let outcome = async {
        let resp = clients
            .http
            .post(format!("{}/email", clients.postmark_base))
            .header("X-Postmark-Server-Token", server_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&body(email))
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        // Postmark answers errors with a 4xx and their ErrorCode; a 2xx is an accepted
        // message (its ErrorCode is 0).
        let code = answer["ErrorCode"].as_i64().unwrap_or(0);
        if status.is_success() {
            return Ok(queued_email(answer["MessageID"].as_str(), email));
        }
        let message = answer["Message"]
            .as_str()
            .unwrap_or("Postmark refused the message")
            .to_owned();
        if RETRYABLE.contains(&code) {
            return Err(SendError::Transient {
                message: format!("Postmark {code}: {message}"),
                retry_after: wait,
            });
        }
        Err(http_error(
            status,
            wait,
            (code != 0).then(|| code.to_string()),
            message,
        ))
    }
    .await;
    observe(Provider::Postmark, started, &outcome);
    outcome
}
