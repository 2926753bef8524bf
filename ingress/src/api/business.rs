//! Onboarding: `POST /business/onboard` queues an import; its status is readable at once.
use std::collections::HashSet;
use std::sync::Arc;

use entities::credentials::ProviderCredentials;
use entities::onboard::{
    self, OnboardClient, OnboardLocation, OnboardStaff, Onboarding, RowError, SealedCredential,
};
use entities::types::Provider;
use jobs::{Job, OnboardJob};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::{Deserialize, Serialize};

use super::ApiTags;
use super::enqueue::{Owner, Submission, Undo, Work, enqueue};
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

const MAX_CLIENTS: usize = 100_000;
const MAX_STAFF: usize = 10_000;
const MAX_LOCATIONS: usize = 5_000;
const MAX_EMAIL_DOMAINS: usize = 100;

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
    /// Email domains the business owns: it may send from any address on them (besides its
    /// locations' addresses and its own email account's). Omitted: unchanged.
    #[serde(default)]
    #[oai(nullable)]
    pub email_domains: Option<Vec<String>>,
    /// The business's own provider accounts. Stored encrypted; never returned or logged.
    #[serde(default)]
    #[oai(nullable)]
    pub providers: Option<ProviderCredentials>,
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

impl Validate for BusinessOnboardRequest {
    const MAX_BODY: usize = 64 << 20;

    /// The business itself must be valid (else 422); bad rows are only reported (see `split_rows`).
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
        c.count("locations", self.locations.len(), 0, MAX_LOCATIONS);
        c.count("staff", self.staff.len(), 0, MAX_STAFF);
        c.count("clients", self.clients.len(), 0, MAX_CLIENTS);
        if let Some(p) = &self.providers {
            c.at("providers", |c| validate_providers(c, p));
        }
        if let Some(domains) = self.email_domains.as_mut() {
            c.count("email_domains", domains.len(), 0, MAX_EMAIL_DOMAINS);
            c.at("email_domains", |c| {
                for (i, d) in domains.iter_mut().enumerate() {
                    *d = d.trim().to_ascii_lowercase();
                    if !crate::validate::is_email(&format!("postmaster@{d}")) {
                        c.at(i, |c| {
                            c.fail("", "value is not a valid domain name", "value_error.domain")
                        });
                    }
                }
            });
        }
    }
}

fn sid(c: &mut Checker, field: &str, value: &str, prefix: &str) {
    let ok = value.len() == 34
        && value.starts_with(prefix)
        && value[2..].chars().all(|ch| ch.is_ascii_hexdigit());
    if !ok {
        c.fail(
            field,
            format!("value is not a Twilio SID ({prefix} and 32 hex digits)"),
            "value_error.sid",
        );
    }
}

fn validate_providers(c: &mut Checker, p: &ProviderCredentials) {
    if let Some(t) = &p.twilio {
        c.at("twilio", |c| {
            sid(c, "account_sid", &t.account_sid, "AC");
            c.length("auth_token", &t.auth_token, 16, 128);
            if let Some(k) = &t.api_key_sid {
                sid(c, "api_key_sid", k, "SK");
            }
            if let Some(s) = &t.api_key_secret {
                c.length("api_key_secret", s, 16, 128);
            }
            if t.api_key_sid.is_some() != t.api_key_secret.is_some() {
                c.fail(
                    "api_key_secret",
                    "api_key_sid and api_key_secret go together",
                    "value_error",
                );
            }
            if let Some(a) = &t.twiml_app_sid {
                sid(c, "twiml_app_sid", a, "AP");
            }
        });
    }
    if let Some(e) = &p.email {
        c.at("email", |c| {
            c.email("from_email", &e.from_email);
            match e.provider {
                Provider::Smtp => match &e.smtp_url {
                    Some(url) if url.starts_with("smtp://") || url.starts_with("smtps://") => {}
                    _ => c.fail(
                        "smtp_url",
                        "an smtp:// or smtps:// URL is required for smtp",
                        "value_error.url",
                    ),
                },
                Provider::Sendgrid | Provider::Mailgun | Provider::Ses | Provider::Postmark => {
                    let required: &[(&str, &Option<String>)] = match e.provider {
                        Provider::Mailgun => &[("api_key", &e.api_key), ("domain", &e.domain)],
                        Provider::Ses => &[
                            ("api_key", &e.api_key),
                            ("secret_key", &e.secret_key),
                            ("region", &e.region),
                        ],
                        _ => &[("api_key", &e.api_key)],
                    };
                    for (field, value) in required {
                        if value.as_deref().is_none_or(str::is_empty) {
                            c.fail(field, "field required for this provider", "missing");
                        }
                    }
                    if let Some(region) = &e.region
                        && !is_region(e.provider, region)
                    {
                        let why = match e.provider {
                            Provider::Mailgun => "a Mailgun region is `us` or `eu`",
                            _ => "an AWS region looks like `us-east-1`",
                        };
                        c.fail("region", why, "value_error.region");
                    }
                }
                _ => c.fail(
                    "provider",
                    "value is not an email provider",
                    "value_error.provider",
                ),
            }
        });
    }
}

/// A region the provider has: Mailgun's `us` or `eu`, or an AWS region name (it becomes
/// part of the SES endpoint's host name, so nothing else is let through).
fn is_region(provider: Provider, region: &str) -> bool {
    match provider {
        Provider::Mailgun => matches!(region, "us" | "eu"),
        _ => {
            let parts: Vec<&str> = region.split('-').collect();
            parts.len() >= 3
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                })
                && parts
                    .last()
                    .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
        }
    }
}

/// Checks each row on its own: a row with a problem (an invalid phone or address, an id used
/// twice) is left out and reported; the others are imported, with phones normalised.
fn rows<T>(
    section: &str,
    list: Vec<T>,
    id: impl Fn(&T) -> i64,
    check: impl Fn(&mut T, &mut Checker),
) -> (Vec<T>, Vec<RowError>) {
    let mut seen = HashSet::new();
    let mut good = Vec::with_capacity(list.len());
    let mut errors = Vec::new();
    for (index, mut row) in list.into_iter().enumerate() {
        let row_id = id(&row);
        let mut c = Checker::new(section);
        if !seen.insert(row_id) {
            c.fail(
                "id",
                format!("duplicate id {row_id} in this request"),
                "value_error.duplicate",
            );
        }
        c.positive("id", row_id);
        check(&mut row, &mut c);
        match c.into_result() {
            Ok(()) => good.push(row),
            Err(problems) => errors.push(RowError {
                section: section.to_owned(),
                index: index as u32,
                id: Some(row_id),
                reason: problems
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {}",
                            p.loc.last().and_then(|v| v.as_str()).unwrap_or("row"),
                            p.msg
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }
    (good, errors)
}

impl BusinessOnboardRequest {
    /// Splits the rows into those to import and those to report.
    fn split_rows(&mut self) -> Vec<RowError> {
        let (locations, mut errors) = rows(
            "locations",
            std::mem::take(&mut self.locations),
            |l| l.id,
            |l, c| {
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
            },
        );
        let (staff, e) = rows(
            "staff",
            std::mem::take(&mut self.staff),
            |s| s.id,
            |s, c| {
                c.length("first_name", &s.first_name, 0, 255);
                c.length("last_name", &s.last_name, 0, 255);
                optional_phone(c, "phone", &mut s.phone);
                optional_email(c, "email", &s.email);
            },
        );
        errors.extend(e);
        let (clients, e) = rows(
            "clients",
            std::mem::take(&mut self.clients),
            |cl| cl.id,
            |cl, c| {
                optional_phone(c, "phone", &mut cl.phone);
                optional_email(c, "email", &cl.email);
            },
        );
        errors.extend(e);
        (self.locations, self.staff, self.clients) = (locations, staff, clients);
        errors
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
    #[oai(nullable)]
    pub error: Option<String>,
    /// Rows that were not imported, with why; the others were.
    pub errors: Vec<RowError>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Seals each provider's credentials for the queue and the database.
fn seal(
    sealer: &entities::secrets::Sealer,
    providers: Option<ProviderCredentials>,
) -> Result<Vec<SealedCredential>, ApiError> {
    let Some(p) = providers else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if let Some(t) = p.twilio {
        let json =
            serde_json::to_vec(&t).map_err(|e| ApiError::internal("encoding credentials", e))?;
        out.push(SealedCredential {
            kind: "twilio".into(),
            sealed: sealer.seal(&json),
            provider: Some(entities::types::Provider::Twilio),
        });
    }
    if let Some(e) = p.email {
        let json =
            serde_json::to_vec(&e).map_err(|e| ApiError::internal("encoding credentials", e))?;
        out.push(SealedCredential {
            kind: "email".into(),
            sealed: sealer.seal(&json),
            provider: Some(e.provider),
        });
    }
    Ok(out)
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
        let ValidJson {
            mut value,
            body_hash,
        } = body;
        let state = &self.state;
        let sub = Submission {
            owner: Owner::Platform,
            idempotency_key: idempotency_key.0,
            route: "business/onboard",
            body_hash,
            trace: &trace,
        };
        let (accepted, replayed) = enqueue(state, &auth, sub, |request_id| async move {
            let row_errors = value.split_rows();
            let credentials = seal(&state.settings.sealer, value.providers.take())?;
            let business_id = value.business_id;
            onboard::start_run(&state.db, &request_id, business_id).await?;
            // A run the queue never got is failed, not left queued forever.
            let undo: Undo = {
                let (db, request_id) = (state.db.clone(), request_id.clone());
                Box::pin(async move {
                    let note = Some("not accepted: the queue was unavailable".to_owned());
                    if let Err(e) =
                        onboard::set_run_status(&db, &request_id, onboard::FAILED, note).await
                    {
                        tracing::warn!(error = %e, "could not mark an unqueued onboarding failed");
                    }
                })
            };
            let job = Job::Onboard(OnboardJob {
                request_id: request_id.clone(),
                data: Onboarding {
                    business_id,
                    name: value.name,
                    timezone: value.timezone,
                    locations: value.locations,
                    staff: value.staff,
                    clients: value.clients,
                    email_domains: value.email_domains,
                    credentials,
                    row_errors,
                },
            });
            Ok(Work {
                jobs: vec![job],
                response: OnboardAccepted {
                    request_id,
                    status: OnboardingState::Queued,
                },
                undo: Some(undo),
            })
        })
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
        auth.principal().can_write(business_id.0)?;
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
            errors: serde_json::from_value(run.row_errors).unwrap_or_default(),
            updated_at: run.updated_at,
        }))
    }
}
