//! `POST /businesses/{business_id}/messages/retry-failed` and `POST /messages/retry-failed`:
//! resend failed messages through the queue. Permanent failures are skipped; a retry keeps
//! the message's row and appends to its history.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::outbound::RetrySelection;
use entities::types::Channel;
use jobs::ops;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use crate::RequestId;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 10_000;

/// Which failed messages to resend. `limit`: default 100, at most 10,000.
#[derive(Debug, Object, Deserialize)]
pub struct RetryFailedRequest {
    #[serde(default)]
    #[oai(nullable)]
    pub message_ids: Option<Vec<i64>>,
    #[serde(default)]
    #[oai(nullable)]
    pub channel: Option<Channel>,
    #[serde(default)]
    #[oai(nullable)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    #[oai(nullable)]
    pub until: Option<DateTime<Utc>>,
    #[serde(default)]
    #[oai(nullable)]
    pub limit: Option<u64>,
    /// Count and list, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Only with the platform endpoint: one business.
    #[serde(default)]
    #[oai(nullable)]
    pub business_id: Option<i64>,
}

impl Validate for RetryFailedRequest {
    fn validate(&mut self, c: &mut Checker) {
        if let Some(ids) = &self.message_ids {
            c.count("message_ids", ids.len(), 1, MAX_LIMIT as usize);
        }
        if let Some(l) = self.limit
            && !(1..=MAX_LIMIT).contains(&l)
        {
            c.fail(
                "limit",
                format!("ensure this value is between 1 and {MAX_LIMIT}"),
                "value_error.number.range",
            );
        }
        if let Some(ch) = self.channel
            && !matches!(ch, Channel::Sms | Channel::Email)
        {
            c.fail(
                "channel",
                "only sms and email messages are resent",
                "value_error",
            );
        }
        if let (Some(a), Some(b)) = (self.since, self.until)
            && a >= b
        {
            c.fail("until", "until must be after since", "value_error");
        }
    }
}

#[derive(Debug, Object)]
pub struct RetryFailedResponse {
    /// Messages queued again (with `dry_run`: would be).
    pub queued: u32,
    /// Failures that retrying cannot fix (opted out, invalid number, hard bounce…): skipped.
    pub skipped_permanent: u32,
    /// The ids of the messages queued.
    pub message_ids: Vec<i64>,
}

pub struct RetryApi {
    pub state: Arc<AppState>,
}

impl RetryApi {
    async fn retry(
        &self,
        business_id: Option<i64>,
        req: RetryFailedRequest,
        trace: &RequestId,
    ) -> Result<Json<RetryFailedResponse>, ApiError> {
        let selection = RetrySelection {
            business_id,
            message_ids: req.message_ids,
            channel: req.channel,
            since: req.since,
            until: req.until,
            limit: req.limit.unwrap_or(DEFAULT_LIMIT),
        };
        let outcome = ops::retry_failed(
            &self.state.db,
            &self.state.producer,
            &selection,
            req.dry_run,
            Some(&trace.0),
        )
        .await?;
        Ok(Json(RetryFailedResponse {
            queued: outcome.queued.len() as u32,
            skipped_permanent: outcome.skipped_permanent as u32,
            message_ids: outcome.queued,
        }))
    }
}

#[OpenApi]
impl RetryApi {
    /// Retry failed messages of a business
    ///
    /// Resends failed SMS and email that omega sent, through the queue (a real resend; the
    /// message keeps its row and its history grows). Failures that retrying cannot fix are
    /// skipped and counted. `dry_run` lists without changing anything.
    #[oai(
        path = "/businesses/:business_id/messages/retry-failed",
        method = "post",
        tag = "ApiTags::Messages"
    )]
    async fn retry_business(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        body: ValidJson<RetryFailedRequest>,
        trace: Data<&RequestId>,
    ) -> Result<Json<RetryFailedResponse>, ApiError> {
        auth.principal().can_write(business_id.0)?;
        self.state.require_business_exists(business_id.0).await?;
        self.retry(Some(business_id.0), body.value, &trace).await
    }

    /// Retry failed messages (all businesses)
    ///
    /// The same across all businesses (or the one `business_id` names); platform key only.
    #[oai(
        path = "/messages/retry-failed",
        method = "post",
        tag = "ApiTags::Messages"
    )]
    async fn retry_all(
        &self,
        auth: Auth,
        body: ValidJson<RetryFailedRequest>,
        trace: Data<&RequestId>,
    ) -> Result<Json<RetryFailedResponse>, ApiError> {
        auth.principal().can_administer()?;
        let req = body.value;
        self.retry(req.business_id, req, &trace).await
    }
}
