//! Erasing a client everywhere omega keeps them: the database (`entities::privacy`) and the
//! dead-letter store, whose failed jobs carry bodies and addresses too.
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use entities::{audit, privacy};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::Value;

use crate::ops::OpsError;
use crate::queue::{DeadSelector, JobQueue};
use crate::{JobType, QueueError};

/// What an erasure removed and kept, as counts: the answer and the audit entry.
#[derive(Clone, Debug, Serialize)]
pub struct Erasure {
    #[serde(flatten)]
    pub records: privacy::Erased,
    /// Dead jobs about this client alone, removed.
    pub dead_jobs_removed: u64,
    /// Dead jobs that carry this client among others (a batch, an onboarding): kept for
    /// the others' sake until their retention ends, so an operator can replay or drain them.
    pub dead_jobs_kept: u64,
}

/// How a dead job's payload relates to the client.
#[derive(Debug, PartialEq, Eq)]
enum Concern {
    None,
    Only,
    Among,
}

/// Whether a job payload names the client (by `client_id`, or by one of their addresses),
/// and whether it names any other client too.
fn concern(payload: &Value, client_id: i64, addresses: &BTreeSet<String>) -> Concern {
    fn walk(v: &Value, client_id: i64, addresses: &BTreeSet<String>, seen: &mut (bool, bool)) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "client_id" {
                        match v.as_i64() {
                            Some(id) if id == client_id => seen.0 = true,
                            Some(_) => seen.1 = true,
                            None => {}
                        }
                    } else {
                        walk(v, client_id, addresses, seen);
                    }
                }
            }
            Value::Array(items) => {
                if items.len() > 1 && items.iter().all(Value::is_object) {
                    // A list of records: one about someone else makes the job shared.
                    let mut mine = false;
                    for item in items {
                        let mut one = (false, false);
                        walk(item, client_id, addresses, &mut one);
                        mine |= one.0;
                        seen.1 |= one.1 || !one.0;
                    }
                    seen.0 |= mine;
                } else {
                    for item in items {
                        walk(item, client_id, addresses, seen);
                    }
                }
            }
            Value::String(s) => {
                let s = s.trim();
                if addresses.contains(s) || addresses.contains(&s.to_ascii_lowercase()) {
                    seen.0 = true;
                }
            }
            _ => {}
        }
    }
    let mut seen = (false, false);
    walk(payload, client_id, addresses, &mut seen);
    match seen {
        (false, _) => Concern::None,
        (true, false) => Concern::Only,
        (true, true) => Concern::Among,
    }
}

/// Removes the business's dead jobs about the client alone; counts those shared with others.
async fn erase_dead(
    queue: &dyn JobQueue,
    business_id: i64,
    client_id: i64,
    addresses: &BTreeSet<String>,
) -> Result<(u64, u64), QueueError> {
    let of_business = DeadSelector {
        business_id: Some(business_id),
        ..Default::default()
    };
    let (mut removed, mut kept) = (0, 0);
    for &job_type in JobType::ALL {
        let mut only = Vec::new();
        let mut offset = 0;
        loop {
            let page = queue
                .list_dead(job_type, &of_business, offset, crate::ops::CHUNK as u64)
                .await?;
            for job in &page.items {
                match concern(&job.payload, client_id, addresses) {
                    Concern::Only => only.push(job.id.clone()),
                    Concern::Among => kept += 1,
                    Concern::None => {}
                }
            }
            offset += page.items.len() as u64;
            if page.items.is_empty() || offset >= page.total {
                break;
            }
        }
        if !only.is_empty() {
            let selected = DeadSelector {
                ids: Some(only),
                ..Default::default()
            };
            removed += queue.drain_dead(job_type, &selected).await?;
        }
    }
    Ok((removed, kept))
}

/// Erases a client of a business and logs it; None when omega holds nothing about them.
/// Dead jobs go first: if the database part then fails, a repeat finds the client and
/// finishes. Jobs still waiting in the queue are not reached: what they record afterwards
/// is new data (see the README).
pub async fn erase_client(
    db: &DatabaseConnection,
    queue: &dyn JobQueue,
    business_id: i64,
    client_id: i64,
    actor: &audit::Actor,
    now: DateTime<Utc>,
) -> Result<Option<Erasure>, OpsError> {
    let Some(found) = privacy::records(db, business_id, client_id).await? else {
        return Ok(None);
    };
    let addresses = found.addresses().into_iter().map(|(_, a)| a).collect();
    let (dead_jobs_removed, dead_jobs_kept) =
        erase_dead(queue, business_id, client_id, &addresses).await?;
    let txn = entities::db::begin_write(db).await?;
    let Some(records) = privacy::erase(&txn, business_id, client_id).await? else {
        return Ok(None);
    };
    let erasure = Erasure {
        records,
        dead_jobs_removed,
        dead_jobs_kept,
    };
    audit::record(
        &txn,
        business_id,
        audit::CLIENT_ERASE,
        &audit::client_subject(client_id),
        actor,
        serde_json::to_value(&erasure).map_err(QueueError::from)?,
        now,
    )
    .await?;
    txn.commit().await.map_err(entities::Error::from)?;
    Ok(Some(erasure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addresses() -> BTreeSet<String> {
        ["+15550001111".to_owned(), "ann@example.com".to_owned()].into()
    }

    #[test]
    fn a_job_about_the_client_alone_is_theirs() {
        let send = json!({"type": "send_sms", "data": {"batch": {"business_id": 1,
            "items": [{"client_id": 7, "to": "+15550001111", "body": "hi"}]}}});
        assert_eq!(concern(&send, 7, &addresses()), Concern::Only);
        let inbound = json!({"type": "process_inbound", "data": {"kind": "sms",
            "from": "+15550001111", "body": "STOP"}});
        assert_eq!(concern(&inbound, 7, &addresses()), Concern::Only);
    }

    #[test]
    fn a_batch_with_others_is_shared_and_one_without_them_is_not_theirs() {
        let batch = json!({"type": "record_email", "data": {"items": [
            {"client_id": 7, "to": "Ann@Example.com"},
            {"client_id": 8, "to": "bob@example.com"}]}});
        assert_eq!(concern(&batch, 7, &addresses()), Concern::Among);
        let onboarding = json!({"type": "onboard", "data": {"data": {"clients": [
            {"id": 7, "phone": "+15550001111"}, {"id": 8, "phone": "+15550002222"}]}}});
        assert_eq!(concern(&onboarding, 7, &addresses()), Concern::Among);
        assert_eq!(concern(&batch, 9, &BTreeSet::new()), Concern::None);
    }
}
