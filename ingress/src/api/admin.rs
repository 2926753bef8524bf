//! Operator endpoints (platform key): queue counts, and the dead-letter store to list,
//! replay and drain. The CLI (`omega jobs`) does the same through `jobs::ops`.
use std::sync::Arc;

use jobs::{DeadSelector, JobType, ops};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::paging::{PageInfo, PageNumber, PageSize, page_info, paging};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Checker, ValidJson, Validate};

/// One job type's queue.
#[derive(Debug, Object)]
pub struct QueueCounts {
    pub job_type: String,
    /// Waiting to be picked up.
    pub pending: u64,
    /// Being worked on.
    pub running: u64,
    /// Failed, waiting for their next attempt.
    pub failed: u64,
    pub dead: u64,
    /// Completed since the queue was created.
    pub done: u64,
}

#[derive(Debug, Object)]
pub struct QueuesResponse {
    pub queues: Vec<QueueCounts>,
}

#[derive(Debug, Object)]
pub struct DeadJobItem {
    pub id: String,
    pub job_type: String,
    /// What the job was about (no personal data).
    pub summary: String,
    #[oai(nullable)]
    pub request_id: Option<String>,
    #[oai(nullable)]
    pub business_id: Option<i64>,
    pub attempts: u32,
    pub last_error: String,
    pub first_failed_at: chrono::DateTime<chrono::Utc>,
    pub last_failed_at: chrono::DateTime<chrono::Utc>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Object)]
pub struct PaginatedDeadJobs {
    pub items: Vec<DeadJobItem>,
    #[oai(flatten)]
    pub page: PageInfo,
}

/// Which dead jobs to replay or drain: by `ids`, by filter (`business_id`, `error_contains`),
/// or, with none of them, all. `dry_run` only counts.
#[derive(Debug, Object, Deserialize)]
pub struct DeadJobSelection {
    #[serde(default)]
    #[oai(nullable)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    #[oai(nullable)]
    pub business_id: Option<i64>,
    /// Case-insensitive text the last error must contain.
    #[serde(default)]
    #[oai(nullable)]
    pub error_contains: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

impl Validate for DeadJobSelection {
    fn validate(&mut self, c: &mut Checker) {
        if let Some(ids) = &self.ids {
            c.count("ids", ids.len(), 1, 100_000);
        }
        if let Some(text) = &self.error_contains {
            c.length("error_contains", text, 1, 500);
        }
    }
}

impl DeadJobSelection {
    fn selector(&self) -> DeadSelector {
        DeadSelector {
            ids: self.ids.clone(),
            business_id: self.business_id,
            error_contains: self.error_contains.clone(),
        }
    }
}

#[derive(Debug, Object)]
pub struct DeadJobsAction {
    /// How many jobs were replayed or drained (with `dry_run`: would be).
    pub count: u64,
    pub dry_run: bool,
}

pub struct AdminApi {
    pub state: Arc<AppState>,
}

fn job_type(name: &str) -> Result<JobType, ApiError> {
    JobType::parse(name).ok_or_else(|| ApiError::not_found(format!("No queue named {name:?}")))
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl AdminApi {
    async fn act(
        &self,
        auth: Auth,
        name: &str,
        body: DeadJobSelection,
        replay: bool,
    ) -> Result<Json<DeadJobsAction>, ApiError> {
        auth.principal().can_administer()?;
        let t = job_type(name)?;
        let queue = self.state.producer.queue();
        let selector = body.selector();
        let count = if body.dry_run {
            queue.dead_ids(t, &selector).await?.len() as u64
        } else {
            ops::apply_in_chunks(queue.as_ref(), t, &selector, replay, |_, _| {}).await?
        };
        tracing::info!(queue = %t, count, replay, dry_run = body.dry_run, "dead jobs {}", if replay { "replayed" } else { "drained" });
        Ok(Json(DeadJobsAction {
            count,
            dry_run: body.dry_run,
        }))
    }
}

#[OpenApi]
impl AdminApi {
    /// Queue counts
    ///
    /// Per job type: pending, running, failed (waiting to retry), dead and done.
    #[oai(path = "/admin/queues", method = "get", tag = "ApiTags::Operators")]
    async fn queues(&self, auth: Auth) -> Result<Json<QueuesResponse>, ApiError> {
        auth.principal().can_administer()?;
        let stats = self.state.producer.queue().stats().await?;
        Ok(Json(QueuesResponse {
            queues: stats
                .into_iter()
                .map(|s| QueueCounts {
                    job_type: s.job_type,
                    pending: s.pending,
                    running: s.running,
                    failed: s.retrying,
                    dead: s.dead,
                    done: s.done,
                })
                .collect(),
        }))
    }

    /// Dead jobs
    ///
    /// Newest failure first, with their last error; filter by business and by error text.
    #[oai(
        path = "/admin/queues/:job_type/dead",
        method = "get",
        tag = "ApiTags::Operators"
    )]
    async fn dead(
        &self,
        auth: Auth,
        job_type: Path<String>,
        business_id: Query<Option<i64>>,
        error_contains: Query<Option<String>>,
        page: Query<PageNumber>,
        page_size: Query<PageSize>,
    ) -> Result<Json<PaginatedDeadJobs>, ApiError> {
        auth.principal().can_administer()?;
        let t = self::job_type(&job_type.0)?;
        let selector = DeadSelector {
            ids: None,
            business_id: business_id.0,
            error_contains: error_contains.0,
        };
        let paging = paging(page.0, page_size.0);
        let found = self
            .state
            .producer
            .queue()
            .list_dead(t, &selector, paging.offset(), paging.page_size)
            .await?;
        Ok(Json(PaginatedDeadJobs {
            items: found
                .items
                .into_iter()
                .map(|j| DeadJobItem {
                    summary: ops::summarize(&j),
                    id: j.id,
                    job_type: j.job_type,
                    request_id: j.request_id,
                    business_id: j.business_id,
                    attempts: j.attempts,
                    last_error: j.last_error,
                    first_failed_at: time(j.first_failed_at),
                    last_failed_at: time(j.last_failed_at),
                    payload: j.payload,
                })
                .collect(),
            page: page_info(paging, found.total),
        }))
    }

    /// Replay dead jobs
    ///
    /// Puts the selected dead jobs back on their queue with fresh attempts. Safe while workers
    /// run and safe to repeat: each replay runs a job at most once more.
    #[oai(
        path = "/admin/queues/:job_type/dead/replay",
        method = "post",
        tag = "ApiTags::Operators"
    )]
    async fn replay(
        &self,
        auth: Auth,
        job_type: Path<String>,
        body: ValidJson<DeadJobSelection>,
    ) -> Result<Json<DeadJobsAction>, ApiError> {
        self.act(auth, &job_type.0, body.value, true).await
    }

    /// Drain dead jobs
    ///
    /// Deletes the selected dead jobs, answering how many. Never touches pending or running jobs.
    #[oai(
        path = "/admin/queues/:job_type/dead/drain",
        method = "post",
        tag = "ApiTags::Operators"
    )]
    async fn drain(
        &self,
        auth: Auth,
        job_type: Path<String>,
        body: ValidJson<DeadJobSelection>,
    ) -> Result<Json<DeadJobsAction>, ApiError> {
        self.act(auth, &job_type.0, body.value, false).await
    }
}
