//! Twilio's webhooks: incoming SMS, SMS delivery status and voice call status. Each is
//! verified (`X-Twilio-Signature` under the auth token of the account the request names),
//! queued, and answered at once; the message's own database work happens in a worker.
use std::sync::Arc;

use chrono::Utc;
use entities::calls::{CallRecord, VoiceStatus};
use entities::inbound::{InboundSms, Media};
use entities::status::{MessageRef, StatusReport};
use entities::types::{Direction, MessageStatus, Provider};
use jobs::{Inbound, Job, StatusUpdates};
use poem::web::Data;
use poem_openapi::param::Header;
use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use crate::RequestId;
use crate::error::ApiError;
use crate::state::AppState;
use crate::twilio::{self, TwilioForm};
use crate::validate::normalize_phone;

/// Receipts of Twilio deliveries are kept under this provider name.
const RECEIPTS: &str = "twilio";

/// Whether the request carries a valid signature of the Twilio account it names
/// (`AccountSid`): the business's own account, or the global one. A request that names no
/// account is checked against the business's (or the global) account.
pub(crate) async fn signed_by_account(
    state: &AppState,
    form: &TwilioForm,
    signature: Option<&str>,
    business_id: Option<i64>,
) -> Result<bool, ApiError> {
    let Some(signature) = signature else {
        return Ok(false);
    };
    let mut accounts = Vec::with_capacity(2);
    if let Some(b) = business_id
        && let Some(own) = state.twilio_for(b).await?
    {
        accounts.push(own);
    }
    if let Some(global) = &state.settings.twilio {
        accounts.push(global.clone());
    }
    let named = form.get("AccountSid");
    let Some(account) = accounts
        .into_iter()
        .find(|a| named.is_none_or(|sid| sid == a.account_sid))
    else {
        return Ok(false);
    };
    let url = format!(
        "{}{}",
        state.settings.public_url.trim_end_matches('/'),
        form.path_and_query
    );
    Ok(twilio::verify(
        &account.auth_token,
        &url,
        &form.params,
        signature,
    ))
}

/// 403 (logged with `what`) unless the request is signed by the account it names.
async fn require_signed(
    state: &AppState,
    form: &TwilioForm,
    signature: Option<&str>,
    business_id: Option<i64>,
    what: &str,
) -> Result<(), ApiError> {
    if signed_by_account(state, form, signature, business_id).await? {
        Ok(())
    } else {
        tracing::warn!(
            ?business_id,
            what,
            "Twilio webhook with a missing or wrong signature"
        );
        Err(ApiError::forbidden("Invalid Twilio signature"))
    }
}

/// The business and location a number belongs to.
async fn location_of(
    state: &AppState,
    number: Option<&str>,
) -> Result<Option<entities::location::Model>, ApiError> {
    match number.and_then(normalize_phone) {
        Some(n) => state.location_by_number(&n).await,
        None => Ok(None),
    }
}

fn required<'a>(form: &'a TwilioForm, name: &str) -> Result<&'a str, ApiError> {
    form.get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid_at(&["body", name], "field required", "missing"))
}

fn empty_twiml() -> String {
    twilio::twiml(&[])
}

#[derive(ApiResponse)]
pub enum IncomingResponse {
    /// Empty TwiML: no automatic reply.
    #[oai(status = 200, content_type = "text/xml")]
    Ok(PlainText<String>),
}

#[derive(ApiResponse)]
pub enum CallbackResponse {
    /// Accepted (or a repeat of one accepted before).
    #[oai(status = 204)]
    Accepted,
}

/// Twilio's `MessageStatus` as omega's status.
fn sms_status(twilio: &str) -> Option<MessageStatus> {
    Some(match twilio {
        "accepted" | "scheduled" | "queued" => MessageStatus::Queued,
        "sending" => MessageStatus::Sending,
        "sent" | "partially_delivered" => MessageStatus::Sent,
        "delivered" => MessageStatus::Delivered,
        "undelivered" => MessageStatus::Undelivered,
        "failed" => MessageStatus::Failed,
        "receiving" | "received" => MessageStatus::Received,
        "read" => MessageStatus::Read,
        "canceled" => MessageStatus::Canceled,
        _ => return None,
    })
}

fn media_of(form: &TwilioForm) -> Vec<Media> {
    let count: usize = form
        .get("NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (0..count.min(10))
        .filter_map(|i| {
            Some(Media {
                url: form.get(&format!("MediaUrl{i}"))?.to_owned(),
                content_type: form.get(&format!("MediaContentType{i}")).map(str::to_owned),
            })
        })
        .collect()
}

fn params_json(form: &TwilioForm) -> serde_json::Value {
    serde_json::Value::Object(
        form.params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

pub struct TwilioHooksApi {
    pub state: Arc<AppState>,
}

impl TwilioHooksApi {
    /// Stores the receipt and queues the job; false when the delivery was seen before. A job
    /// that cannot be queued forgets its receipt, so Twilio's retry is taken.
    async fn accept_once(
        &self,
        dedupe_key: &str,
        business_id: Option<i64>,
        form: &TwilioForm,
        job: Option<Job>,
        trace: &RequestId,
    ) -> Result<bool, ApiError> {
        let db = &self.state.db;
        if !entities::receipts::record(db, RECEIPTS, dedupe_key, business_id, params_json(form))
            .await?
        {
            return Ok(false);
        }
        let Some(job) = job else {
            tracing::warn!(
                dedupe_key,
                "Twilio webhook for a number no business owns: kept as an orphan"
            );
            return Ok(true);
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        if let Err(e) = self
            .state
            .producer
            .enqueue(&[job], &request_id, Some(&trace.0))
            .await
        {
            if let Err(forget) = entities::receipts::forget(db, RECEIPTS, dedupe_key).await {
                tracing::error!(error = %forget, dedupe_key, "could not forget an unqueued receipt");
            }
            return Err(e.into());
        }
        Ok(true)
    }
}

#[OpenApi]
impl TwilioHooksApi {
    /// Incoming SMS reply
    ///
    /// Twilio's messaging webhook. Answers empty TwiML at once and queues `ProcessInbound`:
    /// the `To` number finds the location, the `From` number the client (an unknown one
    /// becomes a `lead`). STOP/STOPALL/UNSUBSCRIBE/CANCEL/END/QUIT opt the client out of SMS,
    /// START/UNSTOP back in. A repeat of the same `MessageSid` is recorded once; a message to
    /// a number no business owns is kept as an orphan receipt for operators. A missing or
    /// wrong `X-Twilio-Signature` answers 403 and records nothing.
    #[oai(
        path = "/twilio/sms/incoming",
        method = "post",
        tag = "ApiTags::Twilio"
    )]
    async fn incoming(
        &self,
        #[oai(name = "X-Twilio-Signature")] signature: Header<Option<String>>,
        #[oai(name = "I-Twilio-Idempotency-Token")] idempotency: Header<Option<String>>,
        form: TwilioForm,
        trace: Data<&RequestId>,
    ) -> Result<IncomingResponse, ApiError> {
        let location = location_of(&self.state, form.get("To")).await?;
        let business_id = location.as_ref().map(|l| l.business_id);
        require_signed(
            &self.state,
            &form,
            signature.0.as_deref(),
            business_id,
            "incoming SMS",
        )
        .await?;
        let sid = match (form.get("MessageSid"), idempotency.0.as_deref()) {
            (Some(sid), _) if !sid.is_empty() => sid.to_owned(),
            (_, Some(token)) if !token.is_empty() => token.to_owned(),
            _ => required(&form, "MessageSid")?.to_owned(),
        };
        let from = normalize_phone(required(&form, "From")?).ok_or_else(|| {
            ApiError::invalid_at(&["body", "From"], "not a phone number", "value_error")
        })?;
        let job = location.map(|l| {
            Job::ProcessInbound(Inbound::Sms(InboundSms {
                business_id: l.business_id,
                location_id: l.id,
                message_sid: sid.clone(),
                from,
                to: l.phone_number.clone().unwrap_or_default(),
                body: form.get("Body").unwrap_or_default().to_owned(),
                media: media_of(&form),
                received_at: Utc::now(),
                params: params_json(&form),
            }))
        });
        let key = format!("sms:{sid}");
        self.accept_once(&key, business_id, &form, job, &trace)
            .await?;
        Ok(IncomingResponse::Ok(PlainText(empty_twiml())))
    }

    /// SMS status callback
    ///
    /// Twilio's `StatusCallback` for messages omega sent (`MessageSid`, `MessageStatus`,
    /// `ErrorCode`, `ErrorMessage`): queues `UpdateStatus`. The status only moves forward;
    /// every report is kept in the message's history once; a callback that overtakes the
    /// send it reports on is retried until the message is recorded.
    #[oai(path = "/twilio/sms/status", method = "post", tag = "ApiTags::Twilio")]
    async fn sms_status(
        &self,
        #[oai(name = "X-Twilio-Signature")] signature: Header<Option<String>>,
        form: TwilioForm,
        trace: Data<&RequestId>,
    ) -> Result<CallbackResponse, ApiError> {
        let location = location_of(&self.state, form.get("From")).await?;
        let business_id = location.as_ref().map(|l| l.business_id);
        require_signed(
            &self.state,
            &form,
            signature.0.as_deref(),
            business_id,
            "SMS status callback",
        )
        .await?;
        let sid = required(&form, "MessageSid")?.to_owned();
        let raw_status = form
            .get("MessageStatus")
            .or(form.get("SmsStatus"))
            .unwrap_or_default();
        let status = sms_status(raw_status).ok_or_else(|| {
            ApiError::invalid_at(
                &["body", "MessageStatus"],
                format!("unknown message status {raw_status:?}"),
                "enum",
            )
        })?;
        let error_code = form.get("ErrorCode").filter(|c| !c.is_empty() && *c != "0");
        let report = StatusReport {
            message: MessageRef::Provider {
                business_id,
                provider: Some(Provider::Twilio),
                provider_message_id: sid,
            },
            status: Some(status),
            error_code: error_code.map(str::to_owned),
            error_message: form.get("ErrorMessage").map(str::to_owned),
            occurred_at: Utc::now(),
            source: "twilio".into(),
            // A retried callback repeats status and error: recorded once.
            dedupe_key: format!("twilio:{raw_status}:{}", error_code.unwrap_or("")),
            opt_out: (error_code == Some("21610"))
                .then(|| "Twilio 21610: the recipient replied STOP".to_owned()),
        };
        let job = Job::UpdateStatus(StatusUpdates {
            business_id,
            reports: vec![report],
        });
        let request_id = uuid::Uuid::new_v4().to_string();
        self.state
            .producer
            .enqueue(&[job], &request_id, Some(&trace.0.0))
            .await?;
        Ok(CallbackResponse::Accepted)
    }

    /// Voice call status callback
    ///
    /// Twilio's `statusCallback` for calls (`CallSid`, `ParentCallSid`, `CallStatus`,
    /// `CallDuration`): the status and duration go onto the call's `voice` message (the call
    /// is created from the callback when `/voice-calls/twiml` did not record it). A call for
    /// numbers no business owns is kept as an orphan receipt.
    #[oai(
        path = "/twilio/voice/status",
        method = "post",
        tag = "ApiTags::Twilio"
    )]
    async fn voice_status(
        &self,
        #[oai(name = "X-Twilio-Signature")] signature: Header<Option<String>>,
        form: TwilioForm,
        trace: Data<&RequestId>,
    ) -> Result<CallbackResponse, ApiError> {
        // The location's number is the caller id of an outgoing call, the called number of
        // an incoming one.
        let (location, outbound) = match location_of(&self.state, form.get("From")).await? {
            Some(l) => (Some(l), true),
            None => (location_of(&self.state, form.get("To")).await?, false),
        };
        let business_id = location.as_ref().map(|l| l.business_id);
        require_signed(
            &self.state,
            &form,
            signature.0.as_deref(),
            business_id,
            "voice status callback",
        )
        .await?;
        // A dialled leg reports under its own sid; the call omega recorded is its parent.
        let call_sid = match form.get("ParentCallSid").filter(|s| !s.is_empty()) {
            Some(parent) => parent.to_owned(),
            None => required(&form, "CallSid")?.to_owned(),
        };
        let call_status = required(&form, "CallStatus")?.to_owned();
        if entities::calls::call_status(&call_status).is_none() {
            return Err(ApiError::invalid_at(
                &["body", "CallStatus"],
                format!("unknown call status {call_status:?}"),
                "enum",
            ));
        }
        let duration_secs = match form.get("CallDuration").filter(|d| !d.is_empty()) {
            Some(d) => Some(d.parse::<i64>().map_err(|_| {
                ApiError::invalid_at(
                    &["body", "CallDuration"],
                    "not a whole number of seconds",
                    "int_parsing",
                )
            })?),
            None => None,
        };
        let from = form
            .get("From")
            .and_then(normalize_phone)
            .unwrap_or_default();
        let to = form.get("To").and_then(normalize_phone).unwrap_or_default();
        let job = location.map(|l| {
            Job::ProcessInbound(Inbound::VoiceStatus(VoiceStatus {
                call: CallRecord {
                    business_id: l.business_id,
                    location_id: Some(l.id),
                    staff_id: None,
                    call_sid: call_sid.clone(),
                    direction: if outbound {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    },
                    client_phone: if outbound { to.clone() } else { from.clone() },
                    from,
                    to,
                    at: Utc::now(),
                },
                call_status: call_status.clone(),
                duration_secs,
                occurred_at: Utc::now(),
            }))
        });
        let key = format!(
            "voice:{}:{call_status}",
            form.get("CallSid").unwrap_or(&call_sid)
        );
        self.accept_once(&key, business_id, &form, job, &trace)
            .await?;
        Ok(CallbackResponse::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_statuses_map_onto_omegas() {
        assert_eq!(sms_status("delivered"), Some(MessageStatus::Delivered));
        assert_eq!(sms_status("accepted"), Some(MessageStatus::Queued));
        assert_eq!(sms_status("undelivered"), Some(MessageStatus::Undelivered));
        assert_eq!(sms_status("bogus"), None);
    }
}
