//! `POST …/sms/status` and `POST …/email/status`: status reports from the platform, queued as
//! one UpdateStatus job. The status only moves forward; every report is kept as an event.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::status::{MessageRef, StatusReport};
use entities::types::MessageStatus;
use jobs::{Job, StatusUpdates};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::{Deserialize, Serialize};

use super::ApiTags;
use super::enqueue::{Owner, Submission, Work, enqueue};
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

const MAX_UPDATES: usize = 1000;

/// One report: the message by omega's `message_id` or the provider's `provider_message_id`.
#[derive(Debug, Object, Deserialize)]
pub struct StatusUpdateItem {
    #[serde(default)]
    #[oai(nullable)]
    pub message_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub provider_message_id: Option<String>,
    pub status: MessageStatus,
    #[serde(default)]
    #[oai(nullable)]
    pub error_code: Option<String>,
    #[serde(default)]
    #[oai(nullable)]
    pub error_message: Option<String>,
    /// When it happened (default: when received).
    #[serde(default)]
    #[oai(nullable)]
    pub occurred_at: Option<DateTime<Utc>>,
}

/// SMS status reports (1 to 1000).
#[derive(Debug, Object, Deserialize)]
pub struct UpdateSmsStatusRequest {
    pub updates: Vec<StatusUpdateItem>,
}

/// Email status reports (1 to 1000).
#[derive(Debug, Object, Deserialize)]
pub struct UpdateEmailStatusRequest {
    pub updates: Vec<StatusUpdateItem>,
}

fn validate_updates(c: &mut Checker, updates: &[StatusUpdateItem]) {
    c.count("updates", updates.len(), 1, MAX_UPDATES);
    c.at("updates", |c| {
        for (i, u) in updates.iter().enumerate() {
            c.at(i, |c| {
                match (&u.message_id, &u.provider_message_id) {
                    (Some(id), None) => c.positive("message_id", *id),
                    (None, Some(pid)) => c.length("provider_message_id", pid, 1, 255),
                    _ => c.fail(
                        "",
                        "give exactly one of message_id and provider_message_id",
                        "value_error",
                    ),
                }
                if let Some(code) = &u.error_code {
                    c.length("error_code", code, 1, 64);
                }
                if let Some(msg) = &u.error_message {
                    c.length("error_message", msg, 1, 2000);
                }
            });
        }
    });
}

impl Validate for UpdateSmsStatusRequest {
    fn validate(&mut self, c: &mut Checker) {
        validate_updates(c, &self.updates);
    }
}

impl Validate for UpdateEmailStatusRequest {
    fn validate(&mut self, c: &mut Checker) {
        validate_updates(c, &self.updates);
    }
}

/// Reports accepted for processing.
#[derive(Debug, Object, Serialize, Deserialize)]
pub struct UpdateSuccessResponse {
    pub success: bool,
    pub updated: u32,
}

fn reports(business_id: i64, updates: Vec<StatusUpdateItem>) -> Vec<StatusReport> {
    let received = Utc::now();
    updates
        .into_iter()
        .map(|u| {
            let message = match (u.message_id, u.provider_message_id) {
                (Some(message_id), _) => MessageRef::Id {
                    business_id,
                    message_id,
                },
                (None, Some(pid)) => MessageRef::Provider {
                    business_id: Some(business_id),
                    provider: None,
                    provider_message_id: pid,
                },
                (None, None) => unreachable!("validated: one of the two is given"),
            };
            // The same report sent twice is recorded once.
            let dedupe_key = format!(
                "api:{}:{}:{}",
                u.status,
                u.error_code.as_deref().unwrap_or(""),
                u.occurred_at
                    .map(|t| t.timestamp_millis().to_string())
                    .unwrap_or_default()
            );
            StatusReport {
                message,
                status: Some(u.status),
                error_code: u.error_code,
                error_message: u.error_message,
                occurred_at: u.occurred_at.unwrap_or(received),
                source: "api".into(),
                dedupe_key,
                opt_out: None,
            }
        })
        .collect()
}

pub struct StatusApi {
    pub state: Arc<AppState>,
}

impl StatusApi {
    /// Queues one UpdateStatus job with the request's reports.
    async fn accept(
        &self,
        auth: &Auth,
        sub: Submission<'_>,
        business_id: i64,
        updates: Vec<StatusUpdateItem>,
    ) -> Result<Json<UpdateSuccessResponse>, ApiError> {
        let (response, _) = enqueue(&self.state, auth, sub, |_request_id| async move {
            let updated = updates.len() as u32;
            let job = Job::UpdateStatus(StatusUpdates {
                business_id: Some(business_id),
                reports: reports(business_id, updates),
            });
            Ok(Work::new(
                vec![job],
                UpdateSuccessResponse {
                    success: true,
                    updated,
                },
            ))
        })
        .await?;
        Ok(Json(response))
    }
}

#[OpenApi]
impl StatusApi {
    /// Update SMS delivery status
    ///
    /// Queues the reports; `updated` counts those accepted for processing. The status only
    /// moves forward; every report is kept in the message's history; a repeat is kept once.
    #[oai(
        path = "/businesses/:business_id/sms/status",
        method = "post",
        tag = "ApiTags::Sms"
    )]
    async fn sms_status(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: ValidJson<UpdateSmsStatusRequest>,
        trace: Data<&RequestId>,
    ) -> Result<Json<UpdateSuccessResponse>, ApiError> {
        let ValidJson { value, body_hash } = body;
        let sub = Submission {
            owner: Owner::Business(business_id.0),
            idempotency_key: idempotency_key.0,
            route: "sms/status",
            body_hash,
            trace: &trace,
        };
        self.accept(&auth, sub, business_id.0, value.updates).await
    }

    /// Update email delivery status
    #[oai(
        path = "/businesses/:business_id/email/status",
        method = "post",
        tag = "ApiTags::Email"
    )]
    async fn email_status(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: ValidJson<UpdateEmailStatusRequest>,
        trace: Data<&RequestId>,
    ) -> Result<Json<UpdateSuccessResponse>, ApiError> {
        let ValidJson { value, body_hash } = body;
        let sub = Submission {
            owner: Owner::Business(business_id.0),
            idempotency_key: idempotency_key.0,
            route: "email/status",
            body_hash,
            trace: &trace,
        };
        self.accept(&auth, sub, business_id.0, value.updates).await
    }
}
