//! `POST /email/webhooks/{provider}`: delivery events from SendGrid, Mailgun and Postmark.
//! The provider's signature is checked on the raw body before anything is read or queued;
//! events become status reports queued as `UpdateStatus` jobs (de-duplicated per event).
use std::sync::Arc;

use chrono::Utc;
use entities::status::StatusReport;
use entities::types::ExternalEmailProvider;
use jobs::{Job, StatusUpdates};
use poem::web::Data;
use poem::{Request, RequestBody};
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};

use super::ApiTags;
use super::status::UpdateSuccessResponse;
use crate::RequestId;
use crate::email_events as events;
use crate::error::ApiError;
use crate::state::AppState;

/// How large a raw body a route takes.
pub trait BodyLimit: Send {
    const MAX: usize;
}

/// Event webhooks: SendGrid batches thousands of events per request.
pub struct EventBatch;

impl BodyLimit for EventBatch {
    const MAX: usize = 5 << 20;
}
/// Reports per queued job, so one huge batch does not become one huge job.
const REPORTS_PER_JOB: usize = 500;

/// A webhook body exactly as sent: signatures are computed over these bytes.
pub struct RawBody<L: BodyLimit = EventBatch> {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    limit: std::marker::PhantomData<L>,
}

impl<L: BodyLimit> Payload for RawBody<L> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(_content_type: &str) -> bool {
        // Checked per provider after the signature, so that the answer names the problem.
        true
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("object")))
    }

    fn register(_registry: &mut Registry) {}
}

impl<L: BodyLimit> ParsePayload for RawBody<L> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = crate::validate::read_body(request, body, L::MAX).await?;
        Ok(RawBody {
            bytes: bytes.to_vec(),
            content_type: request.content_type().map(str::to_owned),
            limit: std::marker::PhantomData,
        })
    }
}

poem_openapi::impl_apirequest_for_payload!(RawBody<L>, L: BodyLimit);

pub(crate) fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::invalid_at(&["body"], msg, "value_error")
}

/// The body as JSON, refusing other content types.
pub(crate) fn json_body<L: BodyLimit>(body: &RawBody<L>) -> Result<serde_json::Value, ApiError> {
    let is_json = body
        .content_type
        .as_deref()
        .and_then(|ct| ct.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == "application/json");
    if !is_json {
        return Err(invalid("expected an application/json body"));
    }
    serde_json::from_slice(&body.bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))
}

/// Takes a signed Mailgun token for its one use (`kind` keeps event and inbound tokens
/// apart): the receipt key to give back if the post is not accepted after all, or None when
/// the token was used before (a replay within the signature's time window).
pub(crate) async fn take_mailgun_token(
    state: &AppState,
    kind: &str,
    token: &str,
) -> Result<Option<String>, ApiError> {
    let key = format!("{kind}:{token}");
    let fresh =
        entities::receipts::record(&state.db, "mailgun", &key, None, serde_json::json!({})).await?;
    Ok(fresh.then_some(key))
}

/// Gives a taken token back, so that Mailgun's retry of a post omega could not queue is
/// accepted.
pub(crate) async fn give_back_mailgun_token(state: &AppState, key: &str) {
    if let Err(e) = entities::receipts::forget(&state.db, "mailgun", key).await {
        tracing::error!(error = %e, "could not give back a Mailgun token");
    }
}

pub struct EmailHooksApi {
    pub state: Arc<AppState>,
}

impl EmailHooksApi {
    fn forbidden(provider: ExternalEmailProvider, why: &str) -> ApiError {
        tracing::warn!(%provider, why, "email webhook refused");
        ApiError::forbidden(format!("Invalid {provider} webhook signature"))
    }

    async fn queue(&self, reports: Vec<StatusReport>, trace: &RequestId) -> Result<u32, ApiError> {
        let count = reports.len() as u32;
        let jobs: Vec<Job> = reports
            .chunks(REPORTS_PER_JOB)
            .map(|chunk| {
                Job::UpdateStatus(StatusUpdates {
                    business_id: None,
                    reports: chunk.to_vec(),
                })
            })
            .collect();
        if !jobs.is_empty() {
            let request_id = uuid::Uuid::new_v4().to_string();
            self.state
                .producer
                .enqueue(&jobs, &request_id, Some(&trace.0))
                .await?;
        }
        Ok(count)
    }
}

#[OpenApi]
impl EmailHooksApi {
    /// Handle external email provider webhooks
    ///
    /// `sendgrid`: the Event Webhook (a JSON array of events), ECDSA P-256 signature in
    /// `X-Twilio-Email-Event-Webhook-Signature` over `…-Timestamp` + the raw body, checked
    /// with `OMEGA_SENDGRID_WEBHOOK_PUBLIC_KEY`. `mailgun`: HMAC-SHA256 of timestamp + token
    /// with `OMEGA_MAILGUN_SIGNING_KEY`; timestamps older than five minutes and repeated
    /// tokens are refused. `postmark`: HTTP Basic credentials
    /// (`OMEGA_POSTMARK_WEBHOOK_USER`/`…_PASSWORD`). `ses`: SNS notifications, signature
    /// checked with the certificate from an allow-listed AWS host. A provider that is not
    /// configured, or a bad or missing signature, answers 403 and nothing is recorded.
    /// `updated` counts the events queued for processing.
    #[oai(
        path = "/email/webhooks/:provider",
        method = "post",
        tag = "ApiTags::Email"
    )]
    async fn webhook(
        &self,
        provider: Path<ExternalEmailProvider>,
        #[oai(name = "X-Twilio-Email-Event-Webhook-Signature")] sg_signature: Header<
            Option<String>,
        >,
        #[oai(name = "X-Twilio-Email-Event-Webhook-Timestamp")] sg_timestamp: Header<
            Option<String>,
        >,
        #[oai(name = "Authorization")] authorization: Header<Option<String>>,
        body: RawBody,
        trace: Data<&RequestId>,
    ) -> Result<Json<UpdateSuccessResponse>, ApiError> {
        let provider = provider.0;
        let hooks = &self.state.settings.email_webhooks;
        // A Mailgun token is taken before queueing; given back if the queueing fails, so
        // Mailgun's retry of the same delivery is accepted.
        let mut taken_token: Option<String> = None;
        let reports = match provider {
            ExternalEmailProvider::Sendgrid => {
                let Some(key) = &hooks.sendgrid_key else {
                    return Err(Self::forbidden(provider, "no public key configured"));
                };
                let (Some(sig), Some(ts)) = (sg_signature.0.as_deref(), sg_timestamp.0.as_deref())
                else {
                    return Err(Self::forbidden(provider, "signature headers missing"));
                };
                if !events::sendgrid_verify(key, ts, &body.bytes, sig, Utc::now()) {
                    return Err(Self::forbidden(provider, "signature wrong or stale"));
                }
                events::sendgrid_reports(&json_body(&body)?).map_err(invalid)?
            }
            ExternalEmailProvider::Mailgun => {
                let Some(key) = &hooks.mailgun_signing_key else {
                    return Err(Self::forbidden(provider, "no signing key configured"));
                };
                // The signature is inside the body: read it, verify, then trust the rest.
                let json = json_body(&body)?;
                let Ok(parsed) = events::mailgun_body(&json) else {
                    return Err(Self::forbidden(provider, "signature missing"));
                };
                if !events::mailgun_verify(
                    key,
                    parsed.timestamp,
                    parsed.token,
                    parsed.signature,
                    Utc::now(),
                ) {
                    return Err(Self::forbidden(provider, "signature wrong or stale"));
                }
                // A token is used once: a replay within the time window is refused too.
                let Some(token) = take_mailgun_token(&self.state, "token", parsed.token).await?
                else {
                    return Err(Self::forbidden(provider, "token seen before"));
                };
                taken_token = Some(token);
                events::mailgun_reports(parsed.event).map_err(invalid)?
            }
            ExternalEmailProvider::Postmark => {
                let Some((user, password)) = &hooks.postmark_basic else {
                    return Err(Self::forbidden(provider, "no credentials configured"));
                };
                if !events::basic_matches(authorization.0.as_deref(), user, password) {
                    return Err(Self::forbidden(provider, "credentials wrong or missing"));
                }
                events::postmark_reports(&json_body(&body)?).map_err(invalid)?
            }
            ExternalEmailProvider::Ses => {
                let json = json_body(&body)?;
                match self.state.sns.verify(&json, Utc::now()).await {
                    Ok(notification) => match notification {
                        crate::sns::Notification::Confirmed => vec![],
                        crate::sns::Notification::Message(message) => {
                            crate::sns::ses_reports(&message).map_err(invalid)?
                        }
                    },
                    Err(crate::sns::SnsError::Forbidden(why)) => {
                        return Err(Self::forbidden(provider, &why));
                    }
                    Err(crate::sns::SnsError::Invalid(why)) => return Err(invalid(why)),
                    Err(crate::sns::SnsError::Unavailable(why)) => {
                        return Err(ApiError::unavailable(why));
                    }
                }
            }
        };
        let updated = match self.queue(reports, &trace).await {
            Ok(n) => n,
            Err(e) => {
                if let Some(token) = taken_token {
                    give_back_mailgun_token(&self.state, &token).await;
                }
                return Err(e);
            }
        };
        Ok(Json(UpdateSuccessResponse {
            success: true,
            updated,
        }))
    }
}
