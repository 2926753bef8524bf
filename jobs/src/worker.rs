//! The bridge to apalis: [`QueueSource`] is an apalis backend that fetches from a
//! [`JobQueue`]; the [`SettleLayer`] it installs settles every delivery after its handler ran.
//!
//! The queue, not apalis's in-process retry layer, owns retries: a failed job goes back to the
//! queue with its backoff, so the schedule survives restarts and is the same on both backends.
//! A backend error never stops the worker: the source logs it and tries again after a pause.
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use apalis_core::task::task_id::RandomId;
use apalis_core::worker::context::WorkerContext;
use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::{Delivery, JobError, JobQueue, JobType, QueueError, RetryPolicy};

/// How long one fetch waits for a job; also the most a shutdown waits for a fetch under way.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// Pause after a failed fetch (queue unreachable) before the next.
const FETCH_BACKOFF: Duration = Duration::from_secs(1);

pub type JobTask = Task<Arc<Delivery>>;

pub struct QueueSource {
    queue: Arc<dyn JobQueue>,
    job_type: JobType,
    consumer: String,
    batch: usize,
    /// Deliveries handed to the worker and not yet settled (shared with the settle layer).
    running: Arc<AtomicUsize>,
    policy: RetryPolicy,
    buffer: VecDeque<Delivery>,
    fetching: Option<BoxFuture<'static, Result<Vec<Delivery>, QueueError>>>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
    closing: Option<BoxFuture<'static, ()>>,
}

impl QueueSource {
    /// `consumer` names this worker to the queue (unique per process and worker); `batch` is
    /// how many jobs one fetch takes, best equal to the worker's concurrency.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        job_type: JobType,
        consumer: String,
        batch: usize,
        policy: RetryPolicy,
    ) -> Self {
        QueueSource {
            queue,
            job_type,
            consumer,
            batch: batch.max(1),
            running: Arc::new(AtomicUsize::new(0)),
            policy,
            buffer: VecDeque::new(),
            fetching: None,
            backoff: None,
            closing: None,
        }
    }

    fn start_fetch(&mut self) {
        // Only as many as can start now (the worker asks for a job when it has room for
        // one): a job fetched but waiting in the buffer has no lease kept alive, and one
        // that waits past the visibility timeout is taken over by another worker and run
        // twice.
        let room = self
            .batch
            .saturating_sub(self.running.load(Ordering::Relaxed))
            .max(1);
        let (queue, t, consumer, batch, policy) = (
            self.queue.clone(),
            self.job_type,
            self.consumer.clone(),
            room,
            self.policy,
        );
        self.fetching = Some(Box::pin(async move {
            let fetched = queue.fetch(t, &consumer, batch, FETCH_WAIT).await?;
            let mut live = Vec::with_capacity(fetched.len());
            for d in fetched {
                // A job delivered more often than the policy allows kept killing or stalling
                // its workers: it goes dead instead of being run again.
                if d.attempt > policy.max_attempts {
                    let error = format!(
                        "abandoned: delivered {} times without settling (worker crash or timeout); last error: {}",
                        d.attempt,
                        d.envelope.last_error.as_deref().unwrap_or("none")
                    );
                    tracing::error!(job_type = %t, job_id = %d.envelope.id, %error, "burying job");
                    queue.bury(&d, &error).await?;
                } else {
                    live.push(d);
                }
            }
            Ok(live)
        }));
    }
}

impl Backend for QueueSource {
    type Task = JobTask;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<JobTask, QueueError>>> {
        loop {
            if let Some(d) = self.buffer.pop_front() {
                self.running.fetch_add(1, Ordering::Relaxed);
                return Poll::Ready(Some(Ok(Task::new(Arc::new(d)))));
            }
            if let Some(pause) = self.backoff.as_mut() {
                futures::ready!(pause.as_mut().poll(cx));
                self.backoff = None;
            }
            if self.fetching.is_none() {
                self.start_fetch();
            }
            let fetch = self.fetching.as_mut().expect("a fetch was just started");
            match fetch.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(deliveries)) => {
                    self.fetching = None;
                    self.buffer.extend(deliveries);
                }
                Poll::Ready(Err(e)) => {
                    self.fetching = None;
                    tracing::warn!(job_type = %self.job_type, error = %e, "fetching jobs failed; trying again");
                    self.backoff = Some(Box::pin(tokio::time::sleep(FETCH_BACKOFF)));
                }
            }
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.closing.is_none() {
            // Jobs fetched but never started go back to the queue at once, without an attempt.
            let queue = self.queue.clone();
            let fetch = self.fetching.take();
            let mut unstarted: Vec<Delivery> = self.buffer.drain(..).collect();
            self.closing = Some(Box::pin(async move {
                if let Some(fetch) = fetch
                    && let Ok(more) = fetch.await
                {
                    unstarted.extend(more);
                }
                for d in unstarted {
                    if let Err(e) = queue.release(&d).await {
                        tracing::warn!(job_id = %d.envelope.id, error = %e, "could not release a job; it returns after the visibility timeout");
                    }
                }
            }));
        }
        self.closing
            .as_mut()
            .expect("closing was just set")
            .as_mut()
            .poll(cx)
            .map(Ok)
    }
}

impl BackendConfig for QueueSource {
    type Args = Arc<Delivery>;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = SettleLayer;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> SettleLayer {
        SettleLayer {
            queue: self.queue.clone(),
            policy: self.policy,
            consumer: self.consumer.clone().into(),
            running: self.running.clone(),
        }
    }
}

/// Acks, retries or buries each delivery according to how its handler ended, and keeps the
/// delivery's visibility lease alive while the handler runs.
#[derive(Clone)]
pub struct SettleLayer {
    queue: Arc<dyn JobQueue>,
    policy: RetryPolicy,
    consumer: Arc<str>,
    running: Arc<AtomicUsize>,
}

/// Counts a delivery as running until dropped (settled, or its future dropped).
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S> Layer<S> for SettleLayer {
    type Service = Settle<S>;

    fn layer(&self, inner: S) -> Settle<S> {
        Settle {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Settle<S> {
    inner: S,
    layer: SettleLayer,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Acked,
    Retried,
    Buried,
    /// Put back until it is due.
    Deferred,
    /// The queue could not be told; the delivery returns after the visibility timeout.
    Unsettled,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Acked => "succeeded",
            Settled::Retried => "retried",
            Settled::Buried => "dead",
            Settled::Deferred => "deferred",
            Settled::Unsettled => "unsettled",
        }
    }
}

impl<S> Service<JobTask> for Settle<S>
where
    S: Service<JobTask>,
    S::Error: Into<BoxDynError>,
    S::Response: Send,
    S::Future: Send + 'static,
{
    type Response = Settled;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<Settled, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: JobTask) -> Self::Future {
        let d = task.args.clone();
        let run = self.inner.call(task);
        let SettleLayer {
            queue,
            policy,
            consumer,
            running,
        } = self.layer.clone();
        let running = Running(running);
        Box::pin(async move {
            let _running = running;
            let started = std::time::Instant::now();
            let lease = async {
                let mut every = tokio::time::interval(queue.visibility_timeout() / 3);
                every.tick().await;
                loop {
                    every.tick().await;
                    if let Err(e) = queue.keep_alive(&d, &consumer).await {
                        tracing::warn!(job_id = %d.envelope.id, error = %e, "could not extend a job's lease");
                    }
                }
            };
            let outcome = tokio::select! {
                outcome = run => outcome.map_err(Into::into),
                never = lease => never,
            };
            let settled = settle(&*queue, &policy, &d, outcome).await;
            let job_type = d.envelope.job_type.as_str();
            metrics::histogram!("omega_job_duration_seconds", "job_type" => job_type)
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("omega_jobs_settled_total", "job_type" => job_type, "outcome" => settled.as_str()).increment(1);
            Ok(settled)
        })
    }
}

async fn settle<R>(
    queue: &dyn JobQueue,
    policy: &RetryPolicy,
    d: &Delivery,
    outcome: Result<R, BoxDynError>,
) -> Settled {
    let job_id = &d.envelope.id;
    let job_type = d.envelope.job_type;
    let (result, settled) = match outcome {
        Ok(_) => (queue.ack(d).await, Settled::Acked),
        Err(ref error)
            if let Some(JobError::NotDue { until }) = error.downcast_ref::<JobError>() =>
        {
            tracing::debug!(%job_type, %job_id, %until, "not due yet; deferred");
            (
                queue.defer(d, until.timestamp_millis()).await,
                Settled::Deferred,
            )
        }
        Err(error) => {
            let permanent = error
                .downcast_ref::<JobError>()
                .is_some_and(|e| matches!(e, JobError::Permanent(_)));
            if permanent {
                tracing::error!(%job_type, %job_id, attempt = d.attempt, %error, "job failed permanently");
                (queue.bury(d, &error.to_string()).await, Settled::Buried)
            } else if policy.exhausted(d.attempt) {
                let error = format!("gave up after {} attempts: {error}", d.attempt);
                tracing::error!(%job_type, %job_id, %error, "job is dead");
                (queue.bury(d, &error).await, Settled::Buried)
            } else {
                // A Retry-After from the other side is honoured (up to an hour).
                let asked = match error.downcast_ref::<JobError>() {
                    Some(JobError::RetryAfter { after, .. }) => {
                        Some((*after).min(std::time::Duration::from_secs(3600)))
                    }
                    _ => None,
                };
                let delay = asked.map_or_else(
                    || policy.delay(d.attempt),
                    |a| a.max(policy.delay(d.attempt)),
                );
                tracing::warn!(%job_type, %job_id, attempt = d.attempt, ?delay, %error, "job failed; will retry");
                (
                    queue.retry(d, delay, &error.to_string()).await,
                    Settled::Retried,
                )
            }
        }
    };
    match result {
        Ok(()) => settled,
        Err(e) => {
            tracing::error!(%job_type, %job_id, error = %e, "could not settle a job; it will be delivered again");
            Settled::Unsettled
        }
    }
}
