//! A client's right of access and erasure (GDPR, PIPEDA): everything omega holds about one
//! client of a business, read out whole, or erased leaving only anonymous counts.
//!
//! What erasure keeps on purpose: an address's opt-out (a STOP must still hold if the same
//! number is given again: suppression is the one record the law asks to keep), and the audit
//! entry, which names ids and counts only.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;

use crate::types::{Channel, Direction};
use crate::{
    Result, address_consent, audit, client, consent, conversation, conversation_event, message,
    message_event, webhook_receipt,
};

/// Ids per `IN (…)` list: well under every backend's parameter limit.
const IDS_PER_QUERY: usize = 500;

/// Everything kept about one client.
pub struct ClientRecords {
    /// None when the client row is gone but messages still name the client.
    pub client: Option<client::Model>,
    /// The consent kept for each of the client's addresses.
    pub address_consents: Vec<address_consent::Model>,
    /// Oldest first, each with its assignment and status history.
    pub conversations: Vec<(conversation::Model, Vec<conversation_event::Model>)>,
    /// Every message and note, oldest first, each with its status history.
    pub messages: Vec<(message::Model, Vec<message_event::Model>)>,
}

impl ClientRecords {
    /// The phone numbers and email addresses the client used, on their row and on their
    /// messages (the client's side of each), as consent keeps them: `(sms|email, address)`.
    pub fn addresses(&self) -> BTreeSet<(&'static str, String)> {
        let mut used: Vec<(Channel, &str)> = Vec::new();
        if let Some(c) = &self.client {
            used.extend(c.phone.as_deref().map(|p| (Channel::Sms, p)));
            used.extend(c.email.as_deref().map(|e| (Channel::Email, e)));
        }
        for (m, _) in &self.messages {
            let Ok(channel) = m.channel.parse::<Channel>() else {
                continue;
            };
            let theirs = match m.direction.parse::<Direction>() {
                Ok(Direction::Inbound) => &m.from_addr,
                _ => &m.to_addr,
            };
            used.extend(theirs.as_deref().map(|a| (channel, a)));
        }
        used.into_iter()
            .filter(|(_, a)| !a.trim().is_empty())
            .filter_map(|(channel, a)| {
                Some((
                    consent::consent_channel(channel)?,
                    consent::normalized(channel, a),
                ))
            })
            .collect()
    }
}

/// Reads everything about a client; None when omega holds nothing about them.
pub async fn records(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
) -> Result<Option<ClientRecords>> {
    let client = client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?;
    let messages = message::Entity::find()
        .filter(message::Column::BusinessId.eq(business_id))
        .filter(message::Column::ClientId.eq(client_id))
        .order_by_asc(message::Column::CreatedAt)
        .order_by_asc(message::Column::Id)
        .all(db)
        .await?;
    let conversations = conversation::Entity::find()
        .filter(conversation::Column::BusinessId.eq(business_id))
        .filter(conversation::Column::ClientId.eq(client_id))
        .order_by_asc(conversation::Column::Id)
        .all(db)
        .await?;
    if client.is_none() && messages.is_empty() && conversations.is_empty() {
        return Ok(None);
    }
    let mut message_events: BTreeMap<i64, Vec<message_event::Model>> = BTreeMap::new();
    let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        for e in message_event::Entity::find()
            .filter(message_event::Column::MessageId.is_in(chunk.to_vec()))
            .order_by_asc(message_event::Column::OccurredAt)
            .order_by_asc(message_event::Column::Id)
            .all(db)
            .await?
        {
            message_events.entry(e.message_id).or_default().push(e);
        }
    }
    let mut conversation_events: BTreeMap<i64, Vec<conversation_event::Model>> = BTreeMap::new();
    let ids: Vec<i64> = conversations.iter().map(|c| c.id).collect();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        for e in conversation_event::Entity::find()
            .filter(conversation_event::Column::ConversationId.is_in(chunk.to_vec()))
            .order_by_asc(conversation_event::Column::Id)
            .all(db)
            .await?
        {
            conversation_events
                .entry(e.conversation_id)
                .or_default()
                .push(e);
        }
    }
    let mut found = ClientRecords {
        client,
        address_consents: Vec::new(),
        conversations: conversations
            .into_iter()
            .map(|c| {
                let events = conversation_events.remove(&c.id).unwrap_or_default();
                (c, events)
            })
            .collect(),
        messages: messages
            .into_iter()
            .map(|m| {
                let events = message_events.remove(&m.id).unwrap_or_default();
                (m, events)
            })
            .collect(),
    };
    found.address_consents = consent::of_kept(db, business_id, &found.addresses()).await?;
    Ok(Some(found))
}

/// What an erasure removed (and kept), as anonymous counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Messages per `channel/direction` (`sms/outbound`, `note/internal`, …).
    pub messages: BTreeMap<String, u64>,
    pub message_events: u64,
    pub conversations: u64,
    pub conversation_events: u64,
    pub webhook_receipts: u64,
    /// Consent records of the client's addresses removed (opt-ins) and kept (opt-outs, so a
    /// STOP still holds).
    pub address_consents_removed: u64,
    pub address_opt_outs_kept: u64,
}

/// Erases a client inside the caller's transaction: their row, messages and notes (bodies,
/// addresses, attachments), status and conversation history, conversations, the webhook
/// deliveries that carried their addresses, and their addresses' opt-ins. None when omega
/// holds nothing about the client.
pub async fn erase(
    txn: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
) -> Result<Option<Erased>> {
    let Some(found) = records(txn, business_id, client_id).await? else {
        return Ok(None);
    };
    let mut erased = Erased::default();
    for (m, events) in &found.messages {
        *erased
            .messages
            .entry(format!("{}/{}", m.channel, m.direction))
            .or_default() += 1;
        erased.message_events += events.len() as u64;
    }
    let message_ids: Vec<i64> = found.messages.iter().map(|(m, _)| m.id).collect();
    for chunk in message_ids.chunks(IDS_PER_QUERY) {
        message_event::Entity::delete_many()
            .filter(message_event::Column::MessageId.is_in(chunk.to_vec()))
            .exec(txn)
            .await?;
    }
    message::Entity::delete_many()
        .filter(message::Column::BusinessId.eq(business_id))
        .filter(message::Column::ClientId.eq(client_id))
        .exec(txn)
        .await?;
    let conversation_ids: Vec<i64> = found.conversations.iter().map(|(c, _)| c.id).collect();
    for chunk in conversation_ids.chunks(IDS_PER_QUERY) {
        erased.conversation_events += conversation_event::Entity::delete_many()
            .filter(conversation_event::Column::ConversationId.is_in(chunk.to_vec()))
            .exec(txn)
            .await?
            .rows_affected;
    }
    // The inbox's per-cell counts follow by trigger (m0006).
    erased.conversations = conversation::Entity::delete_many()
        .filter(conversation::Column::BusinessId.eq(business_id))
        .filter(conversation::Column::ClientId.eq(client_id))
        .exec(txn)
        .await?
        .rows_affected;
    let addresses = found.addresses();
    erased.webhook_receipts = erase_receipts(txn, business_id, &addresses).await?;
    for kept in &found.address_consents {
        if kept.opted_out {
            erased.address_opt_outs_kept += 1;
        } else {
            erased.address_consents_removed += address_consent::Entity::delete_by_id((
                business_id,
                kept.channel.clone(),
                kept.address.clone(),
            ))
            .exec(txn)
            .await?
            .rows_affected;
        }
    }
    client::Entity::delete_by_id((business_id, client_id))
        .exec(txn)
        .await?;
    Ok(Some(erased))
}

/// Removes the business's webhook deliveries whose body names one of the addresses (inbound
/// texts and calls carry the sender's number and the text itself).
async fn erase_receipts(
    txn: &impl ConnectionTrait,
    business_id: i64,
    addresses: &BTreeSet<(&'static str, String)>,
) -> Result<u64> {
    if addresses.is_empty() {
        return Ok(0);
    }
    let body = Expr::expr(Func::lower(
        Expr::col(webhook_receipt::Column::Payload).cast_as("TEXT"),
    ));
    let mut mentions = Condition::any();
    for (_, address) in addresses {
        mentions = mentions.add(
            body.clone()
                .like(LikeExpr::new(crate::query::like(address)).escape('\\')),
        );
    }
    Ok(webhook_receipt::Entity::delete_many()
        .filter(webhook_receipt::Column::BusinessId.eq(business_id))
        .filter(mentions)
        .exec(txn)
        .await?
        .rows_affected)
}

/// Reads everything about a client for them, and logs that it was read. None when omega
/// holds nothing about the client (nothing is logged then).
pub async fn export(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
    actor: &audit::Actor,
    now: DateTime<Utc>,
) -> Result<Option<ClientRecords>> {
    let Some(found) = records(db, business_id, client_id).await? else {
        return Ok(None);
    };
    let detail = serde_json::json!({
        "messages": found.messages.len(),
        "conversations": found.conversations.len(),
        "address_consents": found.address_consents.len(),
    });
    audit::record(
        db,
        business_id,
        audit::CLIENT_EXPORT,
        &audit::client_subject(client_id),
        actor,
        detail,
        now,
    )
    .await?;
    Ok(Some(found))
}
