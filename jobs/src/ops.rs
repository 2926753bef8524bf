//! Operator actions on the queues, shared by the admin HTTP API and the `omega jobs` CLI.
use serde_json::Value;

use crate::queue::{DeadJob, DeadSelector, JobQueue};
use crate::{JobType, QueueError};

/// Jobs replayed or drained per queue call in a long run (the unit of progress).
pub const CHUNK: usize = 1000;

/// One line that says what a dead job was about, without its personal data.
pub fn summarize(job: &DeadJob) -> String {
    let data = &job.payload["data"];
    let business = job
        .business_id
        .map(|b| format!(" for business {b}"))
        .unwrap_or_default();
    match job.payload["type"].as_str() {
        Some(kind @ ("record_sms" | "record_email")) => {
            let n = data["items"].as_array().map_or(0, Vec::len);
            format!(
                "{kind}: {n} message{}{business}",
                if n == 1 { "" } else { "s" }
            )
        }
        Some("onboard") => {
            let clients = data["data"]["clients"].as_array().map_or(0, Vec::len);
            format!("onboard{business}: {clients} clients")
        }
        Some(other) => format!("{other}{business}"),
        None => match &job.payload {
            Value::String(_) => "unreadable payload".to_owned(),
            _ => format!("{}{business}: unrecognised payload", job.job_type),
        },
    }
}

/// Replays (or drains) the selected dead jobs in chunks, reporting `(done, total)` after each.
/// Safe while workers run and safe to repeat: a job no longer dead is skipped.
pub async fn apply_in_chunks(
    queue: &dyn JobQueue,
    job_type: JobType,
    selector: &DeadSelector,
    replay: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, QueueError> {
    let ids = queue.dead_ids(job_type, selector).await?;
    let total = ids.len() as u64;
    let mut done = 0u64;
    let mut affected = 0u64;
    progress(0, total);
    for chunk in ids.chunks(CHUNK) {
        let only = DeadSelector {
            ids: Some(chunk.to_vec()),
            ..Default::default()
        };
        affected += if replay {
            queue.replay_dead(job_type, &only).await?
        } else {
            queue.drain_dead(job_type, &only).await?
        };
        done += chunk.len() as u64;
        progress(done, total);
    }
    Ok(affected)
}

/// What a retry of failed messages did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RetryOutcome {
    /// The messages queued again (with a dry run: would be).
    pub queued: Vec<i64>,
    pub skipped_permanent: usize,
}

/// An operator action failed, in the database or in the queue.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Data(#[from] entities::Error),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Resends failed messages omega sent: each goes back to `queued` and gets a send job; its
/// row is kept. Failures that retrying cannot fix are skipped. Shared by the HTTP API and
/// `omega messages retry-failed`.
pub async fn retry_failed(
    db: &sea_orm::DatabaseConnection,
    producer: &crate::Producer,
    selection: &entities::outbound::RetrySelection,
    dry_run: bool,
    trace_id: Option<&str>,
) -> Result<RetryOutcome, OpsError> {
    use entities::outbound;
    let failed = outbound::failed_messages(db, selection).await?;
    let (permanent, retryable): (Vec<_>, Vec<_>) = failed
        .into_iter()
        .partition(|m| outbound::is_permanent(m.error_code.as_deref()));
    let mut queued: Vec<i64> = retryable.iter().map(|m| m.id).collect();
    if !dry_run {
        queued.clear();
        for msg in retryable {
            let (id, sms) = (
                msg.id,
                msg.channel == entities::types::Channel::Sms.as_str(),
            );
            let Some(job) = outbound::requeue(db, msg).await? else {
                // A concurrent retry took it first.
                continue;
            };
            queued.push(id);
            let request_id = job.batch.request_id.clone();
            let job = if sms {
                crate::Job::SendSms(job)
            } else {
                crate::Job::SendEmail(job)
            };
            if let Err(e) = producer.enqueue(&[job], &request_id, trace_id).await {
                // Not queued: it stays failed, as it was.
                let _ =
                    outbound::unqueue(db, id, "retry_not_queued", "the retry could not be queued")
                        .await;
                return Err(e.into());
            }
        }
    }
    tracing::info!(
        queued = queued.len(),
        skipped = permanent.len(),
        dry_run,
        "retry of failed messages"
    );
    Ok(RetryOutcome {
        queued,
        skipped_permanent: permanent.len(),
    })
}
