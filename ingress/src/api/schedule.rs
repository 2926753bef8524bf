//! Cancelling messages scheduled for later (`send_at`), one by omega's id or all of a
//! request's; a message already on its way is not stopped (409).
use std::sync::Arc;

use chrono::Utc;
use entities::schedule::{self, Cancel};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::schemas::MessageItem;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

#[derive(Debug, Object, Deserialize)]
pub struct CancelRequest {
    /// The `request_id` a send answered.
    pub request_id: String,
}

impl Validate for CancelRequest {
    fn validate(&mut self, c: &mut Checker) {
        if uuid::Uuid::parse_str(&self.request_id).is_err() {
            c.fail("request_id", "value is not a valid uuid", "type_error.uuid");
        }
    }
}

/// What cancelling a request's scheduled messages did.
#[derive(Debug, Object)]
pub struct CancelResponse {
    pub request_id: String,
    /// Scheduled messages now canceled.
    pub canceled: u64,
    /// Messages already on their way, sent, or canceled before.
    pub not_cancelable: u64,
}

pub struct ScheduleApi {
    pub state: Arc<AppState>,
}

impl ScheduleApi {
    async fn admit(&self, auth: &Auth, business_id: i64) -> Result<(), ApiError> {
        auth.principal().can_write(business_id)?;
        self.state.require_business_exists(business_id).await
    }
}

#[OpenApi]
impl ScheduleApi {
    /// Cancel a scheduled message
    ///
    /// By omega's id (`MessageItem.id`): 200 with the message, now `canceled`, if it was still
    /// `scheduled`; 409 if it is already on its way or sent; 404 if the business has no such
    /// message.
    #[oai(
        path = "/businesses/:business_id/messages/:message_id/cancel",
        method = "post",
        tag = "ApiTags::Messages"
    )]
    async fn cancel_message(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        message_id: Path<i64>,
    ) -> Result<Json<MessageItem>, ApiError> {
        self.admit(&auth, business_id.0).await?;
        match schedule::cancel(&self.state.db, business_id.0, message_id.0, Utc::now()).await? {
            Cancel::Canceled(m) => Ok(Json(MessageItem::from_model(m, None)?)),
            Cancel::TooLate(m) => Err(ApiError::conflict(format!(
                "Message {} is {}, not scheduled: it can no longer be canceled",
                m.id, m.status
            ))),
            Cancel::NotFound => Err(ApiError::not_found(format!(
                "Message {} not found",
                message_id.0
            ))),
        }
    }

    /// Cancel a request's scheduled messages
    ///
    /// Every message of the request still `scheduled` is canceled; the answer counts them and
    /// those already on their way. 404 if the business has no message of that request (yet:
    /// messages are recorded within milliseconds of the send's 200).
    #[oai(
        path = "/businesses/:business_id/messages/cancel",
        method = "post",
        tag = "ApiTags::Messages"
    )]
    async fn cancel_request(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        body: ValidJson<CancelRequest>,
    ) -> Result<Json<CancelResponse>, ApiError> {
        self.admit(&auth, business_id.0).await?;
        let request_id = body.value.request_id;
        let done = schedule::cancel_request(&self.state.db, business_id.0, &request_id, Utc::now())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("No message of request {request_id}")))?;
        Ok(Json(CancelResponse {
            request_id,
            canceled: done.canceled,
            not_cancelable: done.too_late,
        }))
    }
}
