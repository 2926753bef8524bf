//! Onboarding: `POST /business/onboard` queues an import; its status is readable at once.
use std::collections::HashSet;
use std::sync::Arc;

use entities::onboard::{self, OnboardClient, OnboardLocation, OnboardStaff, Onboarding};
use jobs::{Job, OnboardJob};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::{Deserialize, Serialize};

use super::ApiTags;
use super::idempotency;
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

const MAX_CLIENTS: usize = 100_000;
const MAX_STAFF: usize = 10_000;
const MAX_LOCATIONS: usize = 5_000;

/// A business with its locations, staff and clients. Onboarding again updates in place.
#[derive(Debug, Object, Deserialize)]
pub struct BusinessOnboardRequest {
    pub business_id: i64,
    pub name: String,
    /// IANA time zone, e.g. `America/New_York`.
    pub timezone: String,
    #[serde(default)]
    pub locations: Vec<OnboardLocation>,
    #[serde(default)]
    pub staff: Vec<OnboardStaff>,
    /// Up to 100,000 clients.
    #[serde(default)]
    pub clients: Vec<OnboardClient>,
    /// Per-business provider credentials. Not supported by this version yet: a request that
    /// carries them is refused (422) rather than having them silently dropped.
    #[serde(default)]
    pub providers: Option<serde_json::Value>,
}

fn valid_timezone(tz: &str) -> bool {
    tz == "UTC"
        || (tz.len() <= 64
            && tz.contains('/')
            && tz.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
            }))
}

fn optional_phone(c: &mut Checker, field: &str, value: &mut Option<String>) {
    if let Some(v) = value.as_mut() {
        c.phone(field, v);
    }
}

fn optional_email(c: &mut Checker, field: &str, value: &Option<String>) {
    if let Some(v) = value {
        c.email(field, v);
    }
}

/// Reports ids that occur twice in one list.
fn unique_ids(c: &mut Checker, list: &str, ids: impl Iterator<Item = i64>) {
    let mut seen = HashSet::new();
    c.at(list, |c| {
        for (i, id) in ids.enumerate() {
            if !seen.insert(id) {
                c.at(i, |c| {
                    c.fail(
                        "id",
                        format!("duplicate id {id} in this request"),
                        "value_error.duplicate",
                    )
                });
            }
        }
    });
}

impl Validate for BusinessOnboardRequest {
    const MAX_BODY: usize = 64 << 20;

    fn validate(&mut self, c: &mut Checker) {
        c.positive("business_id", self.business_id);
        c.length("name", &self.name, 1, 255);
        if !valid_timezone(&self.timezone) {
            c.fail(
                "timezone",
                "value is not a valid IANA time zone",
                "value_error.timezone",
            );
        }
        if self.providers.as_ref().is_some_and(|p| !p.is_null()) {
            c.fail(
                "providers",
                "per-business provider credentials are not supported by this version",
                "value_error.unsupported",
            );
        }
        c.count("locations", self.locations.len(), 0, MAX_LOCATIONS);
        c.count("staff", self.staff.len(), 0, MAX_STAFF);
        c.count("clients", self.clients.len(), 0, MAX_CLIENTS);
        unique_ids(c, "locations", self.locations.iter().map(|l| l.id));
        unique_ids(c, "staff", self.staff.iter().map(|s| s.id));
        unique_ids(c, "clients", self.clients.iter().map(|s| s.id));
        c.at("locations", |c| {
            for (i, l) in self.locations.iter_mut().enumerate() {
                c.at(i, |c| {
                    c.positive("id", l.id);
                    c.length("name", &l.name, 1, 255);
                    optional_phone(c, "phone_number", &mut l.phone_number);
                    optional_email(c, "email", &l.email);
                    if l.timezone.as_deref().is_some_and(|tz| !valid_timezone(tz)) {
                        c.fail(
                            "timezone",
                            "value is not a valid IANA time zone",
                            "value_error.timezone",
                        );
                    }
                });
            }
        });
        c.at("staff", |c| {
            for (i, s) in self.staff.iter_mut().enumerate() {
                c.at(i, |c| {
                    c.positive("id", s.id);
                    c.length("first_name", &s.first_name, 0, 255);
                    c.length("last_name", &s.last_name, 0, 255);
                    optional_phone(c, "phone", &mut s.phone);
                    optional_email(c, "email", &s.email);
                });
            }
        });
        c.at("clients", |c| {
            for (i, cl) in self.clients.iter_mut().enumerate() {
                c.at(i, |c| {
                    c.positive("id", cl.id);
                    optional_phone(c, "phone", &mut cl.phone);
                    optional_email(c, "email", &cl.email);
                });
            }
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum OnboardingState {
    Queued,
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Object, Serialize, Deserialize)]
pub struct OnboardAccepted {
    pub request_id: String,
    pub status: OnboardingState,
}

#[derive(ApiResponse)]
pub enum OnboardResponse {
    /// Queued; follow it at `GET /business/{business_id}/onboarding-status`.
    #[oai(status = 202)]
    Accepted(
        Json<OnboardAccepted>,
        #[oai(header = "Idempotency-Replayed")] Option<String>,
    ),
}

#[derive(Debug, Object)]
pub struct OnboardingCounts {
    pub locations: u32,
    pub staff: u32,
    pub clients: u32,
}

#[derive(Debug, Object)]
pub struct OnboardingStatus {
    pub business_id: i64,
    pub request_id: String,
    pub status: OnboardingState,
    pub counts: OnboardingCounts,
    pub error: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

pub struct BusinessApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl BusinessApi {
    /// Onboard a business
    ///
    /// Platform key. Queues an import that upserts the business, its locations, staff and
    /// clients; onboarding again updates and never duplicates.
    #[oai(path = "/business/onboard", method = "post", tag = "ApiTags::Business")]
    async fn onboard(
        &self,
        auth: Auth,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: ValidJson<BusinessOnboardRequest>,
        trace: Data<&RequestId>,
    ) -> Result<OnboardResponse, ApiError> {
        auth.principal().require_platform()?;
        let ValidJson { value, body_hash } = body;
        let state = &self.state;
        let (accepted, replayed) = idempotency::once(
            state,
            auth.principal(),
            idempotency_key.0,
            "business/onboard",
            &body_hash,
            || async {
                let request_id = uuid::Uuid::new_v4().to_string();
                let business_id = value.business_id;
                onboard::start_run(&state.db, &request_id, business_id).await?;
                let job = Job::Onboard(OnboardJob {
                    request_id: request_id.clone(),
                    data: Onboarding {
                        business_id,
                        name: value.name,
                        timezone: value.timezone,
                        locations: value.locations,
                        staff: value.staff,
                        clients: value.clients,
                    },
                });
                if let Err(e) = state
                    .producer
                    .enqueue(&[job], &request_id, Some(&trace.0.0))
                    .await
                {
                    let note = Some("not accepted: the queue was unavailable".to_owned());
                    if let Err(db) =
                        onboard::set_run_status(&state.db, &request_id, onboard::FAILED, note).await
                    {
                        tracing::warn!(error = %db, "could not mark an unqueued onboarding failed");
                    }
                    return Err(e.into());
                }
                Ok(OnboardAccepted {
                    request_id,
                    status: OnboardingState::Queued,
                })
            },
        )
        .await?;
        Ok(OnboardResponse::Accepted(
            Json(accepted),
            replayed.then(|| "true".to_owned()),
        ))
    }

    /// Onboarding status
    ///
    /// The latest onboarding of the business. Platform key or the business's own key.
    #[oai(
        path = "/business/:business_id/onboarding-status",
        method = "get",
        tag = "ApiTags::Business"
    )]
    async fn onboarding_status(
        &self,
        auth: Auth,
        business_id: Path<i64>,
    ) -> Result<Json<OnboardingStatus>, ApiError> {
        auth.principal().require_key_for(business_id.0)?;
        let run = onboard::latest_run(&self.state.db, business_id.0)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!("No onboarding of business {}", business_id.0))
            })?;
        let status = match run.status.as_str() {
            onboard::QUEUED => OnboardingState::Queued,
            onboard::RUNNING => OnboardingState::Running,
            onboard::COMPLETED => OnboardingState::Completed,
            onboard::FAILED => OnboardingState::Failed,
            other => {
                return Err(ApiError::internal(
                    "onboarding run has an unknown status",
                    other,
                ));
            }
        };
        Ok(Json(OnboardingStatus {
            business_id: run.business_id,
            request_id: run.request_id,
            status,
            counts: OnboardingCounts {
                locations: run.locations as u32,
                staff: run.staff as u32,
                clients: run.clients as u32,
            },
            error: run.error,
            updated_at: run.updated_at,
        }))
    }
}
