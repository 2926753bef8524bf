use thiserror::Error;

/// A queue backend failed (Redis or the database unreachable, a reply not understood).
#[derive(Debug, Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("job encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("unexpected reply from the queue: {0}")]
    Protocol(String),
    /// The queue did not answer in time; the push was not applied and never will be.
    #[error("the queue did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// How a job handler failed: the settle layer retries transient failures and buries
/// permanent ones at once.
#[derive(Debug, Error)]
pub enum JobError {
    #[error("{0}")]
    Transient(String),
    /// Transient, and the other side said when to come back (HTTP Retry-After).
    #[error("{reason} (retry after {after:?})")]
    RetryAfter {
        after: std::time::Duration,
        reason: String,
    },
    #[error("{0}")]
    Permanent(String),
    /// Not a failure: the job is not due yet (a message scheduled for later). It waits in the
    /// queue, not in a worker, and its attempts are not counted.
    #[error("not due until {until}")]
    NotDue {
        until: chrono::DateTime<chrono::Utc>,
    },
}
