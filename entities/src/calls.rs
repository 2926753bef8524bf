//! Voice calls: each recorded as a `voice` message in the client's conversation, the client
//! found by phone number or created as a `lead`. Idempotent on the call's SID.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TryInsertResult, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};

use crate::conversations::{find_or_create_conversation, touch_conversation};
use crate::types::{Channel, ClientType, Direction, MessageStatus, Provider, UserType};
use crate::{Error, Result, client, location, message, staff_location};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallRecord {
    pub business_id: i64,
    pub location_id: Option<i64>,
    pub staff_id: Option<i64>,
    pub call_sid: String,
    pub direction: Direction,
    /// The client's number (E.164): who was called, or who called.
    pub client_phone: String,
    pub from: String,
    pub to: String,
    pub at: DateTime<Utc>,
}

/// Records the call; false when it was recorded before.
pub async fn record_call(db: &DatabaseConnection, call: &CallRecord) -> Result<bool> {
    let txn = crate::db::begin_write(db).await?;
    let client = find_or_create_by_address(
        &txn,
        call.business_id,
        Channel::Voice,
        &call.client_phone,
        call.location_id,
    )
    .await?;
    let location_id = call.location_id.or(client.location_id);
    let conversation =
        find_or_create_conversation(&txn, call.business_id, location_id, client.id, call.at)
            .await?;
    let inbound = call.direction == Direction::Inbound;
    let now = Utc::now();
    let status = MessageStatus::Initiated;
    let row = message::ActiveModel {
        id: NotSet,
        business_id: Set(call.business_id),
        conversation_id: Set(conversation.id),
        client_id: Set(client.id),
        location_id: Set(location_id),
        channel: Set(Channel::Voice.as_str().into()),
        direction: Set(call.direction.as_str().into()),
        category: Set(None),
        notification_type: Set(None),
        sender_type: Set(if inbound {
            UserType::Client
        } else {
            UserType::Staff
        }
        .as_str()
        .into()),
        sent_by: Set(call.staff_id),
        staff_id: Set(call.staff_id),
        provider: Set(Some(Provider::Twilio.as_str().into())),
        provider_message_id: Set(Some(call.call_sid.clone())),
        external_id: Set(None),
        request_id: Set(None),
        request_index: Set(None),
        subject: Set(None),
        body: Set(String::new()),
        from_addr: Set(Some(call.from.clone())),
        to_addr: Set(Some(call.to.clone())),
        cc: Set(serde_json::json!([])),
        bcc: Set(serde_json::json!([])),
        attachments: Set(serde_json::json!([])),
        status: Set(status.as_str().into()),
        error_code: Set(None),
        error_message: Set(None),
        is_read: Set(!inbound),
        metadata: Set(serde_json::json!({})),
        sent_at: Set(Some(call.at)),
        delivered_at: Set(None),
        scheduled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let inserted = message::Entity::insert(row)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .try_insert()
        .exec(&txn)
        .await?;
    let message_id = match inserted {
        TryInsertResult::Inserted(res) => res.last_insert_id,
        TryInsertResult::Conflicted | TryInsertResult::Empty => return Ok(false),
    };
    crate::status_history::append_event(&txn, message_id, status, None, "provider", call.at)
        .await?;
    touch_conversation(
        &txn,
        conversation.id,
        message_id,
        call.at,
        inbound,
        Channel::Voice,
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// The business's client with this phone number (SMS, voice) or email address, or a new
/// `lead` with it. Leads that omega creates get negative ids, so they never collide with the
/// platform's own (positive) ids.
pub async fn find_or_create_by_address(
    db: &impl ConnectionTrait,
    business_id: i64,
    channel: Channel,
    address: &str,
    location_id: Option<i64>,
) -> Result<client::Model> {
    let column = match channel {
        Channel::Email => client::Column::Email,
        Channel::Sms | Channel::Voice | Channel::Note => client::Column::Phone,
    };
    let by_address = || {
        client::Entity::find()
            .filter(client::Column::BusinessId.eq(business_id))
            .filter(column.eq(address))
            .order_by_desc(client::Column::Id)
    };
    if let Some(found) = by_address().one(db).await? {
        return Ok(found);
    }
    let (phone, email) = match column {
        client::Column::Email => (None, Some(address.to_owned())),
        _ => (Some(address.to_owned()), None),
    };
    for _ in 0..5 {
        let lowest = client::Entity::find()
            .filter(client::Column::BusinessId.eq(business_id))
            .filter(client::Column::Id.lt(0))
            .order_by_asc(client::Column::Id)
            .one(db)
            .await?
            .map(|c| c.id)
            .unwrap_or(0);
        let lead = crate::clients::new_client(
            business_id,
            lowest - 1,
            ClientType::Lead,
            phone.clone(),
            email.clone(),
            location_id,
        );
        let inserted = client::Entity::insert(lead)
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await?;
        if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
            return by_address()
                .one(db)
                .await?
                .ok_or_else(|| Error::NotFound("the new lead".into()));
        }
    }
    Err(Error::Conflict("could not allocate a lead id".into()))
}

/// The location a number belongs to (`(business_id, location_id)`).
pub async fn location_by_number(
    db: &impl ConnectionTrait,
    number: &str,
) -> Result<Option<location::Model>> {
    Ok(location::Entity::find()
        .filter(location::Column::PhoneNumber.eq(number))
        .one(db)
        .await?)
}

/// The number a staff member calls from: the first of their locations that has one.
pub async fn caller_id_of(
    db: &impl ConnectionTrait,
    business_id: i64,
    staff_id: i64,
) -> Result<Option<(i64, String)>> {
    let location_ids: Vec<i64> = staff_location::Entity::find()
        .filter(staff_location::Column::BusinessId.eq(business_id))
        .filter(staff_location::Column::StaffId.eq(staff_id))
        .order_by_asc(staff_location::Column::LocationId)
        .all(db)
        .await?
        .into_iter()
        .map(|l| l.location_id)
        .collect();
    let found = location::Entity::find()
        .filter(location::Column::BusinessId.eq(business_id))
        .filter(location::Column::Id.is_in(location_ids))
        .filter(location::Column::PhoneNumber.is_not_null())
        .order_by_asc(location::Column::Id)
        .one(db)
        .await?;
    Ok(found.and_then(|l| l.phone_number.map(|n| (l.id, n))))
}

/// The staff of a location (for ringing their browsers), at most `limit`.
pub async fn staff_of_location(
    db: &impl ConnectionTrait,
    business_id: i64,
    location_id: i64,
    limit: u64,
) -> Result<Vec<i64>> {
    Ok(staff_location::Entity::find()
        .filter(staff_location::Column::BusinessId.eq(business_id))
        .filter(staff_location::Column::LocationId.eq(location_id))
        .order_by_asc(staff_location::Column::StaffId)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|l| l.staff_id)
        .collect())
}

/// A voice status callback (`/twilio/voice/status`) for a call recorded by the TwiML
/// endpoint, or created from the callback itself when that record is missing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VoiceStatus {
    pub call: CallRecord,
    /// Twilio's `CallStatus` (`ringing`, `in-progress`, `completed`, `busy`, …).
    pub call_status: String,
    pub duration_secs: Option<i64>,
    pub occurred_at: DateTime<Utc>,
}

/// omega's status for a Twilio `CallStatus`; None for one omega does not know.
pub fn call_status(twilio: &str) -> Option<MessageStatus> {
    Some(match twilio {
        "queued" => MessageStatus::Queued,
        "initiated" => MessageStatus::Initiated,
        "ringing" => MessageStatus::Sending,
        "in-progress" | "answered" => MessageStatus::Sent,
        "completed" => MessageStatus::Delivered,
        "busy" | "no-answer" => MessageStatus::Undelivered,
        "failed" => MessageStatus::Failed,
        "canceled" => MessageStatus::Canceled,
        _ => return None,
    })
}

/// Records the call if it is not yet, then its status (forward only, every report kept
/// once) and its duration.
pub async fn apply_voice_status(db: &DatabaseConnection, v: &VoiceStatus) -> Result<()> {
    if !v.call.client_phone.is_empty() {
        record_call(db, &v.call).await?;
    }
    let report = crate::status::StatusReport {
        message: crate::status::MessageRef::Provider {
            business_id: Some(v.call.business_id),
            provider: Some(Provider::Twilio),
            provider_message_id: v.call.call_sid.clone(),
        },
        status: call_status(&v.call_status),
        error_code: None,
        error_message: None,
        occurred_at: v.occurred_at,
        source: format!("twilio:{}", v.call_status),
        dedupe_key: format!("twilio-voice:{}", v.call_status),
        opt_out: None,
    };
    crate::status::apply(db, &report).await?;
    if let Some(seconds) = v.duration_secs {
        let txn = crate::db::begin_write(db).await?;
        if let Some(msg) = message::Entity::find()
            .filter(message::Column::BusinessId.eq(v.call.business_id))
            .filter(message::Column::Provider.eq(Provider::Twilio.as_str()))
            .filter(message::Column::ProviderMessageId.eq(v.call.call_sid.as_str()))
            .one(&txn)
            .await?
        {
            let mut metadata = msg.metadata.clone();
            match metadata.as_object_mut() {
                Some(obj) => {
                    obj.insert("duration_seconds".into(), seconds.into());
                }
                None => metadata = serde_json::json!({ "duration_seconds": seconds }),
            }
            let mut row: message::ActiveModel = msg.into();
            row.metadata = Set(metadata);
            row.updated_at = Set(Utc::now());
            sea_orm::ActiveModelTrait::update(row, &txn).await?;
        }
        txn.commit().await?;
    }
    Ok(())
}
