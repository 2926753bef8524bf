//! Webhook endpoints: a business's (its key or the platform key) and platform-wide ones
//! (`/admin/webhooks`, platform key), which receive every business's events. Create (the
//! secret shown once), list, delete, re-enable after automatic disabling, and the attempts.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::event_log::EventType;
use entities::webhooks::{self, NewWebhook};
use entities::{webhook, webhook_attempt};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::paging::{PageInfo, PageNumber, PageSize, page_info, paging};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

#[derive(Debug, Object, Deserialize)]
pub struct WebhookCreateRequest {
    /// Where events are POSTed: https, and not a private, loopback or link-local address
    /// (unless the deployment sets `OMEGA_ALLOW_PRIVATE_URLS=true`).
    pub url: String,
    /// The event types it receives (see `GET /businesses/{business_id}/events`); all of
    /// them when absent.
    #[serde(default)]
    #[oai(nullable)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    #[oai(nullable)]
    pub description: Option<String>,
}

impl Validate for WebhookCreateRequest {
    fn validate(&mut self, c: &mut Checker) {
        self.url = self.url.trim().to_owned();
        c.length("url", &self.url, 1, 2000);
        if let Some(types) = &self.event_types {
            c.count("event_types", types.len(), 1, EventType::ALL.len());
            c.at("event_types", |c| {
                for (i, t) in types.iter().enumerate() {
                    if t.parse::<EventType>().is_err() {
                        c.at(i, |c| {
                            c.fail("", format!("unknown event type {t:?}"), "value_error")
                        });
                    }
                }
            });
        }
        if let Some(d) = &self.description {
            c.length("description", d, 0, 500);
        }
    }
}

/// A new endpoint: `secret` (`whsec_…`, Standard Webhooks) is in this answer only.
#[derive(Debug, Object)]
pub struct WebhookCreated {
    pub id: i64,
    pub url: String,
    /// Null: every type.
    #[oai(nullable)]
    pub event_types: Option<Vec<String>>,
    #[oai(nullable)]
    pub description: Option<String>,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// An endpoint as listed: never its secret.
#[derive(Debug, Object)]
pub struct WebhookItem {
    pub id: i64,
    /// Null for a platform-wide endpoint.
    #[oai(nullable)]
    pub business_id: Option<i64>,
    pub url: String,
    #[oai(nullable)]
    pub event_types: Option<Vec<String>>,
    #[oai(nullable)]
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Since when every attempt has failed.
    #[oai(nullable)]
    pub failing_since: Option<DateTime<Utc>>,
    /// Set when omega stopped delivering to it (it kept failing); `POST …/enable` resumes.
    #[oai(nullable)]
    pub disabled_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub disabled_reason: Option<String>,
}

impl From<webhook::Model> for WebhookItem {
    fn from(m: webhook::Model) -> Self {
        WebhookItem {
            event_types: webhooks::event_types(&m),
            id: m.id,
            business_id: m.business_id,
            url: m.url,
            description: m.description,
            created_at: m.created_at,
            failing_since: m.failing_since,
            disabled_at: m.disabled_at,
            disabled_reason: m.disabled_reason,
        }
    }
}

/// One attempt to deliver an event.
#[derive(Debug, Object)]
pub struct WebhookAttemptItem {
    pub id: i64,
    /// The event (`webhook-id`).
    pub event_id: String,
    pub event_type: String,
    pub attempt: i32,
    /// Null when no answer came (timeout, connection error).
    #[oai(nullable)]
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// Null when it succeeded.
    #[oai(nullable)]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<webhook_attempt::Model> for WebhookAttemptItem {
    fn from(m: webhook_attempt::Model) -> Self {
        WebhookAttemptItem {
            id: m.id,
            event_id: m.event_id,
            event_type: m.event_type,
            attempt: m.attempt,
            status_code: m.status_code,
            latency_ms: m.latency_ms,
            error: m.error,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct PaginatedWebhookAttempts {
    pub items: Vec<WebhookAttemptItem>,
    #[oai(flatten)]
    pub page: PageInfo,
}

#[derive(ApiResponse)]
pub enum WebhookCreatedResponse {
    #[oai(status = 201)]
    Created(Json<WebhookCreated>),
}

#[derive(ApiResponse)]
pub enum WebhookDeleted {
    #[oai(status = 204)]
    Deleted,
}

pub struct WebhooksApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl WebhooksApi {
    /// Create a webhook endpoint
    ///
    /// The business's key or the platform key. Events of the business are POSTed to `url`,
    /// signed by the Standard Webhooks spec with the `secret` in this answer (shown once).
    #[oai(
        path = "/businesses/:business_id/webhooks",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn create(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        body: ValidJson<WebhookCreateRequest>,
    ) -> Result<WebhookCreatedResponse, ApiError> {
        auth.principal().can_write(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        create(&self.state, Some(business_id.0), body.value).await
    }

    /// List a business's webhook endpoints
    #[oai(
        path = "/businesses/:business_id/webhooks",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    async fn list(
        &self,
        auth: Auth,
        business_id: Path<i64>,
    ) -> Result<Json<Vec<WebhookItem>>, ApiError> {
        auth.principal().can_write(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        list(&self.state, Some(business_id.0)).await
    }

    /// Delete a webhook endpoint
    ///
    /// Deliveries still queued for it are dropped.
    #[oai(
        path = "/businesses/:business_id/webhooks/:webhook_id",
        method = "delete",
        tag = "ApiTags::Businesses"
    )]
    async fn delete(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        webhook_id: Path<i64>,
    ) -> Result<WebhookDeleted, ApiError> {
        auth.principal().can_write(business_id.0)?;
        webhooks::delete(&self.state.db, Some(business_id.0), webhook_id.0).await?;
        Ok(WebhookDeleted::Deleted)
    }

    /// Re-enable a webhook endpoint
    ///
    /// After omega disabled it for failing; deliveries resume with new events (dead-lettered
    /// ones can be replayed with the operators' tooling).
    #[oai(
        path = "/businesses/:business_id/webhooks/:webhook_id/enable",
        method = "post",
        tag = "ApiTags::Businesses"
    )]
    async fn enable(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        webhook_id: Path<i64>,
    ) -> Result<Json<WebhookItem>, ApiError> {
        auth.principal().can_write(business_id.0)?;
        let m = webhooks::enable(&self.state.db, Some(business_id.0), webhook_id.0).await?;
        Ok(Json(m.into()))
    }

    /// List a webhook endpoint's delivery attempts
    ///
    /// Newest first: the endpoint's answer (status code), how long it took, and the error.
    #[oai(
        path = "/businesses/:business_id/webhooks/:webhook_id/attempts",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    async fn attempts(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        webhook_id: Path<i64>,
        page: poem_openapi::param::Query<PageNumber>,
        page_size: poem_openapi::param::Query<PageSize>,
    ) -> Result<Json<PaginatedWebhookAttempts>, ApiError> {
        auth.principal().can_write(business_id.0)?;
        attempts(
            &self.state,
            Some(business_id.0),
            webhook_id.0,
            page.0,
            page_size.0,
        )
        .await
    }

    /// Create a platform-wide webhook endpoint
    ///
    /// Platform key. It receives every business's events (each names its `business_id`).
    #[oai(path = "/admin/webhooks", method = "post", tag = "ApiTags::Operators")]
    async fn create_platform(
        &self,
        auth: Auth,
        body: ValidJson<WebhookCreateRequest>,
    ) -> Result<WebhookCreatedResponse, ApiError> {
        auth.principal().can_administer()?;
        create(&self.state, None, body.value).await
    }

    /// List platform-wide webhook endpoints
    #[oai(path = "/admin/webhooks", method = "get", tag = "ApiTags::Operators")]
    async fn list_platform(&self, auth: Auth) -> Result<Json<Vec<WebhookItem>>, ApiError> {
        auth.principal().can_administer()?;
        list(&self.state, None).await
    }

    /// Delete a platform-wide webhook endpoint
    #[oai(
        path = "/admin/webhooks/:webhook_id",
        method = "delete",
        tag = "ApiTags::Operators"
    )]
    async fn delete_platform(
        &self,
        auth: Auth,
        webhook_id: Path<i64>,
    ) -> Result<WebhookDeleted, ApiError> {
        auth.principal().can_administer()?;
        webhooks::delete(&self.state.db, None, webhook_id.0).await?;
        Ok(WebhookDeleted::Deleted)
    }

    /// Re-enable a platform-wide webhook endpoint
    #[oai(
        path = "/admin/webhooks/:webhook_id/enable",
        method = "post",
        tag = "ApiTags::Operators"
    )]
    async fn enable_platform(
        &self,
        auth: Auth,
        webhook_id: Path<i64>,
    ) -> Result<Json<WebhookItem>, ApiError> {
        auth.principal().can_administer()?;
        let m = webhooks::enable(&self.state.db, None, webhook_id.0).await?;
        Ok(Json(m.into()))
    }

    /// List a platform-wide webhook endpoint's delivery attempts
    #[oai(
        path = "/admin/webhooks/:webhook_id/attempts",
        method = "get",
        tag = "ApiTags::Operators"
    )]
    async fn attempts_platform(
        &self,
        auth: Auth,
        webhook_id: Path<i64>,
        page: poem_openapi::param::Query<PageNumber>,
        page_size: poem_openapi::param::Query<PageSize>,
    ) -> Result<Json<PaginatedWebhookAttempts>, ApiError> {
        auth.principal().can_administer()?;
        attempts(&self.state, None, webhook_id.0, page.0, page_size.0).await
    }
}

async fn create(
    state: &AppState,
    owner: Option<i64>,
    body: WebhookCreateRequest,
) -> Result<WebhookCreatedResponse, ApiError> {
    let url = state
        .settings
        .urls
        .check_resolved(&body.url)
        .await
        .map_err(|e| match e {
            entities::Error::Invalid(why) => {
                ApiError::invalid_at(&["body", "url"], why, "value_error")
            }
            other => other.into(),
        })?;
    let event_types = body
        .event_types
        .map(|ts| ts.iter().filter_map(|t| t.parse().ok()).collect());
    let new = NewWebhook {
        business_id: owner,
        url: url.to_string(),
        event_types,
        description: body.description,
    };
    let (m, secret) =
        webhooks::create(&state.db, &state.settings.webhook_sealer, new, Utc::now()).await?;
    tracing::info!(webhook_id = m.id, business_id = ?owner, "webhook endpoint created");
    Ok(WebhookCreatedResponse::Created(Json(WebhookCreated {
        event_types: webhooks::event_types(&m),
        id: m.id,
        url: m.url,
        description: m.description,
        secret: secret.to_text(),
        created_at: m.created_at,
    })))
}

async fn list(state: &AppState, owner: Option<i64>) -> Result<Json<Vec<WebhookItem>>, ApiError> {
    let rows = webhooks::list(&state.db, owner).await?;
    Ok(Json(rows.into_iter().map(WebhookItem::from).collect()))
}

async fn attempts(
    state: &AppState,
    owner: Option<i64>,
    webhook_id: i64,
    page: PageNumber,
    page_size: PageSize,
) -> Result<Json<PaginatedWebhookAttempts>, ApiError> {
    webhooks::find(&state.db, owner, webhook_id).await?;
    let paging = paging(page, page_size);
    let found = webhooks::attempts(&state.db, webhook_id, paging).await?;
    Ok(Json(PaginatedWebhookAttempts {
        items: found
            .items
            .into_iter()
            .map(WebhookAttemptItem::from)
            .collect(),
        page: page_info(paging, found.total),
    }))
}
