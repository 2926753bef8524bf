//! Browser calling: Twilio Voice access tokens for staff, and the TwiML for their calls.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::calls::{self, CallRecord};
use entities::types::Direction;
use jobs::Job;
use poem::web::Data;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Serialize;

use crate::RequestId;
use crate::twilio::{self, Noun, TwilioForm, Verb};
use crate::validate::normalize_phone;

use super::ApiTags;
use crate::auth::{Auth, Principal};
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

#[derive(ApiResponse)]
pub enum TwimlResponse {
    /// TwiML for Twilio.
    #[oai(status = 200, content_type = "text/xml")]
    Ok(PlainText<String>),
    /// A missing or wrong `X-Twilio-Signature`: nothing was done.
    #[oai(status = 403)]
    Forbidden(Json<crate::error::ErrorDetail>),
}

/// Most browsers an incoming call rings at once.
const MAX_RINGING: u64 = 10;

fn hang_up(sentence: &str) -> TwimlResponse {
    TwimlResponse::Ok(PlainText(twilio::twiml(&[
        Verb::Say(sentence.into()),
        Verb::Hangup,
    ])))
}

fn forbidden(why: &str) -> TwimlResponse {
    TwimlResponse::Forbidden(Json(crate::error::ErrorDetail { detail: why.into() }))
}

/// What a call request is about, read from its (not yet verified) parameters.
enum CallKind {
    /// A staff member's browser calls `to`.
    Browser { business_id: i64, staff_id: i64 },
    /// Someone calls a location's number.
    Incoming { business_id: i64, location_id: i64 },
}

/// `POST /voice-calls/twiml`: authenticated by Twilio's signature, not by a key.
pub struct TwimlApi {
    pub state: Arc<AppState>,
}

impl TwimlApi {
    async fn classify(&self, form: &TwilioForm) -> Result<Option<CallKind>, ApiError> {
        let from = form.get("From").unwrap_or_default();
        if let Some(identity) = from.strip_prefix("client:") {
            return Ok(
                parse_identity(identity).map(|(business_id, staff_id)| CallKind::Browser {
                    business_id,
                    staff_id,
                }),
            );
        }
        let Some(to) = form.get("To").and_then(normalize_phone) else {
            return Ok(None);
        };
        let location = self.state.location_by_number(&to).await?;
        Ok(location.map(|l| CallKind::Incoming {
            business_id: l.business_id,
            location_id: l.id,
        }))
    }

    async fn queue_call(&self, call: CallRecord, trace: &RequestId) -> Result<(), ApiError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.state
            .producer
            .enqueue(&[Job::RecordCall(call)], &request_id, Some(&trace.0))
            .await?;
        Ok(())
    }
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
            // A session gets its own staff member's token, whether it names itself or not.
            (
                Principal::Staff {
                    business_id,
                    staff_id,
                    ..
                },
                b,
                s,
            ) if b.is_none_or(|b| b == *business_id) && s.is_none_or(|s| s == *staff_id) => {
                (*business_id, *staff_id)
            }
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
        auth.principal().can_work_inbox(business_id)?;
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

#[OpenApi]
impl TwimlApi {
    /// Handle TwiML call
    ///
    /// Twilio's voice URL, signature-checked like the other Twilio webhooks. A browser call
    /// (`From=client:<identity>`) dials `To` with the caller id of the staff member's location;
    /// a call to a location's number rings its staff's browsers. Either is recorded as a
    /// `voice` message in the client's conversation. A `To` that is not a phone number, or an
    /// identity not of the business, gets a spoken refusal and records nothing.
    #[oai(
        path = "/voice-calls/twiml",
        method = "post",
        tag = "ApiTags::VoiceCalls"
    )]
    async fn twiml(
        &self,
        #[oai(name = "X-Twilio-Signature")] signature: Header<Option<String>>,
        form: TwilioForm,
        trace: Data<&RequestId>,
    ) -> Result<TwimlResponse, ApiError> {
        let Some(kind) = self.classify(&form).await? else {
            return Ok(forbidden("This call does not belong to any business here"));
        };
        let business_id = match kind {
            CallKind::Browser { business_id, .. } | CallKind::Incoming { business_id, .. } => {
                business_id
            }
        };
        // Verify against the account of the business the call names; nothing is done before.
        let signed = super::twilio_hooks::signed_by_account(
            &self.state,
            &form,
            signature.0.as_deref(),
            Some(business_id),
        )
        .await?;
        if !signed {
            tracing::warn!(
                business_id,
                "voice webhook with a missing or wrong signature"
            );
            return Ok(forbidden("Invalid Twilio signature"));
        }
        let call_sid = form.get("CallSid").unwrap_or_default().to_owned();
        let status_url = format!(
            "{}/twilio/voice/status",
            self.state.settings.public_url.trim_end_matches('/')
        );
        let db = &self.state.db;
        match kind {
            CallKind::Browser {
                business_id,
                staff_id,
            } => {
                use sea_orm::EntityTrait;
                let staff = entities::staff::Entity::find_by_id((business_id, staff_id))
                    .one(db)
                    .await
                    .map_err(entities::Error::from)?;
                let Some(to) = form.get("To").and_then(normalize_phone) else {
                    return Ok(hang_up("Sorry, that is not a valid phone number."));
                };
                if staff.is_none() {
                    return Ok(hang_up("Sorry, you cannot place calls for this business."));
                }
                let Some((location_id, caller_id)) =
                    calls::caller_id_of(db, business_id, staff_id).await?
                else {
                    return Ok(hang_up(
                        "Sorry, your location has no phone number to call from.",
                    ));
                };
                if !call_sid.is_empty() {
                    let call = CallRecord {
                        business_id,
                        location_id: Some(location_id),
                        staff_id: Some(staff_id),
                        call_sid,
                        direction: Direction::Outbound,
                        client_phone: to.clone(),
                        from: caller_id.clone(),
                        to: to.clone(),
                        at: Utc::now(),
                    };
                    self.queue_call(call, &trace).await?;
                }
                Ok(TwimlResponse::Ok(PlainText(twilio::twiml(&[Verb::Dial {
                    attrs: vec![("callerId", caller_id), ("answerOnBridge", "true".into())],
                    nouns: vec![Noun::Number {
                        attrs: vec![
                            ("statusCallback", status_url),
                            (
                                "statusCallbackEvent",
                                "initiated ringing answered completed".into(),
                            ),
                        ],
                        number: to,
                    }],
                }]))))
            }
            CallKind::Incoming {
                business_id,
                location_id,
            } => {
                let staff =
                    calls::staff_of_location(db, business_id, location_id, MAX_RINGING).await?;
                if staff.is_empty() {
                    return Ok(hang_up("Sorry, no one is available to take your call."));
                }
                let from = form.get("From").unwrap_or_default();
                if let (Some(caller), false) = (normalize_phone(from), call_sid.is_empty()) {
                    let call = CallRecord {
                        business_id,
                        location_id: Some(location_id),
                        staff_id: None,
                        call_sid,
                        direction: Direction::Inbound,
                        client_phone: caller.clone(),
                        from: caller,
                        to: form.get("To").and_then(normalize_phone).unwrap_or_default(),
                        at: Utc::now(),
                    };
                    self.queue_call(call, &trace).await?;
                }
                Ok(TwimlResponse::Ok(PlainText(twilio::twiml(&[Verb::Dial {
                    attrs: vec![("answerOnBridge", "true".into())],
                    nouns: staff
                        .into_iter()
                        .map(|s| Noun::Client(identity(business_id, s)))
                        .collect(),
                }]))))
            }
        }
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
