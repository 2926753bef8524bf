//! Live event streams: a business's events read from the log as they are committed.
//!
//! The log is the truth. In each ingress process one tail per business with readers reads
//! it when woken (`jobs::wakeup`, from the relay; and every [`SAFETY_POLL`] in case a
//! wake-up was lost), serializes each new event once, and broadcasts it to that business's
//! streams, tagged with the id of the event the tail sent before it. A stream catches up
//! from the log itself (from `Last-Event-ID`) and then takes the broadcast, which it can
//! check for gaps: an event whose predecessor is past what the stream has sent means it
//! missed something, and it catches up from where it is: from the tail's last [`RECENT`]
//! events kept in memory when they reach back that far, else from the log. So a hundred
//! readers cost one read and one serialization per event, not a hundred, and a reader that
//! falls behind (its bounded broadcast buffer overflows) is not dropped and does not slow
//! anyone: it catches up, paced by its own connection.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entities::event_log::{self, Event, EventId, EventType};
use futures::Stream;
use jobs::wakeup::Wakeup;
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

/// Events read from the log at a time.
const PAGE: u64 = 500;
/// The longest a tail waits without a wake-up before reading the log anyway.
pub const SAFETY_POLL: Duration = Duration::from_secs(1);
/// Events a stream may be behind its tail before it catches up instead.
const BUFFER: usize = 1024;
/// Events a tail keeps for streams that catch up (each a few kilobytes).
const RECENT: usize = 4096;

/// An event ready to send: its frame's data serialized once for every reader.
#[derive(Debug)]
pub struct Published {
    /// The event sent before this one on the same feed (None: none before it).
    prev: Option<EventId>,
    pub id: EventId,
    pub event_type: String,
    /// The webhook body (`entities::webhooks::payload`), as JSON text.
    pub data: String,
}

impl Published {
    fn new(prev: Option<EventId>, e: &Event) -> Arc<Self> {
        Arc::new(Published {
            prev,
            id: e.id,
            event_type: e.event_type.clone(),
            data: entities::webhooks::payload(e).to_string(),
        })
    }
}

/// What a tail gives its streams: new events as they come, and the last few for catching up.
struct Feed {
    live: broadcast::Sender<Arc<Published>>,
    /// The tail's last events, each the predecessor of the next.
    recent: Mutex<VecDeque<Arc<Published>>>,
}

impl Feed {
    /// Up to `max` events after `cursor`, if the kept ones reach back to it (None: they do
    /// not; read the log).
    fn after(&self, cursor: Option<EventId>, max: usize) -> Option<Vec<Arc<Published>>> {
        let recent = self.recent.lock().expect("not poisoned");
        let first = recent.front()?;
        if first.prev > cursor {
            return None;
        }
        let start = recent.partition_point(|p| Some(p.id) <= cursor);
        Some(recent.range(start..).take(max).cloned().collect())
    }
}

/// This process's tails, one per business that has readers.
pub struct Hub {
    db: DatabaseConnection,
    wakeup: Wakeup,
    tails: Arc<Mutex<HashMap<i64, Arc<Feed>>>>,
}

impl Hub {
    pub fn new(db: DatabaseConnection, wakeup: Wakeup) -> Self {
        Hub {
            db,
            wakeup,
            tails: Default::default(),
        }
    }

    /// The business's feed, its tail started if it had none.
    async fn subscribe(
        &self,
        business_id: i64,
    ) -> entities::Result<(Arc<Feed>, broadcast::Receiver<Arc<Published>>)> {
        if let Some(feed) = self.tails.lock().expect("not poisoned").get(&business_id) {
            return Ok((feed.clone(), feed.live.subscribe()));
        }
        // Woken from before the tail's starting point is read: nothing after it is missed.
        let wakeups = self.wakeup.subscribe();
        let start = event_log::newest(&self.db, business_id).await?;
        let mut tails = self.tails.lock().expect("not poisoned");
        if let Some(feed) = tails.get(&business_id) {
            return Ok((feed.clone(), feed.live.subscribe()));
        }
        let (live, rx) = broadcast::channel(BUFFER);
        let feed = Arc::new(Feed {
            live,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        });
        tails.insert(business_id, feed.clone());
        let tail = Tail {
            db: self.db.clone(),
            business_id,
            feed: feed.clone(),
            last: start,
            wakeups,
            tails: self.tails.clone(),
        };
        tokio::spawn(tail.run());
        Ok((feed, rx))
    }

    /// The business's events after `after` (with none, those committed from now on), then
    /// live ones as they come, of the given types (all when empty), in log order, with no
    /// gap and no repeat. The stream ends if the log cannot be read; the client resumes
    /// with the last id it got.
    pub async fn follow(
        &self,
        business_id: i64,
        after: Option<EventId>,
        types: Vec<EventType>,
    ) -> entities::Result<impl Stream<Item = Arc<Published>> + Send + 'static> {
        let (feed, live) = self.subscribe(business_id).await?;
        let cursor = match after {
            Some(after) => Some(after),
            None => event_log::newest(&self.db, business_id).await?,
        };
        let state = Follow {
            db: self.db.clone(),
            business_id,
            types: types.iter().map(|t| t.as_str()).collect(),
            cursor,
            buffer: VecDeque::new(),
            feed,
            live,
            catch_up: true,
        };
        Ok(futures::stream::unfold(state, next))
    }
}

/// Reads one business's log for all its streams in this process.
struct Tail {
    db: DatabaseConnection,
    business_id: i64,
    feed: Arc<Feed>,
    last: Option<EventId>,
    wakeups: broadcast::Receiver<i64>,
    tails: Arc<Mutex<HashMap<i64, Arc<Feed>>>>,
}

impl Tail {
    async fn run(mut self) {
        loop {
            self.wait_for_news().await;
            {
                // No readers left: the tail ends (under the lock a new reader takes).
                let mut tails = self.tails.lock().expect("not poisoned");
                if self.feed.live.receiver_count() == 0 {
                    tails.remove(&self.business_id);
                    return;
                }
            }
            if let Err(e) = self.read().await {
                tracing::warn!(error = %e, business_id = self.business_id, "event tail could not read the log; retrying");
                tokio::time::sleep(SAFETY_POLL).await;
            }
        }
    }

    async fn read(&mut self) -> entities::Result<()> {
        loop {
            let events = event_log::page(&self.db, self.business_id, self.last, &[], PAGE).await?;
            for e in &events {
                let published = Published::new(self.last, e);
                {
                    let mut recent = self.feed.recent.lock().expect("not poisoned");
                    if recent.len() == RECENT {
                        recent.pop_front();
                    }
                    recent.push_back(published.clone());
                }
                // No receiver is fine: the tail ends at its next round.
                let _ = self.feed.live.send(published);
                self.last = Some(e.id);
            }
            if (events.len() as u64) < PAGE {
                return Ok(());
            }
        }
    }

    /// Until the business's events are said to have changed, or the safety poll is due.
    async fn wait_for_news(&mut self) {
        let poll = tokio::time::sleep(SAFETY_POLL);
        tokio::pin!(poll);
        loop {
            tokio::select! {
                woken = self.wakeups.recv() => match woken {
                    Ok(b) if b == self.business_id => return,
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
}

/// One stream's place.
struct Follow {
    db: DatabaseConnection,
    business_id: i64,
    types: Vec<&'static str>,
    /// The last event of the log this stream has passed (sent, or skipped by type).
    cursor: Option<EventId>,
    buffer: VecDeque<Arc<Published>>,
    feed: Arc<Feed>,
    live: broadcast::Receiver<Arc<Published>>,
    /// Whether the log may hold events after the cursor that the feed will not bring.
    catch_up: bool,
}

impl Follow {
    fn wants(&self, p: &Published) -> bool {
        self.types.is_empty() || self.types.contains(&p.event_type.as_str())
    }
}

async fn next(mut s: Follow) -> Option<(Arc<Published>, Follow)> {
    loop {
        if let Some(p) = s.buffer.pop_front() {
            if s.cursor.is_some_and(|c| p.id <= c) {
                continue;
            }
            s.cursor = Some(p.id);
            if s.wants(&p) {
                return Some((p, s));
            }
            continue;
        }
        if s.catch_up {
            if let Some(kept) = s.feed.after(s.cursor, PAGE as usize) {
                // Caught up from memory, or nothing newer yet: the live feed brings the rest.
                s.catch_up = !kept.is_empty();
                s.buffer.extend(kept);
                continue;
            }
            match event_log::page(&s.db, s.business_id, s.cursor, &[], PAGE).await {
                Ok(events) if !events.is_empty() => {
                    let mut prev = s.cursor;
                    for e in &events {
                        s.buffer.push_back(Published::new(prev, e));
                        prev = Some(e.id);
                    }
                    continue;
                }
                Ok(_) => s.catch_up = false,
                Err(e) => {
                    tracing::warn!(error = %e, business_id = s.business_id, "event stream ended: the log could not be read");
                    return None;
                }
            }
        }
        match s.live.recv().await {
            Ok(p) => {
                if s.cursor.is_some_and(|c| p.id <= c) {
                    continue;
                }
                // Nothing lies between its predecessor and it: if the stream has passed the
                // predecessor, it is next; otherwise something was missed.
                if p.prev <= s.cursor {
                    s.buffer.push_back(p);
                } else {
                    s.catch_up = true;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => s.catch_up = true,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
