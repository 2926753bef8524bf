//! The apalis workers: one worker per job type, each fetching from the shared queue and
//! doing the job's database work (and, for send jobs, the provider call).
mod attachments;
mod batch;
mod handlers;
mod outcome;
pub mod providers;
mod quiet;
pub mod relay;
mod send;
mod steps;
pub mod sweep;
mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use jobs::worker::QueueSource;
use jobs::{JobQueue, JobType, RetryPolicy};
use sea_orm::DatabaseConnection;

pub use providers::ProviderSettings;
use steps::Batches;
pub use webhooks::WebhookSettings;

pub use handlers::handle;

/// Webhook deliveries under way at once per process, at least (they mostly wait on other
/// services' answers).
pub const DELIVERIES_AT_ONCE: usize = 64;

/// What every handler needs.
pub struct Ctx {
    pub db: DatabaseConnection,
    pub policy: RetryPolicy,
    pub providers: ProviderSettings,
    /// The database steps that concurrent jobs share a transaction for.
    batches: Batches,
    quiet: quiet::QuietRules,
    /// For jobs that make jobs (the answer to a HELP text).
    producer: jobs::Producer,
    webhooks: webhooks::Deliverer,
    /// Fetches email attachments given by URL.
    attachments: attachments::Fetcher,
    /// Permits for provider calls in flight ([`WorkerOptions::provider_calls`]).
    provider_calls: tokio::sync::Semaphore,
}

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub providers: ProviderSettings,
    pub webhooks: WebhookSettings,
    /// Jobs of one type handled at once by this process.
    pub concurrency: usize,
    /// The most send or status jobs that share one transaction; so many of those run at once.
    pub batch: usize,
    /// Provider calls in flight at once in this process (see `send.rs`).
    pub provider_calls: usize,
    pub policy: RetryPolicy,
    /// A job running longer than this fails (and is retried).
    pub job_timeout: Duration,
    /// How long a shutdown waits for jobs under way.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("worker monitor: {0}")]
    Monitor(#[from] apalis::prelude::MonitorError),
    #[error(transparent)]
    Data(#[from] entities::Error),
    #[error("queue: {0}")]
    Queue(#[from] jobs::QueueError),
    #[error("job encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// Runs workers for every job type until `shutdown` completes, then lets jobs under way finish
/// (up to the shutdown timeout) and hands unstarted ones back to the queue.
pub async fn run(
    db: DatabaseConnection,
    queue: Arc<dyn JobQueue>,
    opts: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkersError> {
    let producer = jobs::Producer::new(queue.clone());
    let batches = Batches::new(&db, producer.clone(), opts.batch);
    let webhooks = webhooks::Deliverer::new(&db, opts.webhooks.clone(), opts.batch);
    let ctx = Arc::new(Ctx {
        db,
        policy: opts.policy,
        providers: opts.providers.clone(),
        batches,
        quiet: quiet::QuietRules::default(),
        producer,
        webhooks,
        attachments: attachments::Fetcher::new(opts.webhooks.urls),
        provider_calls: tokio::sync::Semaphore::new(opts.provider_calls.max(1)),
    });
    // Consumer names are unique per process so a restarted process never inherits a dead
    // one's deliveries silently; those are taken over after the visibility timeout.
    let instance = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut monitor = Monitor::new().shutdown_timeout(opts.shutdown_timeout);
    for job_type in JobType::ALL.iter().copied() {
        let (ctx, queue, opts, instance) =
            (ctx.clone(), queue.clone(), opts.clone(), instance.clone());
        let concurrency = match job_type {
            // Onboarding is one large transaction per job: a few at a time is plenty.
            JobType::Onboard => opts.concurrency.min(2),
            // Group-committed: the more run at once, the fuller each transaction.
            JobType::SendSms | JobType::SendEmail | JobType::UpdateStatus => {
                opts.concurrency.max(opts.batch)
            }
            // Mostly waiting on other services' answers (up to the webhook timeout each).
            JobType::DeliverWebhook => opts.concurrency.max(DELIVERIES_AT_ONCE),
            _ => opts.concurrency,
        };
        monitor = monitor.register(move |index| {
            let consumer = format!("{}-{instance}-{index}", job_type.as_str());
            let source = QueueSource::new(
                queue.clone(),
                job_type,
                consumer.clone(),
                concurrency,
                opts.policy,
            );
            WorkerBuilder::new(consumer)
                .backend(source)
                .concurrency(concurrency)
                .timeout(opts.job_timeout)
                .catch_panic()
                .data(ctx.clone())
                .build(handle)
        });
    }
    monitor
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await?;
    Ok(())
}
