//! Mailgun Messages API: `POST {base}/v3/{domain}/messages`, multipart form, Basic auth
//! `api:<key>`. omega's message id rides as the `v:omega_message_id` variable, which
//! Mailgun's events echo back in `user-variables`.
use std::time::Instant;

use entities::types::Provider;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::{
    Accepted, Clients, EmailOut, SendError, http_error, mime, observe, queued_email, retry_after,
    transport,
};

/// A Mailgun account: its API key, sending domain and region.
#[derive(Clone)]
pub struct MailgunAccount {
    pub api_key: String,
    pub domain: String,
    /// `us` or `eu`; which API host, unless `OMEGA_MAILGUN_API_BASE` names one.
    pub region: Option<String>,
}

impl std::fmt::Debug for MailgunAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailgunAccount")
            .field("domain", &self.domain)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MailgunAccount {
    fn base<'a>(&self, clients: &'a Clients) -> &'a str {
        match (&clients.mailgun_base, self.region.as_deref()) {
            (Some(base), _) => base,
            (None, Some("eu")) => "https://api.eu.mailgun.net",
            (None, _) => "https://api.mailgun.net",
        }
    }
}

fn form(email: &EmailOut<'_>) -> Result<Form, SendError> {
    let mut form = Form::new()
        .text("from", mime::display_from(email))
        .text("to", email.to.to_owned())
        .text("subject", email.subject.to_owned())
        .text("v:omega_message_id", email.omega_id.to_string());
    for cc in email.cc {
        form = form.text("cc", cc.clone());
    }
    for bcc in email.bcc {
        form = form.text("bcc", bcc.clone());
    }
    if let Some(text) = email.text {
        form = form.text("text", text.to_owned());
    }
    if let Some(html) = email.html {
        form = form.text("html", html.to_owned());
    }
    if let Some(reply_to) = email.reply_to {
        form = form.text("h:Reply-To", reply_to.to_owned());
    }
    for (name, value) in mime::headers(email) {
        form = form.text(format!("h:{name}"), value);
    }
    for file in email.files {
        let part = Part::bytes(file.bytes.clone())
            .file_name(file.filename.clone())
            .mime_str(&file.content_type)
            .map_err(|e| SendError::Permanent {
                code: "invalid_message".into(),
                message: format!("attachment {}: {e}", file.filename),
            })?;
        form = form.part("attachment", part);
    }
    Ok(form)
}

pub async fn mailgun_send(
    clients: &Clients,
    account: &MailgunAccount,
    email: &EmailOut<'_>,
) -> Result<Accepted, SendError> {
    let started = Instant::now();
    let outcome = async {
        let url = format!("{}/v3/{}/messages", account.base(clients), account.domain);
        let resp = clients
            .http
            .post(url)
            .basic_auth("api", Some(&account.api_key))
            .multipart(form(email)?)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            // Mailgun's id is the Message-Id it sends with: ours, since we set it.
            return Ok(queued_email(body["id"].as_str(), email));
        }
        let message = body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Mailgun refused the message: {}", text.trim()));
        Err(http_error(status, wait, None, message))
    }
    .await;
    observe(Provider::Mailgun, started, &outcome);
    outcome
}
