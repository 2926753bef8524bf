//! Consent by address: an opt-out belongs to the phone number or email address that said
//! it, for the business it said it to, whatever client row the next message goes through
//! (another client id, a client created on the fly). Written with the client's own consent
//! ([`crate::clients::set_consent`]) and checked before every send.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::types::Channel;
use crate::{Result, address_consent as row};

/// The channel consent is kept under: voice follows SMS (one number, one consent); notes
/// have none.
pub fn consent_channel(channel: Channel) -> Option<&'static str> {
    match channel {
        Channel::Sms | Channel::Voice => Some("sms"),
        Channel::Email => Some("email"),
        Channel::Note => None,
    }
}

/// An address as consent is kept under: numbers as given (E.164), email lower-case.
pub fn normalized(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Email => address.trim().to_ascii_lowercase(),
        _ => address.trim().to_owned(),
    }
}

/// Records that an address opted out (the first opt-out's time and reason are kept) or back
/// in, for the client it came through; a change is a `client.consent_updated` event.
#[allow(clippy::too_many_arguments)] // one consent change: who, where, which way, when, why
pub async fn record(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
    channel: Channel,
    address: &str,
    opt_in: bool,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<()> {
    let Some(kind) = consent_channel(channel) else {
        return Ok(());
    };
    let address = normalized(channel, address);
    let existing = row::Entity::find_by_id((business_id, kind.to_owned(), address.clone()))
        .one(db)
        .await?;
    if existing.as_ref().is_some_and(|e| e.opted_out != opt_in) {
        return Ok(());
    }
    let model = row::ActiveModel {
        business_id: Set(business_id),
        channel: Set(kind.to_owned()),
        address: Set(address.clone()),
        opted_out: Set(!opt_in),
        reason: Set(Some(reason.to_owned())),
        changed_at: Set(at),
    };
    if existing.is_some() {
        sea_orm::ActiveModelTrait::update(model, db).await?;
    } else {
        row::Entity::insert(model)
            .exec_without_returning(db)
            .await?;
    }
    let data = serde_json::json!({
        "client_id": client_id,
        "channel": kind,
        "address": address,
        "opted_in": opt_in,
        "reason": reason,
    });
    crate::event_log::append(
        db,
        vec![crate::event_log::NewEvent::new(
            business_id,
            crate::event_log::EventType::ClientConsentUpdated,
            data,
        )],
        at,
    )
    .await
}

/// One send's recipient, as consent is looked up.
pub type Recipient = (i64, Channel, String);

/// Why each recipient may not be sent to, if it opted out: one query per business and
/// channel for a whole batch.
pub async fn refusals(
    db: &impl ConnectionTrait,
    recipients: &[Recipient],
) -> Result<Vec<Option<String>>> {
    let mut wanted: BTreeMap<(i64, &'static str), BTreeSet<String>> = BTreeMap::new();
    for (business_id, channel, address) in recipients {
        if let Some(kind) = consent_channel(*channel) {
            wanted
                .entry((*business_id, kind))
                .or_default()
                .insert(normalized(*channel, address));
        }
    }
    let mut out: HashMap<(i64, &'static str, String), row::Model> = HashMap::new();
    for ((business_id, kind), addresses) in wanted {
        let addresses: Vec<String> = addresses.into_iter().collect();
        for chunk in addresses.chunks(crate::db::IN_LIST_CHUNK) {
            let rows = row::Entity::find()
                .filter(row::Column::BusinessId.eq(business_id))
                .filter(row::Column::Channel.eq(kind))
                .filter(row::Column::Address.is_in(chunk.iter().cloned()))
                .filter(row::Column::OptedOut.eq(true))
                .all(db)
                .await?;
            out.extend(
                rows.into_iter()
                    .map(|r| ((business_id, kind, r.address.clone()), r)),
            );
        }
    }
    Ok(recipients
        .iter()
        .map(|(business_id, channel, address)| {
            let kind = consent_channel(*channel)?;
            let r = out.get(&(*business_id, kind, normalized(*channel, address)))?;
            Some(format!(
                "{} opted out of {}{}",
                r.address,
                if kind == "sms" { "SMS" } else { "email" },
                r.reason
                    .as_deref()
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default()
            ))
        })
        .collect())
}

/// The consent records of a client's addresses (its phone for SMS, its email for email).
pub async fn of_addresses(
    db: &impl ConnectionTrait,
    business_id: i64,
    phone: Option<&str>,
    email: Option<&str>,
) -> Result<Vec<row::Model>> {
    let kept: Vec<(&'static str, String)> = [(Channel::Sms, phone), (Channel::Email, email)]
        .into_iter()
        .filter_map(|(channel, address)| {
            Some((consent_channel(channel)?, normalized(channel, address?)))
        })
        .collect();
    of_kept(db, business_id, &kept).await
}

/// The consent records of addresses as consent keeps them: `(sms|email, normalized address)`.
pub async fn of_kept(
    db: &impl ConnectionTrait,
    business_id: i64,
    addresses: impl IntoIterator<Item = &(&'static str, String)>,
) -> Result<Vec<row::Model>> {
    let mut found = Vec::new();
    for (kind, address) in addresses {
        found.extend(
            row::Entity::find_by_id((business_id, (*kind).to_owned(), address.clone()))
                .one(db)
                .await?,
        );
    }
    Ok(found)
}
