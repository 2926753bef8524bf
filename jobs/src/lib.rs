//! Typed jobs, and the durable queues that carry them from the ingress to the workers.
//!
//! Two backends share one interface ([`JobQueue`]) and one set of guarantees:
//! - [`redis_queue::RedisQueue`]: Redis Streams with a consumer group (scaled deployment);
//! - [`sql_queue::SqlQueue`]: a table in the service's own database (embedded deployment).
//!
//! [`worker::QueueSource`] makes either one an apalis backend; [`worker::SettleLayer`] acks,
//! retries (exponential backoff with jitter) or buries each job after its handler returns.
mod envelope;
pub mod erasure;
mod error;
mod job;
pub mod ops;
mod queue;
pub mod redis_queue;
mod retry;
pub mod sql_queue;
pub mod wakeup;
pub mod worker;

pub use envelope::{Delivery, Envelope};
pub use error::{JobError, QueueError};
pub use job::{Inbound, Job, JobType, OnboardJob, StatusUpdates};
pub use queue::{DeadJob, DeadPage, DeadSelector, JobQueue, Producer, QueueStats};
pub use retry::RetryPolicy;

/// A Redis client whose connections set TCP_NODELAY: a command or pipeline larger than one
/// segment would otherwise wait for the server's delayed ACK (up to 40 ms) before its last
/// segment goes.
pub fn redis_client(url: &str) -> redis::RedisResult<redis::Client> {
    let info = redis::IntoConnectionInfo::into_connection_info(url)?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    redis::Client::open(info)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
