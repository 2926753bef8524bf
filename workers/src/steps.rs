//! The group-committed steps of the send and status jobs: concurrent jobs submit to a
//! [`Batcher`] and share one transaction per step.
use std::collections::BTreeMap;
use std::sync::Arc;

use entities::consent::Recipient;
use entities::outbound::{SendJob, Settlement};
use entities::record::{Recorded, Slot};
use entities::status::{Applied, StatusReport};
use jobs::{Job, JobError, StatusUpdates};
use sea_orm::DatabaseConnection;

use crate::batch::Batcher;
use crate::outcome::job_error;

/// A send's message as recorded, and why its recipient's address may not be sent to, if it
/// opted out ([`entities::consent`]).
pub(crate) struct RecordedSend {
    pub recorded: Recorded,
    pub address_refusal: Option<String>,
}

/// The group-committed steps of the send and status jobs (see [`batch`]).
pub(crate) struct Batches {
    /// A send's first step: its message recorded as `queued` (or found, on a re-run), with
    /// its recipient's consent.
    pub record: Batcher<Arc<SendJob>, RecordedSend>,
    /// A scheduled send whose time has come: `queued` again unless canceled (false).
    pub release: Batcher<i64, bool>,
    /// A send's last step: the provider's answer, or the failure.
    pub settle: Batcher<Settlement, ()>,
    /// The sandbox's delivery reports, queued as `UpdateStatus` jobs (one per business and
    /// batch) like a provider's callbacks.
    pub reports: Batcher<(i64, StatusReport), ()>,
    /// Status reports applied.
    /// `None` for a report about no recorded message.
    pub status: Batcher<StatusReport, Option<Applied>>,
}

impl Batches {
    pub fn new(db: &DatabaseConnection, producer: jobs::Producer, max: usize) -> Self {
        let record = Batcher::new("record", max, {
            let db = db.clone();
            move |jobs: Arc<[Arc<SendJob>]>| {
                let db = db.clone();
                async move {
                    let slots: Vec<Slot> = jobs
                        .iter()
                        .filter_map(|j| {
                            Some(Slot {
                                batch: &j.batch,
                                index: j.index,
                                item: j.batch.items.first()?,
                            })
                        })
                        .collect();
                    if slots.len() != jobs.len() {
                        return Err(JobError::Permanent("a send job without its message".into()));
                    }
                    let recorded = entities::record::record_many(&db, &slots)
                        .await
                        .map_err(job_error)?;
                    let recipients: Vec<Recipient> = slots
                        .iter()
                        .map(|s| (s.batch.business_id, s.batch.channel, s.item.to.clone()))
                        .collect();
                    let refusals = entities::consent::refusals(&db, &recipients)
                        .await
                        .map_err(job_error)?;
                    Ok(recorded
                        .into_iter()
                        .zip(refusals)
                        .map(|(r, address_refusal)| {
                            r.map(|recorded| RecordedSend {
                                recorded,
                                address_refusal,
                            })
                            .map_err(job_error)
                        })
                        .collect())
                }
            }
        });
        let release = Batcher::new("release", max, {
            let db = db.clone();
            move |ids: Arc<[i64]>| {
                let db = db.clone();
                async move {
                    let released = entities::schedule::release_many(&db, &ids, chrono::Utc::now())
                        .await
                        .map_err(job_error)?;
                    Ok(released.into_iter().map(Ok).collect())
                }
            }
        });
        let settle = Batcher::new("settle", max, {
            let db = db.clone();
            let queue = producer.queue().clone();
            move |settlements: Arc<[Settlement]>| {
                let (db, queue) = (db.clone(), queue.clone());
                async move {
                    entities::outbound::settle_many(&db, &settlements)
                        .await
                        .map_err(job_error)?;
                    // Recorded now: the notes that stood in for them until this commit
                    // (`send.rs`) are no longer needed. One left behind is harmless.
                    let notes: Vec<String> = settlements
                        .iter()
                        .filter(|s| s.provider_message_id.is_some())
                        .map(|s| crate::send::sent_note(s.message_id))
                        .collect();
                    if let Err(e) = queue.forget_notes(&notes).await {
                        tracing::warn!(error = %e, "could not forget the notes of settled sends");
                    }
                    Ok(settlements.iter().map(|_| Ok(())).collect())
                }
            }
        });
        let reports = Batcher::new(
            "reports",
            max,
            move |reports: Arc<[(i64, StatusReport)]>| {
                let producer = producer.clone();
                async move {
                    let n = reports.len();
                    let mut by_business: BTreeMap<i64, Vec<StatusReport>> = BTreeMap::new();
                    for (business_id, report) in reports.iter() {
                        by_business
                            .entry(*business_id)
                            .or_default()
                            .push(report.clone());
                    }
                    let jobs: Vec<Job> = by_business
                        .into_iter()
                        .map(|(business_id, reports)| {
                            Job::UpdateStatus(StatusUpdates {
                                business_id: Some(business_id),
                                reports,
                            })
                        })
                        .collect();
                    producer
                        .enqueue(&jobs, "sandbox", None)
                        .await
                        .map_err(|e| JobError::Transient(e.to_string()))?;
                    Ok((0..n).map(|_| Ok(())).collect())
                }
            },
        );
        let status = Batcher::new("status", max, {
            let db = db.clone();
            move |reports: Arc<[StatusReport]>| {
                let db = db.clone();
                async move {
                    let refs: Vec<&StatusReport> = reports.iter().collect();
                    let applied = entities::status::apply_many(&db, &refs)
                        .await
                        .map_err(job_error)?;
                    // A report about a message not recorded is `None`: it can overtake the
                    // send it is about, or name no message of ours at all; the job decides.
                    Ok(applied
                        .into_iter()
                        .map(|a| match a {
                            Ok(a) => Ok(Some(a)),
                            Err(entities::Error::NotFound(_)) => Ok(None),
                            Err(e) => Err(job_error(e)),
                        })
                        .collect())
                }
            }
        });
        Batches {
            record,
            release,
            settle,
            reports,
            status,
        }
    }
}
