//! Client upkeep: the clients omega creates itself (unknown senders, records for clients not
//! yet onboarded) and their consent per channel.
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, EntityTrait, Set};

use crate::types::{Channel, ClientType};
use crate::{Error, Result, client};

/// A client omega creates itself (not onboarded by the platform): no name, consent not
/// withdrawn.
pub fn new_client(
    business_id: i64,
    id: i64,
    client_type: ClientType,
    phone: Option<String>,
    email: Option<String>,
    location_id: Option<i64>,
) -> client::ActiveModel {
    let now = Utc::now();
    client::ActiveModel {
        business_id: Set(business_id),
        id: Set(id),
        first_name: Set(None),
        last_name: Set(None),
        email: Set(email),
        phone: Set(phone),
        client_type: Set(client_type.as_str().into()),
        location_id: Set(location_id),
        sms_opt_in: Set(true),
        sms_opted_out_at: Set(None),
        sms_opt_out_reason: Set(None),
        email_opt_in: Set(true),
        email_opted_out_at: Set(None),
        email_opt_out_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// The client row, created (as a plain `client`, consent as yet unrecorded) when the platform
/// has not onboarded it yet, so that a recorded message is never refused for it.
pub async fn ensure_client(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
    channel: Channel,
    address: Option<&str>,
) -> Result<client::Model> {
    if let Some(found) = client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
    {
        return Ok(found);
    }
    let (phone, email) = match channel {
        Channel::Sms | Channel::Voice => (address.map(str::to_owned), None),
        Channel::Email => (None, address.map(str::to_owned)),
        Channel::Note => (None, None),
    };
    client::Entity::insert(new_client(
        business_id,
        client_id,
        ClientType::Client,
        phone,
        email,
        None,
    ))
    .on_conflict_do_nothing()
    .exec_without_returning(db)
    .await?;
    client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("client {client_id}")))
}

/// Records a client's consent for a channel: an opt-out with when and why (the first one is
/// kept: a repeated STOP does not move its time), or an opt back in, which clears it.
/// Voice follows SMS (one number, one consent). The `address` that said it (the number that
/// texted STOP, the mailbox that bounced) is recorded too, for every client row it reaches
/// ([`crate::consent`]).
#[allow(clippy::too_many_arguments)] // one consent change: who, where, which way, when, why
pub async fn set_consent(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
    channel: Channel,
    address: Option<&str>,
    opt_in: bool,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<()> {
    if let Some(address) = address {
        crate::consent::record(
            db,
            business_id,
            client_id,
            channel,
            address,
            opt_in,
            at,
            reason,
        )
        .await?;
    }
    let Some(found) = client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
    else {
        return Err(Error::NotFound(format!("client {client_id}")));
    };
    let mut row: client::ActiveModel = found.clone().into();
    match (channel, opt_in) {
        (Channel::Sms | Channel::Voice, true) => {
            row.sms_opt_in = Set(true);
            row.sms_opted_out_at = Set(None);
            row.sms_opt_out_reason = Set(None);
        }
        (Channel::Sms | Channel::Voice, false) => {
            row.sms_opt_in = Set(false);
            if found.sms_opted_out_at.is_none() {
                row.sms_opted_out_at = Set(Some(at));
                row.sms_opt_out_reason = Set(Some(reason.to_owned()));
            }
        }
        (Channel::Email, true) => {
            row.email_opt_in = Set(true);
            row.email_opted_out_at = Set(None);
            row.email_opt_out_reason = Set(None);
        }
        (Channel::Email, false) => {
            row.email_opt_in = Set(false);
            if found.email_opted_out_at.is_none() {
                row.email_opted_out_at = Set(Some(at));
                row.email_opt_out_reason = Set(Some(reason.to_owned()));
            }
        }
        (Channel::Note, _) => return Ok(()),
    }
    row.updated_at = Set(Utc::now());
    sea_orm::ActiveModelTrait::update(row, db).await?;
    Ok(())
}
