//! The event relay: reads the event log in order across businesses, from where it last
//! stopped (`entities::event_relay`), and hands every event on: one `deliver_webhook` job per
//! endpoint that wants it, and a wake-up to the streams of its business. The cursor moves
//! only after the jobs are pushed, so a crash in between repeats deliveries (same
//! `webhook-id`, which receivers drop) and never loses one.
use std::sync::Arc;
use std::time::Duration;

use entities::event_log::{self, EventHead};
use entities::{event_relay, webhooks};
use jobs::wakeup::Wakeup;
use jobs::{Envelope, Job, JobQueue};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::WorkersError;

/// How often the log is read when the last read found it quiet: the wait before a new event
/// reaches streams and webhook jobs.
pub const POLL: Duration = Duration::from_millis(20);
/// Events handed on per round.
const ROUND: u64 = 500;

/// Relays until `stop` completes.
pub async fn run(
    db: DatabaseConnection,
    queue: Arc<dyn JobQueue>,
    wakeup: Wakeup,
    stop: impl std::future::Future<Output = ()>,
) {
    let relay = async {
        let mut pause = Duration::ZERO;
        loop {
            tokio::time::sleep(pause).await;
            pause = match round(&db, queue.as_ref(), &wakeup).await {
                Ok(n) if n as u64 == ROUND => Duration::ZERO,
                Ok(_) => POLL,
                Err(e) => {
                    tracing::warn!(error = %e, "event relay round failed; retrying");
                    Duration::from_secs(1)
                }
            };
        }
    };
    tokio::select! { _ = relay => {}, _ = stop => {} }
}

/// One round: the events after the cursor handed on and the cursor moved past them; how
/// many. Another process relaying (Postgres) makes this one a no-op.
pub async fn round(
    db: &DatabaseConnection,
    queue: &dyn JobQueue,
    wakeup: &Wakeup,
) -> Result<usize, WorkersError> {
    if entities::db::is_sqlite(db) {
        // One process; and a transaction held across the queue's own writes to the same
        // database would only make them wait.
        return hand_on(db, queue, wakeup).await;
    }
    let txn = db.begin().await.map_err(entities::Error::from)?;
    if !event_relay::claim(&txn).await? {
        return Ok(0);
    }
    let n = hand_on(&txn, queue, wakeup).await?;
    txn.commit().await.map_err(entities::Error::from)?;
    Ok(n)
}

async fn hand_on(
    conn: &impl ConnectionTrait,
    queue: &dyn JobQueue,
    wakeup: &Wakeup,
) -> Result<usize, WorkersError> {
    let after = event_relay::cursor(conn).await?;
    let events = event_log::tail(conn, after, ROUND).await?;
    let Some(last) = events.last().map(EventHead::id) else {
        return Ok(0);
    };
    let mut businesses: Vec<i64> = events.iter().map(|e| e.business_id).collect();
    businesses.sort_unstable();
    businesses.dedup();
    let deliveries = deliveries(conn, &events, &businesses).await?;
    for chunk in deliveries.chunks(entities::db::INSERT_CHUNK) {
        queue.push(chunk).await?;
    }
    event_relay::advance(conn, last).await?;
    wakeup.publish(&businesses).await;
    metrics::counter!("omega_events_relayed_total").increment(events.len() as u64);
    Ok(events.len())
}

/// One `deliver_webhook` job per (event, endpoint that wants it); only those events' data
/// is read.
async fn deliveries(
    conn: &impl ConnectionTrait,
    events: &[EventHead],
    businesses: &[i64],
) -> Result<Vec<Envelope>, WorkersError> {
    let endpoints = webhooks::receivers(conn, businesses).await?;
    if endpoints.is_empty() {
        return Ok(vec![]);
    }
    // In log order, each event's endpoints together.
    let wanted: Vec<(i64, i64)> = events
        .iter()
        .flat_map(|e| {
            endpoints
                .iter()
                .filter(|w| w.wants(e))
                .map(|w| (e.seq, w.id))
        })
        .collect();
    let mut seqs: Vec<i64> = wanted.iter().map(|(seq, _)| *seq).collect();
    seqs.dedup();
    let whole: std::collections::HashMap<i64, entities::event_log::Event> =
        event_log::by_seq(conn, &seqs)
            .await?
            .into_iter()
            .map(|e| (e.id.seq, e))
            .collect();
    let mut jobs = Vec::with_capacity(wanted.len());
    let mut body: Option<(i64, String)> = None;
    for (seq, webhook_id) in wanted {
        let Some(event) = whole.get(&seq) else {
            continue; // swept between the two reads
        };
        if body.as_ref().is_none_or(|(s, _)| *s != seq) {
            body = Some((seq, webhooks::payload(event).to_string()));
        }
        let text = body.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
        let job = Job::DeliverWebhook(webhooks::DeliverWebhook::new(webhook_id, event, text));
        jobs.push(Envelope::new(&job, None, None)?);
    }
    Ok(jobs)
}
