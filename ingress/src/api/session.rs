//! Staff sessions: `POST /auth/token` issues one (token and `omega_session` cookie);
//! `POST /session/expire` revokes one or all of a staff member's.
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use entities::sessions;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::schemas::SuccessResponse;
use crate::RequestId;
use crate::auth::{Auth, Principal};
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

const DEFAULT_TTL: i64 = 8 * 3600;
const MIN_TTL: i64 = 60;
const MAX_TTL: i64 = 24 * 3600;
pub const COOKIE: &str = "omega_session";

/// Whom to issue a session for. `ttl_seconds`: 60 to 86400, default 28800 (8 h).
#[derive(Debug, Object, Deserialize)]
pub struct AuthParameters {
    pub business_id: i64,
    pub staff_id: i64,
    #[serde(default)]
    #[oai(nullable)]
    pub ttl_seconds: Option<i64>,
}

impl Validate for AuthParameters {
    fn validate(&mut self, c: &mut Checker) {
        c.positive("business_id", self.business_id);
        c.positive("staff_id", self.staff_id);
        if let Some(ttl) = self.ttl_seconds
            && !(MIN_TTL..=MAX_TTL).contains(&ttl)
        {
            c.fail(
                "ttl_seconds",
                format!("ensure this value is between {MIN_TTL} and {MAX_TTL}"),
                "value_error.number.range",
            );
        }
    }
}

#[derive(Debug, Object)]
pub struct AuthTokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum AuthTokenIssued {
    /// The token, also set as the `omega_session` cookie.
    #[oai(status = 200)]
    Ok(
        Json<AuthTokenResponse>,
        #[oai(header = "Set-Cookie")] String,
    ),
}

/// One session by its token, or every session of a staff member.
#[derive(Debug, Object, Deserialize)]
pub struct SessionExpiryRequest {
    #[serde(default)]
    #[oai(nullable)]
    pub access_token: Option<String>,
    #[serde(default)]
    #[oai(nullable)]
    pub business_id: Option<i64>,
    #[serde(default)]
    #[oai(nullable)]
    pub staff_id: Option<i64>,
}

impl Validate for SessionExpiryRequest {
    fn validate(&mut self, c: &mut Checker) {
        match (&self.access_token, self.business_id, self.staff_id) {
            (Some(t), None, None) => c.length("access_token", t, 1, 512),
            (None, Some(_), Some(_)) => {}
            _ => c.fail(
                "",
                "give either access_token, or business_id and staff_id",
                "value_error",
            ),
        }
    }
}

pub struct SessionApi {
    pub state: Arc<AppState>,
}

/// May this caller end the sessions of this staff member?
fn may_expire(principal: &Principal, business_id: i64, staff_id: i64) -> Result<(), ApiError> {
    match principal {
        Principal::Staff {
            business_id: b,
            staff_id: s,
            ..
        } if *b == business_id && *s == staff_id => Ok(()),
        Principal::Staff { .. } => Err(ApiError::forbidden(
            "A session can only end its own staff member's sessions",
        )),
        key => key.can_write(business_id),
    }
}

#[OpenApi]
impl SessionApi {
    /// Generate Auth Token
    ///
    /// Issues a staff session (an opaque token, stored hashed) for a business's staff member;
    /// needs an API key allowed for that business. Also sets the `omega_session` cookie
    /// (HttpOnly, SameSite=Lax, Secure when the public URL is https).
    #[oai(path = "/auth/token", method = "post", tag = "ApiTags::Session")]
    async fn token(
        &self,
        auth: Auth,
        body: ValidJson<AuthParameters>,
    ) -> Result<AuthTokenIssued, ApiError> {
        let p = body.value;
        if matches!(auth.principal(), Principal::Staff { .. }) {
            return Err(ApiError::forbidden(
                "Sessions are issued to API keys, not to sessions",
            ));
        }
        auth.principal().can_write(p.business_id)?;
        self.state.require_business_exists(p.business_id).await?;
        let ttl = p.ttl_seconds.unwrap_or(DEFAULT_TTL);
        let (row, token) = sessions::create(
            &self.state.db,
            p.business_id,
            p.staff_id,
            Duration::seconds(ttl),
        )
        .await?;
        let secure = if self.state.settings.public_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        let cookie =
            format!("{COOKIE}={token}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Lax{secure}");
        Ok(AuthTokenIssued::Ok(
            Json(AuthTokenResponse {
                access_token: token,
                token_type: "bearer".into(),
                expires_at: row.expires_at,
            }),
            cookie,
        ))
    }

    /// Expire Session
    ///
    /// Revokes one session (`access_token`) or all of a staff member's (`business_id` and
    /// `staff_id`). The token stops working within one second on every ingress process. An
    /// API key allowed for the business, or the staff member's own session, may do this.
    #[oai(path = "/session/expire", method = "post", tag = "ApiTags::Session")]
    async fn expire(
        &self,
        auth: Auth,
        body: ValidJson<SessionExpiryRequest>,
        trace: Data<&RequestId>,
    ) -> Result<Json<SuccessResponse>, ApiError> {
        let req = body.value;
        let db = &self.state.db;
        let count = match (req.access_token, req.business_id, req.staff_id) {
            (Some(token), _, _) => {
                let session = sessions::find(db, &token)
                    .await?
                    .ok_or_else(|| ApiError::not_found("Session not found"))?;
                may_expire(auth.principal(), session.business_id, session.staff_id)?;
                sessions::revoke(db, session.id).await?
            }
            (None, Some(business_id), Some(staff_id)) => {
                may_expire(auth.principal(), business_id, staff_id)?;
                sessions::revoke_staff(db, business_id, staff_id).await?
            }
            _ => {
                return Err(ApiError::invalid_at(
                    &["body"],
                    "give either access_token, or business_id and staff_id",
                    "value_error",
                ));
            }
        };
        Ok(Json(SuccessResponse {
            success: true,
            message: format!(
                "{count} session{} expired",
                if count == 1 { "" } else { "s" }
            ),
            request_id: trace.0.0.clone(),
            accepted: count as u32,
        }))
    }
}
