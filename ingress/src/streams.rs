//! Live event streams: a business's events read from the log as they are committed. The log
//! is the truth; a wake-up (`jobs::wakeup`, from the relay) says when to read it, and a
//! stream also reads it every [`SAFETY_POLL`] in case a wake-up was lost. A stream holds at
//! most one page of events and reads the next only when its client has taken the last (the
//! connection's backpressure), so a slow reader never holds up writers or other readers: it
//! falls behind in the log, not in memory, and catches up from where it is.
use std::collections::VecDeque;
use std::time::Duration;

use entities::event_log::{self, Event, EventId, EventType};
use futures::Stream;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

/// Events read from the log at a time.
const PAGE: u64 = 100;
/// The longest a stream waits without a wake-up before reading the log anyway.
pub const SAFETY_POLL: Duration = Duration::from_secs(1);

struct Follow {
    db: DatabaseConnection,
    business_id: i64,
    types: Vec<EventType>,
    /// The last event sent (None: from the start of the log).
    cursor: Option<EventId>,
    buffer: VecDeque<Event>,
    wakeups: broadcast::Receiver<i64>,
}

/// The business's events after `after` (with none, those committed from now on), then live
/// ones as they come, in log order, with no gap and no repeat. The stream ends when the
/// database fails; the client resumes with the last id it got.
pub async fn follow(
    db: DatabaseConnection,
    wakeups: broadcast::Receiver<i64>,
    business_id: i64,
    after: Option<EventId>,
    types: Vec<EventType>,
) -> entities::Result<impl Stream<Item = Event> + Send + 'static> {
    // Subscribed (by the caller) before the starting point is read, so no wake-up for an
    // event after it can be missed.
    let cursor = match after {
        Some(after) => Some(after),
        None => event_log::newest(&db, business_id).await?,
    };
    let state = Follow {
        db,
        business_id,
        types,
        cursor,
        buffer: VecDeque::new(),
        wakeups,
    };
    Ok(futures::stream::unfold(state, next))
}

async fn next(mut s: Follow) -> Option<(Event, Follow)> {
    loop {
        if let Some(event) = s.buffer.pop_front() {
            s.cursor = Some(event.id);
            return Some((event, s));
        }
        match event_log::page(&s.db, s.business_id, s.cursor, &s.types, PAGE).await {
            Ok(events) if !events.is_empty() => {
                s.buffer.extend(events);
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, business_id = s.business_id, "event stream ended: the log could not be read");
                return None;
            }
        }
        wait_for_news(&mut s).await;
    }
}

/// Until the business's events are said to have changed, or the safety poll is due.
async fn wait_for_news(s: &mut Follow) {
    let poll = tokio::time::sleep(SAFETY_POLL);
    tokio::pin!(poll);
    loop {
        tokio::select! {
            woken = s.wakeups.recv() => match woken {
                Ok(b) if b == s.business_id => return,
                Ok(_) => {}
                // Missed wake-ups may have been this business's.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => {
                    (&mut poll).await;
                    return;
                }
            },
            _ = &mut poll => return,
        }
    }
}
