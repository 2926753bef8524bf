//! The event log: one append-only row per thing that happened in a business, written in the
//! transaction of the change it describes, so an event exists if and only if its change
//! committed. Webhooks, the live stream and `GET /events` read it.
//!
//! An event's id sorts in the order readers see events, per business, and no event shows up
//! later before one already read (so resuming after an id misses nothing):
//! - SQLite has one writer at a time: insert order (`seq`) is commit order.
//! - On Postgres transactions commit in any order. Each row carries its transaction's id
//!   (`txid`, the column's default), and readers only see rows of transactions older than
//!   every transaction still running (the snapshot's `xmin`): a transaction that commits
//!   later has a larger `txid` than any row already read. The id is `(txid, seq)`.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};

use crate::message_item::MessageItem;
use crate::{Error, Result, event};

macro_rules! event_types {
    ($($variant:ident => $text:literal),+ $(,)?) => {
        /// What an event says happened.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventType { $($variant),+ }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for EventType {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok(EventType::$variant),)+
                    other => Err(Error::Invalid(format!("unknown event type {other:?}"))),
                }
            }
        }
    };
}

event_types! {
    MessageReceived => "message.received",
    MessageStatusUpdated => "message.status_updated",
    ConversationAssigned => "conversation.assigned",
    ConversationStatusUpdated => "conversation.status_updated",
    ConversationNoteAdded => "conversation.note_added",
    ClientConsentUpdated => "client.consent_updated",
    CallStatusUpdated => "call.status_updated",
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub business_id: i64,
    pub event_type: EventType,
    pub data: Value,
}

impl NewEvent {
    pub fn new(business_id: i64, event_type: EventType, data: Value) -> Self {
        NewEvent {
            business_id,
            event_type,
            data,
        }
    }
}

/// Appends events in the caller's transaction (the one making the change they describe).
pub async fn append(
    txn: &impl ConnectionTrait,
    events: Vec<NewEvent>,
    at: DateTime<Utc>,
) -> Result<()> {
    // Moved into the rows, not copied: an event's data is a whole message.
    let mut rows = events.into_iter().map(|e| event::ActiveModel {
        business_id: Set(e.business_id),
        event_type: Set(e.event_type.as_str().to_owned()),
        data: Set(e.data),
        created_at: Set(at),
        ..Default::default()
    });
    loop {
        let chunk: Vec<event::ActiveModel> = rows.by_ref().take(crate::db::INSERT_CHUNK).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        event::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
}

/// Appends a `message.status_updated` event (`call.status_updated` for a call) for each
/// message that moved, as it is now (read in the caller's transaction, after the move), with
/// the status it moved from.
pub async fn status_updated(
    txn: &impl ConnectionTrait,
    moved: &[(i64, String)],
    at: DateTime<Utc>,
) -> Result<()> {
    if moved.is_empty() {
        return Ok(());
    }
    let previous: std::collections::HashMap<i64, &str> =
        moved.iter().map(|(id, s)| (*id, s.as_str())).collect();
    let mut events = Vec::with_capacity(moved.len());
    for chunk in moved.chunks(crate::db::IN_LIST_CHUNK) {
        let rows = crate::message::Entity::find()
            .filter(crate::message::Column::Id.is_in(chunk.iter().map(|(id, _)| *id)))
            .all(txn)
            .await?;
        for m in rows {
            let (business_id, before) = (m.business_id, previous[&m.id]);
            let mut data = message_data(m)?;
            data["previous_status"] = json!(before);
            // A call is a message of the voice channel; its moves are a call's.
            let event_type = if data["channel"] == "voice" {
                EventType::CallStatusUpdated
            } else {
                EventType::MessageStatusUpdated
            };
            events.push(NewEvent::new(business_id, event_type, data));
        }
    }
    append(txn, events, at).await
}

/// A `message.received` event's data: the message as the API shows it.
pub fn received(m: &crate::message::Model) -> Result<NewEvent> {
    let data = message_data(m.clone())?;
    Ok(NewEvent::new(
        m.business_id,
        EventType::MessageReceived,
        data,
    ))
}

/// A message as event data: the `MessageItem` the API shows.
pub fn message_data(m: crate::message::Model) -> Result<Value> {
    serde_json::to_value(MessageItem::from_model(m, None)?)
        .map_err(|e| Error::Corrupt(e.to_string()))
}

/// Where an event sits in its business's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    pub txid: i64,
    pub seq: i64,
}

impl EventId {
    const PREFIX: &'static str = "evt_";
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{:016x}{:016x}", Self::PREFIX, self.txid, self.seq)
    }
}

impl std::str::FromStr for EventId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::Invalid(format!("not an event id: {s:?}"));
        let hex = s.strip_prefix(Self::PREFIX).ok_or_else(invalid)?;
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let part = |h: &str| i64::from_str_radix(h, 16).map_err(|_| invalid());
        Ok(EventId {
            txid: part(&hex[..16])?,
            seq: part(&hex[16..])?,
        })
    }
}

/// An event as readers get it.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub event_type: String,
    pub business_id: i64,
    pub created_at: DateTime<Utc>,
    pub data: Value,
}

impl From<event::Model> for Event {
    fn from(m: event::Model) -> Self {
        Event {
            id: EventId {
                txid: m.txid,
                seq: m.seq,
            },
            event_type: m.event_type,
            business_id: m.business_id,
            created_at: m.created_at,
            data: m.data,
        }
    }
}

/// Up to `limit` of a business's events after `after` (from the start without), of the
/// given types (all when empty), in log order; only events no later commit can precede.
pub async fn page(
    db: &impl ConnectionTrait,
    business_id: i64,
    after: Option<EventId>,
    types: &[EventType],
    limit: u64,
) -> Result<Vec<Event>> {
    let mut query = event::Entity::find().filter(event::Column::BusinessId.eq(business_id));
    if !types.is_empty() {
        query = query.filter(event::Column::EventType.is_in(types.iter().map(|t| t.as_str())));
    }
    Ok(in_order(db, query, after)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(Event::from)
        .collect())
}

/// An event without its data: what the relay needs to decide who gets it.
#[derive(Debug, Clone, sea_orm::FromQueryResult)]
pub struct EventHead {
    pub txid: i64,
    pub seq: i64,
    pub business_id: i64,
    pub event_type: String,
    pub created_at: DateTime<Utc>,
}

impl EventHead {
    pub fn id(&self) -> EventId {
        EventId {
            txid: self.txid,
            seq: self.seq,
        }
    }
}

/// Up to `limit` events of every business after `after`, in log order, without their data
/// (the relay's read: most events go to no webhook, and their data is not needed).
pub async fn tail(db: &impl ConnectionTrait, after: EventId, limit: u64) -> Result<Vec<EventHead>> {
    Ok(in_order(db, event::Entity::find(), Some(after))
        .select_only()
        .columns([
            event::Column::Txid,
            event::Column::Seq,
            event::Column::BusinessId,
            event::Column::EventType,
            event::Column::CreatedAt,
        ])
        .limit(limit)
        .into_model::<EventHead>()
        .all(db)
        .await?)
}

/// The events with these `seq`s, whole.
pub async fn by_seq(db: &impl ConnectionTrait, seqs: &[i64]) -> Result<Vec<Event>> {
    let mut events = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(crate::db::IN_LIST_CHUNK) {
        let rows = event::Entity::find()
            .filter(event::Column::Seq.is_in(chunk.iter().copied()))
            .all(db)
            .await?;
        events.extend(rows.into_iter().map(Event::from));
    }
    Ok(events)
}

/// The id of a business's newest event readers can see: where a reader that wants only
/// what happens from now on starts.
pub async fn newest(db: &impl ConnectionTrait, business_id: i64) -> Result<Option<EventId>> {
    let query = event::Entity::find().filter(event::Column::BusinessId.eq(business_id));
    let query = committed(db, query)
        .order_by_desc(event::Column::Txid)
        .order_by_desc(event::Column::Seq);
    Ok(query.one(db).await?.map(|m| Event::from(m).id))
}

/// The query's events after `after` that readers can see, in log order.
fn in_order(
    db: &impl ConnectionTrait,
    mut query: sea_orm::Select<event::Entity>,
    after: Option<EventId>,
) -> sea_orm::Select<event::Entity> {
    if let Some(after) = after {
        // `txid >= …` alone is what bounds an index scan from below: without it the planners
        // read the (txid, seq) index from its start and filter, every poll reading the whole
        // log before its tail.
        query = query.filter(event::Column::Txid.gte(after.txid)).filter(
            Condition::any()
                .add(event::Column::Txid.gt(after.txid))
                .add(
                    Condition::all()
                        .add(event::Column::Txid.eq(after.txid))
                        .add(event::Column::Seq.gt(after.seq)),
                ),
        );
    }
    committed(db, query)
        .order_by_asc(event::Column::Txid)
        .order_by_asc(event::Column::Seq)
}

/// Only events of transactions older than every one still running (Postgres; on SQLite
/// every committed event qualifies).
fn committed(
    db: &impl ConnectionTrait,
    query: sea_orm::Select<event::Entity>,
) -> sea_orm::Select<event::Entity> {
    if crate::db::is_sqlite(db) {
        return query;
    }
    query.filter(Expr::cust(
        "txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    ))
}

/// Deletes events older than `before` (the retention sweep); how many.
pub async fn sweep(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64> {
    Ok(event::Entity::delete_many()
        .filter(event::Column::CreatedAt.lt(before))
        .exec(db)
        .await?
        .rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_the_log_and_parse_back() {
        let ids = [
            EventId { txid: 0, seq: 9 },
            EventId { txid: 0, seq: 10 },
            EventId { txid: 5, seq: 2 },
            EventId {
                txid: 1 << 40,
                seq: 1,
            },
        ];
        let text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut sorted = text.clone();
        sorted.sort();
        assert_eq!(sorted, text, "string order is log order");
        for (id, s) in ids.iter().zip(&text) {
            assert_eq!(s.parse::<EventId>().unwrap(), *id);
        }
        for bad in [
            "",
            "evt_",
            "evt_xyz",
            "msg_00000000000000000000000000000001",
            &text[0][..20],
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn types_name_themselves() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), *t);
        }
        assert!("message.sent".parse::<EventType>().is_err());
    }
}
