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
