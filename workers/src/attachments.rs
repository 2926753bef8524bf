//! An email's attachments made files: inline ones decoded, those given by `url` fetched
//! (https only, public addresses only unless `OMEGA_ALLOW_PRIVATE_URLS`, at most
//! [`MAX_FILE_BYTES`] each and [`MAX_MESSAGE_BYTES`] in all, [`FETCH_TIMEOUT`] each). A
//! fetch that cannot succeed fails the message with the reason; one that may succeed later
//! (a timeout, a 5xx) is retried like a provider's transient error. Never dropped silently.
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use entities::urls::UrlPolicy;
use futures::StreamExt;
use serde_json::Value;

use crate::providers::File;
use crate::webhooks::PublicOnly;

/// One attachment (RFC-wise nothing stops larger; providers do: SendGrid's whole message is
/// 30 MB, Postmark's 10 MB, SES's 40 MB).
pub const MAX_FILE_BYTES: usize = 10 << 20;
/// All of one message's attachments.
pub const MAX_MESSAGE_BYTES: usize = 25 << 20;
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Fetching again cannot help: the reason, for the message's error.
    Permanent(String),
    /// Worth retrying.
    Transient(String),
}

impl Unavailable {
    /// The same, its reason prefixed with what was unavailable.
    fn about(self, what: &str) -> Unavailable {
        match self {
            Unavailable::Permanent(why) => Unavailable::Permanent(format!("{what}: {why}")),
            Unavailable::Transient(why) => Unavailable::Transient(format!("{what}: {why}")),
        }
    }
}

#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    policy: UrlPolicy,
}

impl Fetcher {
    pub fn new(policy: UrlPolicy) -> Self {
        let mut http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT.min(Duration::from_secs(5)))
            // A redirect is followed only through the same resolver, which refuses private
            // addresses wherever it leads.
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent("omega-attachments/1");
        if !policy.allow_private {
            http = http.dns_resolver(Arc::new(PublicOnly(policy)));
        }
        Fetcher {
            http: http.build().expect("the attachment HTTP client builds"),
            policy,
        }
    }

    /// The files of a message's `attachments` (the request's list, as recorded).
    pub async fn files(&self, attachments: &Value) -> Result<Vec<File>, Unavailable> {
        let mut files = Vec::new();
        let mut total = 0usize;
        for (i, a) in attachments.as_array().into_iter().flatten().enumerate() {
            let given_type = a["content_type"].as_str().map(str::to_owned);
            let (bytes, fetched_type, url_name) = match (a["content"].as_str(), a["url"].as_str()) {
                (Some(content), _) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(content)
                        .map_err(|e| {
                            Unavailable::Permanent(format!("attachment {i}: not base64: {e}"))
                        })?;
                    (bytes, None, None)
                }
                (None, Some(url)) => {
                    let (bytes, kind) = self
                        .fetch(url)
                        .await
                        .map_err(|e| e.about(&format!("attachment {i} ({url})")))?;
                    (bytes, kind, name_in_url(url))
                }
                // Recorded mail may list an attachment by name alone: nothing to send.
                (None, None) => continue,
            };
            if bytes.len() > MAX_FILE_BYTES {
                return Err(Unavailable::Permanent(format!(
                    "attachment {i} is over {} MB",
                    MAX_FILE_BYTES >> 20
                )));
            }
            total += bytes.len();
            if total > MAX_MESSAGE_BYTES {
                return Err(Unavailable::Permanent(format!(
                    "attachments are over {} MB in all",
                    MAX_MESSAGE_BYTES >> 20
                )));
            }
            files.push(File {
                filename: a["filename"]
                    .as_str()
                    .map(str::to_owned)
                    .or(url_name)
                    .unwrap_or_else(|| "attachment".into()),
                content_type: given_type
                    .or(fetched_type)
                    .unwrap_or_else(|| "application/octet-stream".into()),
                bytes,
            });
        }
        Ok(files)
    }

    async fn fetch(&self, url: &str) -> Result<(Vec<u8>, Option<String>), Unavailable> {
        // The name is checked here, so that a private address fails the message at once;
        // the resolver checks every connection again (a name can be re-pointed).
        let url = match self.policy.check_resolved(url).await {
            Ok(url) => url,
            // A name that does not resolve now may later (DNS outages pass).
            Err(e) if e.to_string().contains("does not resolve") => {
                return Err(Unavailable::Transient(e.to_string()));
            }
            Err(e) => return Err(Unavailable::Permanent(e.to_string())),
        };
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Unavailable::Transient(format!("could not fetch: {e}")))?;
        let status = resp.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Unavailable::Transient(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(Unavailable::Permanent(format!("HTTP {status}")));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_FILE_BYTES as u64)
        {
            return Err(Unavailable::Permanent(format!(
                "over {} MB",
                MAX_FILE_BYTES >> 20
            )));
        }
        let kind = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Unavailable::Transient(format!("download broke off: {e}")))?;
            if bytes.len() + chunk.len() > MAX_FILE_BYTES {
                return Err(Unavailable::Permanent(format!(
                    "over {} MB",
                    MAX_FILE_BYTES >> 20
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes, kind))
    }
}

/// The last path segment of a URL, when it looks like a file name.
fn name_in_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let last = parsed.path_segments()?.next_back()?;
    (!last.is_empty()).then(|| last.to_owned())
}
