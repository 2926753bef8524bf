//! Recording messages: each into its client's conversation, with a first status event.
//! Idempotent: a message already recorded (same request slot, caller id or provider id) is
//! skipped, so a job that runs twice records nothing twice.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, Set, TryInsertResult,
};
use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::clients::ensure_client;
use crate::conversations::{Touch, find_or_create_conversation, touch_conversations};
use crate::db::INSERT_CHUNK;
use crate::types::{
    Channel, Direction, MessageCategory, MessageStatus, NotificationType, Provider, UserType,
};
use crate::{Result, client, conversation, message};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordBatch {
    pub business_id: i64,
    pub request_id: String,
    pub channel: Channel,
    pub direction: Direction,
    pub category: Option<MessageCategory>,
    pub notification_type: Option<NotificationType>,
    pub staff_id: Option<i64>,
    pub provider: Option<Provider>,
    pub sent_by: Option<i64>,
    pub sender_type: UserType,
    pub sent_at: Option<DateTime<Utc>>,
    pub location_id: Option<i64>,
    pub items: Vec<RecordItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordItem {
    pub message_id: Option<i64>,
    pub client_id: i64,
    pub wl_user_id: Option<i64>,
    pub from: Option<String>,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub attachments: serde_json::Value,
    pub status: MessageStatus,
    pub provider_message_id: Option<String>,
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// With status `scheduled`: when it is due to be sent.
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    pub recorded: usize,
    pub duplicates: usize,
}

/// One message to record: its request, its position in the request, and the item.
#[derive(Clone, Copy, Debug)]
pub struct Slot<'a> {
    pub batch: &'a RecordBatch,
    pub index: i32,
    pub item: &'a RecordItem,
}

impl<'a> Slot<'a> {
    /// Every item of a request, in order.
    pub fn all(batch: &'a RecordBatch) -> Vec<Slot<'a>> {
        batch
            .items
            .iter()
            .enumerate()
            .map(|(index, item)| Slot {
                batch,
                index: index as i32,
                item,
            })
            .collect()
    }
}

/// A recorded message (new, or found where an earlier run recorded it) and its client as
/// recording read it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub message: message::Model,
    pub client: client::Model,
    /// False when the message had been recorded before.
    pub inserted: bool,
}

/// Records the whole batch in one transaction.
pub async fn record_batch(db: &DatabaseConnection, batch: &RecordBatch) -> Result<RecordOutcome> {
    let slots = Slot::all(batch);
    let mut outcome = RecordOutcome::default();
    for recorded in record_many(db, &slots).await? {
        if recorded?.inserted {
            outcome.recorded += 1;
        } else {
            outcome.duplicates += 1;
        }
    }
    Ok(outcome)
}

/// Records messages of any requests in one transaction; one result per slot, in order. A
/// slot whose message cannot be found after a conflict (its caller id belongs to another
/// request's message that is not it) is `NotFound`; the others are recorded regardless.
pub async fn record_many(
    db: &DatabaseConnection,
    slots: &[Slot<'_>],
) -> Result<Vec<Result<Recorded>>> {
    let txn = crate::db::begin_write(db).await?;
    crate::db::by_key_only(&txn).await?;
    let recorded = record_in(&txn, slots, Utc::now()).await?;
    txn.commit().await?;
    Ok(recorded)
}

/// Records one message inside the caller's transaction; false if it was recorded before.
pub(crate) async fn record_one(
    db: &impl ConnectionTrait,
    batch: &RecordBatch,
    index: i32,
    item: &RecordItem,
    now: DateTime<Utc>,
) -> Result<bool> {
    let slot = Slot { batch, index, item };
    let mut recorded = record_in(db, &[slot], now).await?;
    Ok(recorded.pop().transpose()?.is_some_and(|r| r.inserted))
}

/// The set-based recording: clients and conversations are read for the whole batch (and
/// created one by one only where missing), messages and their first events are inserted
/// with multi-row INSERTs, and each conversation is updated once.
pub async fn record_in(
    db: &impl ConnectionTrait,
    slots: &[Slot<'_>],
    now: DateTime<Utc>,
) -> Result<Vec<Result<Recorded>>> {
    if slots.is_empty() {
        return Ok(vec![]);
    }
    let wanted = client_ids_by_business(slots);
    let clients = clients_of(db, &wanted, slots).await?;
    let client_of = |s: &Slot| &clients[&(s.batch.business_id, s.item.client_id)];
    let location_of = |s: &Slot| s.batch.location_id.or(client_of(s).location_id);
    let at_of = |s: &Slot| s.batch.sent_at.unwrap_or(now);
    let keys: Vec<ConversationKey> = slots
        .iter()
        .map(|s| {
            (
                s.batch.business_id,
                location_of(s).unwrap_or(0),
                s.item.client_id,
            )
        })
        .collect();
    let conversations = conversations_of(db, &wanted, &keys, slots, at_of).await?;

    // Inserted in the order of their request slots, so that two batches holding the same
    // slots (a job delivered twice) wait for each other on the unique index instead of
    // each holding a slot the other needs.
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| (slots[i].batch.request_id.as_str(), slots[i].index));
    let rows: Vec<message::ActiveModel> = order
        .iter()
        .map(|&i| {
            let s = &slots[i];
            message_row(s, conversations[&keys[i]], location_of(s), at_of(s), now)
        })
        .collect();
    // Where each request slot stands in the batch (its first place, if it is there twice).
    let mut position: HashMap<(&str, i32), usize> = HashMap::with_capacity(slots.len());
    for (i, s) in slots.iter().enumerate() {
        position
            .entry((s.batch.request_id.as_str(), s.index))
            .or_insert(i);
    }
    let mut inserted: Vec<Option<message::Model>> = vec![None; slots.len()];
    for chunk in rows.chunks(INSERT_CHUNK) {
        // Any of the message's unique keys (request slot, caller id, provider id) may
        // already hold it: a conflict on any of them means "recorded before", hence no
        // conflict target.
        let rows = match message::Entity::insert_many(chunk.to_vec())
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .try_insert()
            .exec_with_returning_many(db)
            .await?
        {
            TryInsertResult::Inserted(rows) => rows,
            TryInsertResult::Conflicted | TryInsertResult::Empty => vec![],
        };
        for m in rows {
            let slot = (
                m.request_id.as_deref().unwrap_or(""),
                m.request_index.unwrap_or(-1),
            );
            if let Some(&i) = position.get(&slot) {
                inserted[i] = Some(m);
            }
        }
    }

    let mut events = Vec::with_capacity(slots.len());
    let mut touches = Vec::with_capacity(slots.len());
    for (s, m) in slots.iter().zip(&inserted) {
        let Some(m) = m else { continue };
        events.push(crate::status_history::event_row(
            m.id,
            s.item.status,
            None,
            "record",
            at_of(s),
            now,
        ));
        touches.push(Touch {
            conversation_id: m.conversation_id,
            message_id: m.id,
            at: at_of(s),
            channel: s.batch.channel,
            inbound: s.batch.direction == Direction::Inbound,
        });
    }
    crate::status_history::insert_events(db, events).await?;
    touch_conversations(db, &touches).await?;
    let received = slots
        .iter()
        .zip(&inserted)
        .filter(|(s, _)| s.batch.direction == Direction::Inbound)
        .filter_map(|(_, m)| m.as_ref().map(crate::event_log::received))
        .collect::<Result<Vec<_>>>()?;
    crate::event_log::append(db, received, now).await?;

    // The rest were recorded before: by an earlier run of the same request slot, by the
    // same slot earlier in this batch (a job delivered twice), or under the caller's id by
    // another request. This transaction sees its own inserts.
    let missing: Vec<&Slot> = slots
        .iter()
        .zip(&inserted)
        .filter_map(|(s, m)| m.is_none().then_some(s))
        .collect();
    let earlier = recorded_before(db, &missing).await?;
    Ok(slots
        .iter()
        .zip(inserted)
        .map(|(s, m)| {
            let client = client_of(s).clone();
            if let Some(m) = m {
                return Ok(Recorded {
                    message: m,
                    client,
                    inserted: true,
                });
            }
            earlier
                .iter()
                .find(|m| {
                    (m.request_id.as_deref() == Some(s.batch.request_id.as_str())
                        && m.request_index == Some(s.index))
                        || (s.item.message_id.is_some()
                            && m.external_id == s.item.message_id
                            && m.business_id == s.batch.business_id
                            && m.channel == s.batch.channel.as_str())
                })
                .map(|m| Recorded {
                    message: m.clone(),
                    client,
                    inserted: false,
                })
                .ok_or_else(|| {
                    crate::Error::NotFound(format!(
                        "message {} of request {}",
                        s.index, s.batch.request_id
                    ))
                })
        })
        .collect())
}

/// (business, location key, client): a conversation's unique key.
type ConversationKey = (i64, i64, i64);

/// The batch's client ids, per business: clients and conversations are read by these.
fn client_ids_by_business(slots: &[Slot<'_>]) -> BTreeMap<i64, BTreeSet<i64>> {
    let mut wanted: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for s in slots {
        wanted
            .entry(s.batch.business_id)
            .or_default()
            .insert(s.item.client_id);
    }
    wanted
}

/// The batch's clients (`wanted`, per business), read per business; missing ones are created.
async fn clients_of(
    db: &impl ConnectionTrait,
    wanted: &BTreeMap<i64, BTreeSet<i64>>,
    slots: &[Slot<'_>],
) -> Result<HashMap<(i64, i64), client::Model>> {
    let mut found = HashMap::new();
    for (business_id, ids) in wanted {
        for c in client::Entity::find()
            .filter(client::Column::BusinessId.eq(*business_id))
            .filter(client::Column::Id.is_in(ids.iter().copied()))
            .all(db)
            .await?
        {
            found.insert((c.business_id, c.id), c);
        }
    }
    // Missing ones are created in key order, so concurrent batches take the same locks in
    // the same order; from the first message's address.
    let mut missing: BTreeMap<(i64, i64), &Slot> = BTreeMap::new();
    for s in slots {
        let key = (s.batch.business_id, s.item.client_id);
        if !found.contains_key(&key) {
            missing.entry(key).or_insert(s);
        }
    }
    for (key, s) in missing {
        // The client's own address: where an outbound message went, where an inbound one
        // came from.
        let address = if s.batch.direction == Direction::Inbound {
            s.item.from.as_deref()
        } else {
            Some(s.item.to.as_str())
        };
        let c = ensure_client(db, key.0, key.1, s.batch.channel, address).await?;
        found.insert(key, c);
    }
    Ok(found)
}

/// The conversation id of every key, read per business for the clients in `wanted`;
/// missing ones are created (in key order, so concurrent batches take the same locks in the
/// same order).
async fn conversations_of(
    db: &impl ConnectionTrait,
    wanted: &BTreeMap<i64, BTreeSet<i64>>,
    keys: &[ConversationKey],
    slots: &[Slot<'_>],
    at_of: impl Fn(&Slot) -> DateTime<Utc>,
) -> Result<HashMap<ConversationKey, i64>> {
    let mut found = HashMap::new();
    for (business_id, clients) in wanted {
        for c in conversation::Entity::find()
            .filter(conversation::Column::BusinessId.eq(*business_id))
            .filter(conversation::Column::ClientId.is_in(clients.iter().copied()))
            .all(db)
            .await?
        {
            found.insert((c.business_id, c.location_key, c.client_id), c.id);
        }
    }
    let mut missing: BTreeMap<ConversationKey, DateTime<Utc>> = BTreeMap::new();
    for (k, s) in keys.iter().zip(slots) {
        if !found.contains_key(k) {
            let at = at_of(s);
            missing
                .entry(*k)
                .and_modify(|first| *first = (*first).min(at))
                .or_insert(at);
        }
    }
    for (k, at) in missing {
        let location_id = (k.1 != 0).then_some(k.1);
        let c = find_or_create_conversation(db, k.0, location_id, k.2, at).await?;
        found.insert(k, c.id);
    }
    Ok(found)
}

/// Messages already recorded for these slots, by request slot or caller id.
async fn recorded_before(
    db: &impl ConnectionTrait,
    slots: &[&Slot<'_>],
) -> Result<Vec<message::Model>> {
    if slots.is_empty() {
        return Ok(vec![]);
    }
    let requests: BTreeSet<&str> = slots.iter().map(|s| s.batch.request_id.as_str()).collect();
    let mut found = message::Entity::find()
        .filter(message::Column::RequestId.is_in(requests))
        .filter(message::Column::RequestIndex.is_in(slots.iter().map(|s| s.index)))
        .all(db)
        .await?;
    for s in slots {
        let Some(ext) = s.item.message_id else {
            continue;
        };
        let by_slot = found.iter().any(|m| {
            m.request_id.as_deref() == Some(s.batch.request_id.as_str())
                && m.request_index == Some(s.index)
        });
        if !by_slot {
            found.extend(
                message::Entity::find()
                    .filter(message::Column::BusinessId.eq(s.batch.business_id))
                    .filter(message::Column::Channel.eq(s.batch.channel.as_str()))
                    .filter(message::Column::ExternalId.eq(ext))
                    .one(db)
                    .await?,
            );
        }
    }
    Ok(found)
}

fn message_row(
    s: &Slot,
    conversation_id: i64,
    location_id: Option<i64>,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> message::ActiveModel {
    let (batch, item) = (s.batch, s.item);
    let inbound = batch.direction == Direction::Inbound;
    let mut metadata = item.metadata.clone();
    if let Some(wl) = item.wl_user_id {
        if let Some(obj) = metadata.as_object_mut() {
            obj.insert("wl_user_id".into(), wl.into());
        } else {
            metadata = serde_json::json!({ "wl_user_id": wl });
        }
    }
    message::ActiveModel {
        id: NotSet,
        business_id: Set(batch.business_id),
        conversation_id: Set(conversation_id),
        client_id: Set(item.client_id),
        location_id: Set(location_id),
        channel: Set(batch.channel.as_str().into()),
        direction: Set(batch.direction.as_str().into()),
        category: Set(batch.category.map(|c| c.as_str().into())),
        notification_type: Set(batch.notification_type.map(|n| n.as_str().into())),
        sender_type: Set(batch.sender_type.as_str().into()),
        sent_by: Set(batch.sent_by),
        staff_id: Set(batch.staff_id),
        provider: Set(batch.provider.map(|p| p.as_str().into())),
        provider_message_id: Set(item.provider_message_id.clone()),
        external_id: Set(item.message_id),
        request_id: Set(Some(batch.request_id.clone())),
        request_index: Set(Some(s.index)),
        subject: Set(item.subject.clone()),
        body: Set(item.body.clone()),
        from_addr: Set(item.from.clone()),
        to_addr: Set(Some(item.to.clone())),
        cc: Set(serde_json::json!(item.cc)),
        bcc: Set(serde_json::json!(item.bcc)),
        attachments: Set(if item.attachments.is_null() {
            serde_json::json!([])
        } else {
            item.attachments.clone()
        }),
        status: Set(item.status.as_str().into()),
        error_code: Set(None),
        error_message: Set(None),
        is_read: Set(!inbound),
        metadata: Set(if metadata.is_null() {
            serde_json::json!({})
        } else {
            metadata
        }),
        sent_at: Set(batch.sent_at),
        delivered_at: Set((item.status == MessageStatus::Delivered).then_some(at)),
        scheduled_at: Set(item.scheduled_at),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{DbBackend, QueryTrait};

    #[test]
    fn message_insert_ignores_every_conflict() {
        let row = message::ActiveModel {
            id: NotSet,
            business_id: Set(1),
            ..Default::default()
        };
        let sql = message::Entity::insert(row)
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .build(DbBackend::Sqlite)
            .to_string();
        assert!(
            sql.ends_with("ON CONFLICT  DO NOTHING"),
            "no conflict target: {sql}"
        );
    }
}
