//! API keys of a business (platform key): create (shown once), list, revoke.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::api_key;
use entities::keys::{self, KeyKind};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

#[derive(Debug, Object, Deserialize)]
pub struct ApiKeyCreateRequest {
    /// What the key is for, e.g. the integration that will use it.
    pub name: String,
}

impl Validate for ApiKeyCreateRequest {
    fn validate(&mut self, c: &mut Checker) {
        c.length("name", self.name.trim(), 1, 100);
    }
}

/// A new key: `key` is shown this once and never again.
#[derive(Debug, Object)]
pub struct ApiKeyCreated {
    pub id: i64,
    pub key: String,
    pub prefix: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A key as listed: never the key itself.
#[derive(Debug, Object)]
pub struct ApiKeyItem {
    pub id: i64,
    pub prefix: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[oai(nullable)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeyItem {
    fn from(k: api_key::Model) -> Self {
        ApiKeyItem {
            id: k.id,
            prefix: k.prefix,
            name: k.name,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(ApiResponse)]
pub enum ApiKeyCreatedResponse {
    #[oai(status = 201)]
    Created(Json<ApiKeyCreated>),
}

pub struct KeysApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl KeysApi {
    /// Create a business API key
    ///
    /// Platform key. The key is in this answer only; omega keeps a hash.
    #[oai(
        path = "/admin/businesses/:business_id/api-keys",
        method = "post",
        tag = "ApiTags::Operators"
    )]
    async fn create(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        body: ValidJson<ApiKeyCreateRequest>,
    ) -> Result<ApiKeyCreatedResponse, ApiError> {
        auth.principal().can_administer()?;
        self.state.require_business_exists(business_id.0).await?;
        let name = body.value.name.trim().to_owned();
        let (row, key) = keys::create(
            &self.state.db,
            KeyKind::Business(business_id.0),
            &name,
            keys::generate(),
        )
        .await?;
        tracing::info!(
            key_id = row.id,
            business_id = business_id.0,
            "api key created"
        );
        Ok(ApiKeyCreatedResponse::Created(Json(ApiKeyCreated {
            id: row.id,
            key,
            prefix: row.prefix,
            name: row.name,
            created_at: row.created_at,
        })))
    }

    /// List a business's API keys
    ///
    /// Platform key. Prefix, name, creation and last use; never the key.
    #[oai(
        path = "/admin/businesses/:business_id/api-keys",
        method = "get",
        tag = "ApiTags::Operators"
    )]
    async fn list(
        &self,
        auth: Auth,
        business_id: Path<i64>,
    ) -> Result<Json<Vec<ApiKeyItem>>, ApiError> {
        auth.principal().can_administer()?;
        self.state.require_business_exists(business_id.0).await?;
        let rows = keys::list_for_business(&self.state.db, business_id.0).await?;
        Ok(Json(rows.into_iter().map(ApiKeyItem::from).collect()))
    }

    /// Revoke an API key
    ///
    /// Platform key. The key stops working within one second on every ingress process.
    #[oai(
        path = "/admin/api-keys/:id",
        method = "delete",
        tag = "ApiTags::Operators"
    )]
    async fn revoke(&self, auth: Auth, id: Path<i64>) -> Result<Json<ApiKeyItem>, ApiError> {
        auth.principal().can_administer()?;
        let row = keys::revoke(&self.state.db, id.0).await?;
        tracing::info!(key_id = row.id, "api key revoked");
        Ok(Json(row.into()))
    }
}
