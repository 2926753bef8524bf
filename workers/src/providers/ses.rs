//! Amazon SES v2 `SendEmail` (`POST {endpoint}/v2/email/outbound-emails`), signed with
//! AWS's own SigV4 signer. The message goes raw (one MIME message from [`super::mime`]), so
//! attachments and omega's headers arrive as every other provider sends them. omega's
//! message id rides as the `omega_message_id` message tag, which SES events carry in
//! `mail.tags`.
use std::time::{Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use entities::types::Provider;
use serde_json::{Value, json};

use super::{
    Accepted, Clients, EmailOut, SendError, http_error, mime, observe, queued_email, retry_after,
    transport,
};

/// An SES account: region and access key.
#[derive(Clone)]
pub struct SesAccount {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for SesAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesAccount")
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// SES error types that mean "later", whatever the HTTP status says.
const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "TooManyRequestsException",
    "LimitExceededException",
];

fn body(email: &EmailOut<'_>) -> Result<Value, SendError> {
    let raw = mime::message(email)?.formatted();
    let mut destination = json!({"ToAddresses": [email.to]});
    if !email.cc.is_empty() {
        destination["CcAddresses"] = json!(email.cc);
    }
    if !email.bcc.is_empty() {
        destination["BccAddresses"] = json!(email.bcc);
    }
    Ok(json!({
        "FromEmailAddress": email.from,
        "Destination": destination,
        "Content": {"Raw": {"Data": base64::engine::general_purpose::STANDARD.encode(raw)}},
        "EmailTags": [{"Name": "omega_message_id", "Value": email.omega_id.to_string()}],
    }))
}

/// The headers that sign the request (`x-amz-date`, `authorization`).
fn signature(
    account: &SesAccount,
    url: &str,
    payload: &[u8],
) -> Result<Vec<(String, String)>, SendError> {
    let failed = |e: &dyn std::fmt::Display| SendError::Permanent {
        code: "ses_signing".into(),
        message: format!("could not sign the SES request: {e}"),
    };
    let identity = Credentials::new(
        &account.access_key_id,
        &account.secret_access_key,
        None,
        None,
        "omega",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&account.region)
        .name("ses")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let headers = [("content-type", "application/json")];
    let request = SignableRequest::new(
        "POST",
        url,
        headers.into_iter(),
        SignableBody::Bytes(payload),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect())
}

pub async fn ses_send(
    clients: &Clients,
    account: &SesAccount,
    email: &EmailOut<'_>,
) -> Result<Accepted, SendError> {
    let started = Instant::now();
    let outcome = async {
        let endpoint = match &clients.ses_endpoint {
            Some(e) => e.clone(),
            None => format!("https://email.{}.amazonaws.com", account.region),
        };
        let url = format!("{endpoint}/v2/email/outbound-emails");
        let payload = serde_json::to_vec(&body(email)?).expect("JSON serializes");
        let mut request = clients
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in signature(account, &url, &payload)? {
            request = request.header(name, value);
        }
        let resp = request.body(payload).send().await.map_err(transport)?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.split(':').next().unwrap_or(t).to_owned());
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(queued_email(answer["MessageId"].as_str(), email));
        }
        let message = answer["message"]
            .as_str()
            .or(answer["Message"].as_str())
            .unwrap_or("SES refused the message")
            .to_owned();
        if error_type
            .as_deref()
            .is_some_and(|t| THROTTLED.contains(&t))
        {
            return Err(SendError::Transient {
                message: format!("SES {}: {message}", error_type.unwrap_or_default()),
                retry_after: wait,
            });
        }
        Err(http_error(status, wait, error_type, message))
    }
    .await;
    observe(Provider::Ses, started, &outcome);
    outcome
}
