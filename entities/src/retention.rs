//! How long omega keeps what only grows: Idempotency-Key records (their 24 h window), webhook
//! receipts (whole provider bodies), finished onboarding runs, the event log and webhook delivery attempts. Dead jobs are the queue's
//! (`jobs::JobQueue::sweep_dead`). Each sweep takes `now`, so tests cover expiry without
//! waiting.
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::{Result, idempotency, onboarding_run, webhook_receipt};

/// How long each kind of record is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub webhook_receipts: Duration,
    /// Finished runs; a business's latest run is always kept (its onboarding status).
    pub onboarding_runs: Duration,
    pub dead_jobs: Duration,
    /// The event log (webhooks and streams resume from it within this time), and webhook
    /// delivery attempts.
    pub events: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            webhook_receipts: Duration::days(7),
            onboarding_runs: Duration::days(30),
            dead_jobs: Duration::days(30),
            events: Duration::days(7),
        }
    }
}

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub idempotency_records: u64,
    pub webhook_receipts: u64,
    pub onboarding_runs: u64,
    pub events: u64,
    pub webhook_attempts: u64,
}

/// Removes what is past its retention as of `now`.
pub async fn sweep(
    db: &impl ConnectionTrait,
    retention: &Retention,
    now: DateTime<Utc>,
) -> Result<Swept> {
    let receipts = webhook_receipt::Entity::delete_many()
        .filter(webhook_receipt::Column::ReceivedAt.lt(now - retention.webhook_receipts))
        .exec(db)
        .await?
        .rows_affected;
    // Finished runs past retention, except each business's latest.
    let runs = onboarding_run::Entity::delete_many()
        .filter(onboarding_run::Column::UpdatedAt.lt(now - retention.onboarding_runs))
        .filter(
            onboarding_run::Column::Status
                .is_in([crate::onboard::COMPLETED, crate::onboard::FAILED]),
        )
        .filter(Expr::cust(
            "created_at < (SELECT MAX(r.created_at) FROM onboarding_runs r \
             WHERE r.business_id = onboarding_runs.business_id)",
        ))
        .exec(db)
        .await?
        .rows_affected;
    Ok(Swept {
        idempotency_records: idempotency::sweep(db, now).await?,
        webhook_receipts: receipts,
        onboarding_runs: runs,
        events: crate::event_log::sweep(db, now - retention.events).await?,
        webhook_attempts: crate::webhooks::sweep_attempts(db, now - retention.events).await?,
    })
}
