//! The periodic sweep of what only grows (see `entities::retention`), run by every worker
//! process: deletions of expired rows are idempotent, so several sweepers at once are harmless.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entities::retention::{Retention, Swept};
use jobs::JobQueue;
use sea_orm::DatabaseConnection;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("database: {0}")]
    Data(#[from] entities::Error),
    #[error("queue: {0}")]
    Queue(#[from] jobs::QueueError),
}

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub data: Swept,
    pub dead_jobs: u64,
}

/// Removes everything past its retention as of `now`.
pub async fn sweep_once(
    db: &DatabaseConnection,
    queue: &dyn JobQueue,
    retention: &Retention,
    now: DateTime<Utc>,
) -> Result<Report, SweepError> {
    let data = entities::retention::sweep(db, retention, now).await?;
    let dead_jobs = queue
        .sweep_dead((now - retention.dead_jobs).timestamp_millis())
        .await?;
    Ok(Report { data, dead_jobs })
}

/// Sweeps every `every` until `stop` completes.
pub async fn run(
    db: DatabaseConnection,
    queue: Arc<dyn JobQueue>,
    retention: Retention,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let sweeping = async {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match sweep_once(&db, queue.as_ref(), &retention, Utc::now()).await {
                Ok(r) => {
                    for (kind, n) in [
                        ("idempotency_records", r.data.idempotency_records),
                        ("webhook_receipts", r.data.webhook_receipts),
                        ("onboarding_runs", r.data.onboarding_runs),
                        ("events", r.data.events),
                        ("dead_jobs", r.dead_jobs),
                    ] {
                        metrics::counter!("omega_swept_total", "kind" => kind).increment(n);
                    }
                    tracing::info!(?r, "swept expired records");
                }
                Err(e) => tracing::warn!(error = %e, "sweep failed; trying again next time"),
            }
        }
    };
    tokio::select! { _ = sweeping => {}, _ = stop => {} }
}
