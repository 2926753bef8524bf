use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::{Delivery, Envelope, Job, JobType, QueueError};

/// Counts of one job type's queue.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct QueueStats {
    pub job_type: String,
    /// Waiting to be picked up (due now).
    pub pending: u64,
    /// Delivered to a worker and not yet settled.
    pub running: u64,
    /// Failed and waiting for their next attempt.
    pub retrying: u64,
    pub dead: u64,
    /// Completed since the queue was created.
    pub done: u64,
}

/// A job that failed for good, with what is needed to understand and replay it.
#[derive(Clone, Debug, Serialize)]
pub struct DeadJob {
    pub id: String,
    pub job_type: String,
    pub request_id: Option<String>,
    pub business_id: Option<i64>,
    pub attempts: u32,
    pub last_error: String,
    pub first_failed_at: i64,
    pub last_failed_at: i64,
    pub payload: serde_json::Value,
}

/// Which dead jobs an operation applies to; all fields empty means every dead job of the type.
#[derive(Clone, Debug, Default)]
pub struct DeadSelector {
    pub ids: Option<Vec<String>>,
    pub business_id: Option<i64>,
    pub error_contains: Option<String>,
}

impl DeadSelector {
    pub fn matches(&self, job: &DeadJob) -> bool {
        self.ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == &job.id))
            && self.business_id.is_none_or(|b| job.business_id == Some(b))
            && self.error_contains.as_ref().is_none_or(|needle| {
                job.last_error
                    .to_lowercase()
                    .contains(&needle.to_lowercase())
            })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DeadPage {
    pub items: Vec<DeadJob>,
    pub total: u64,
}

/// The interface both backends implement. Semantics:
/// - `push` is durable when it returns;
/// - `fetch` hands each job to one consumer at a time; a delivery not settled within the
///   visibility timeout (its worker crashed) is delivered again;
/// - exactly one of `ack`, `retry`, `bury` or `release` settles a delivery.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Pushes all the jobs or none of them.
    async fn push(&self, jobs: &[Envelope]) -> Result<(), QueueError>;

    /// As `push`, but not applied at all once the queue's clock passes `deadline_ms`
    /// (milliseconds since the epoch): a push its caller gave up on (and answered 503 for)
    /// never lands later. A backend whose push is one transaction, rolled back when the
    /// caller drops it, needs nothing more.
    async fn push_by(&self, jobs: &[Envelope], deadline_ms: i64) -> Result<(), QueueError> {
        let _ = deadline_ms;
        self.push(jobs).await
    }

    /// Up to `max` jobs of one type, waiting up to `wait` for the first one.
    async fn fetch(
        &self,
        job_type: JobType,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// The job is done.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// The attempt failed; run it again after `delay`.
    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError>;

    /// The job is not due yet: make it available again at `until_ms` (milliseconds since the
    /// epoch), without counting this delivery as an attempt.
    async fn defer(&self, delivery: &Delivery, until_ms: i64) -> Result<(), QueueError>;

    /// The job failed for good: keep it in the dead-letter store.
    async fn bury(&self, delivery: &Delivery, error: &str) -> Result<(), QueueError>;

    /// The job was fetched but never started (worker shutting down): make it available now
    /// without counting an attempt.
    async fn release(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// The job is still being worked on: extend its visibility timeout.
    async fn keep_alive(&self, delivery: &Delivery, consumer: &str) -> Result<(), QueueError>;

    async fn stats(&self) -> Result<Vec<QueueStats>, QueueError>;

    /// Dead jobs, newest failure first.
    async fn list_dead(
        &self,
        job_type: JobType,
        selector: &DeadSelector,
        offset: u64,
        limit: u64,
    ) -> Result<DeadPage, QueueError>;

    /// The ids of the selected dead jobs, newest failure first.
    async fn dead_ids(
        &self,
        job_type: JobType,
        selector: &DeadSelector,
    ) -> Result<Vec<String>, QueueError>;

    /// Puts selected dead jobs back on the queue with fresh attempts; returns how many.
    async fn replay_dead(
        &self,
        job_type: JobType,
        selector: &DeadSelector,
    ) -> Result<u64, QueueError>;

    /// Deletes selected dead jobs; returns how many.
    async fn drain_dead(
        &self,
        job_type: JobType,
        selector: &DeadSelector,
    ) -> Result<u64, QueueError>;

    /// Deletes the dead jobs of every type whose last failure was before `before_ms`
    /// (milliseconds since the epoch); returns how many.
    async fn sweep_dead(&self, before_ms: i64) -> Result<u64, QueueError>;

    async fn ping(&self) -> Result<(), QueueError>;

    /// Keeps `value` under `key` until forgotten: something a job did outside the queue and
    /// the database (a provider accepting a message), noted the moment it is known, so that a
    /// re-delivery after its worker died can tell before the batch recording it commits.
    /// A note left behind by a crash expires after a day (Redis) or is swept with the dead
    /// jobs of its age (the SQL queue).
    async fn note(&self, key: &str, value: &str) -> Result<(), QueueError>;

    /// The note under `key`, if there is one.
    async fn noted(&self, key: &str) -> Result<Option<String>, QueueError>;

    /// Forgets the notes under `keys` (what they said is recorded elsewhere now).
    async fn forget_notes(&self, keys: &[String]) -> Result<(), QueueError>;

    /// How long a delivery stays invisible to other consumers before it is taken over.
    fn visibility_timeout(&self) -> Duration;
}

/// What the ingress holds: turns typed jobs into envelopes and pushes them.
#[derive(Clone)]
pub struct Producer {
    queue: Arc<dyn JobQueue>,
    /// How long a push may take before it is given up (and then never applied).
    timeout: Option<Duration>,
}

impl Producer {
    pub fn new(queue: Arc<dyn JobQueue>) -> Self {
        Producer {
            queue,
            timeout: None,
        }
    }

    /// A producer whose pushes fail with [`QueueError::Timeout`] after `timeout`, so that a
    /// hung queue never hangs the request that pushes.
    pub fn bounded(queue: Arc<dyn JobQueue>, timeout: Duration) -> Self {
        Producer {
            queue,
            timeout: Some(timeout),
        }
    }

    pub fn queue(&self) -> &Arc<dyn JobQueue> {
        &self.queue
    }

    /// Pushes the jobs of one request; when this returns Ok they are durable.
    pub async fn enqueue(
        &self,
        jobs: &[Job],
        request_id: &str,
        trace_id: Option<&str>,
    ) -> Result<(), QueueError> {
        let envelopes = jobs
            .iter()
            .map(|job| {
                Envelope::new(
                    job,
                    Some(request_id.to_owned()),
                    trace_id.map(str::to_owned),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self.timeout {
            None => self.queue.push(&envelopes).await?,
            Some(timeout) => {
                let deadline = crate::now_ms() + timeout.as_millis() as i64;
                tokio::time::timeout(timeout, self.queue.push_by(&envelopes, deadline))
                    .await
                    .map_err(|_| QueueError::Timeout(timeout))??
            }
        }
        for job in jobs {
            metrics::counter!("omega_jobs_enqueued_total", "job_type" => job.job_type().as_str())
                .increment(1);
        }
        Ok(())
    }
}
