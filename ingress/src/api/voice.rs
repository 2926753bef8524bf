//! Browser calling: Twilio Voice access tokens for staff, and the TwiML for their calls.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Serialize;

use super::ApiTags;
use crate::auth::{Auth, Principal, require_business_access};
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_TTL: i64 = 3600;
const MAX_TTL: i64 = 24 * 3600;

/// A Twilio Voice access token for the browser SDK.
#[derive(Debug, Object)]
pub struct DialerToken {
    pub token: String,
    /// The staff member's Twilio client identity (`b<business>_s<staff>`).
    pub identity: String,
    pub expires_at: DateTime<Utc>,
}

/// The client identity of a staff member, and back.
pub fn identity(business_id: i64, staff_id: i64) -> String {
    format!("b{business_id}_s{staff_id}")
}

pub fn parse_identity(identity: &str) -> Option<(i64, i64)> {
    let (b, s) = identity.strip_prefix('b')?.split_once("_s")?;
    Some((b.parse().ok()?, s.parse().ok()?))
}

#[derive(Serialize)]
struct VoiceGrant {
    incoming: Incoming,
    outgoing: Outgoing,
}

#[derive(Serialize)]
struct Incoming {
    allow: bool,
}

#[derive(Serialize)]
struct Outgoing {
    application_sid: String,
}

#[derive(Serialize)]
struct Grants {
    identity: String,
    voice: VoiceGrant,
}

#[derive(Serialize)]
struct Claims {
    jti: String,
    iss: String,
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    grants: Grants,
}

/// Signs a Twilio access token (HS256 with the API key secret, `cty: twilio-fpa;v=1`).
pub fn access_token(
    account_sid: &str,
    api_key_sid: &str,
    api_key_secret: &str,
    twiml_app_sid: &str,
    identity: &str,
    now: DateTime<Utc>,
    ttl_seconds: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let iat = now.timestamp();
    let claims = Claims {
        jti: format!("{api_key_sid}-{iat}"),
        iss: api_key_sid.to_owned(),
        sub: account_sid.to_owned(),
        iat,
        nbf: iat,
        exp: iat + ttl_seconds,
        grants: Grants {
            identity: identity.to_owned(),
            voice: VoiceGrant {
                incoming: Incoming { allow: true },
                outgoing: Outgoing {
                    application_sid: twiml_app_sid.to_owned(),
                },
            },
        },
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("JWT".into());
    header.cty = Some("twilio-fpa;v=1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(api_key_secret.as_bytes()),
    )
}

pub struct VoiceApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl VoiceApi {
    /// Voice access token
    ///
    /// A Twilio Voice access token for the staff member of the session, or, with an API key,
    /// for `business_id` + `staff_id`. `ttl_seconds`: 60 to 86400, default 3600.
    #[oai(
        path = "/voice-calls/token",
        method = "get",
        tag = "ApiTags::VoiceCalls"
    )]
    async fn token(
        &self,
        auth: Auth,
        business_id: Query<Option<i64>>,
        staff_id: Query<Option<i64>>,
        #[oai(validator(minimum(value = "60"), maximum(value = "86400")))] ttl_seconds: Query<
            Option<i64>,
        >,
    ) -> Result<Json<DialerToken>, ApiError> {
        let (business_id, staff_id) = match (auth.principal(), business_id.0, staff_id.0) {
            (
                Principal::Staff {
                    business_id,
                    staff_id,
                    ..
                },
                None,
                None,
            ) => (*business_id, *staff_id),
            (Principal::Staff { .. }, _, _) => {
                return Err(ApiError::forbidden(
                    "A session gets tokens for its own staff member only",
                ));
            }
            (_, Some(b), Some(s)) => (b, s),
            _ => {
                return Err(ApiError::invalid_at(
                    &["query", "staff_id"],
                    "business_id and staff_id are required with an API key",
                    "missing",
                ));
            }
        };
        require_business_access(auth.principal(), business_id)?;
        self.state.require_business_exists(business_id).await?;
        let staff = entities::staff::Entity::find_by_id((business_id, staff_id));
        use sea_orm::EntityTrait;
        if staff
            .one(&self.state.db)
            .await
            .map_err(entities::Error::from)?
            .is_none()
        {
            return Err(ApiError::not_found(format!(
                "Staff member {staff_id} not found"
            )));
        }
        let creds = self.state.twilio_for(business_id).await?;
        let Some((account, key_sid, key_secret, app_sid)) = creds.and_then(|c| {
            Some((
                c.account_sid.clone(),
                c.api_key_sid.clone()?,
                c.api_key_secret.clone()?,
                c.twiml_app_sid.clone()?,
            ))
        }) else {
            return Err(ApiError::conflict(
                "Twilio Voice is not configured for this business",
            ));
        };
        let ttl = ttl_seconds.0.unwrap_or(DEFAULT_TTL).min(MAX_TTL);
        let now = Utc::now();
        let who = identity(business_id, staff_id);
        let token = access_token(&account, &key_sid, &key_secret, &app_sid, &who, now, ttl)
            .map_err(|e| ApiError::internal("signing a voice token", e))?;
        Ok(Json(DialerToken {
            token,
            identity: who,
            expires_at: now + chrono::Duration::seconds(ttl),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip() {
        assert_eq!(identity(12, 789), "b12_s789");
        assert_eq!(parse_identity("b12_s789"), Some((12, 789)));
        assert_eq!(parse_identity("client:b12_s789"), None);
        assert_eq!(parse_identity("b12_sx"), None);
    }
}
