//! Voice calls: each recorded as a `voice` message in the client's conversation, the client
//! found by phone number or created as a `lead`. Idempotent on the call's SID.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TryInsertResult, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};

use crate::inbox::{find_or_create_conversation, touch_conversation};
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
    let client =
        find_or_create_by_phone(&txn, call.business_id, &call.client_phone, call.location_id)
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
    crate::inbox::append_event(&txn, message_id, status, None, "provider", call.at).await?;
    touch_conversation(&txn, conversation.id, message_id, call.at, inbound).await?;
    txn.commit().await?;
    Ok(true)
}

/// The business's client with this number, or a new `lead` with it. Leads that omega creates
/// get negative ids, so they never collide with the platform's own (positive) ids.
pub async fn find_or_create_by_phone(
    db: &impl ConnectionTrait,
    business_id: i64,
    phone: &str,
    location_id: Option<i64>,
) -> Result<client::Model> {
    let by_phone = || {
        client::Entity::find()
            .filter(client::Column::BusinessId.eq(business_id))
            .filter(client::Column::Phone.eq(phone))
            .order_by_desc(client::Column::Id)
    };
    if let Some(found) = by_phone().one(db).await? {
        return Ok(found);
    }
    for _ in 0..5 {
        let lowest = client::Entity::find()
            .filter(client::Column::BusinessId.eq(business_id))
            .filter(client::Column::Id.lt(0))
            .order_by_asc(client::Column::Id)
            .one(db)
            .await?
            .map(|c| c.id)
            .unwrap_or(0);
        let lead = crate::inbox::new_client(
            business_id,
            lowest - 1,
            ClientType::Lead,
            Some(phone.to_owned()),
            None,
            location_id,
        );
        let inserted = client::Entity::insert(lead)
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await?;
        if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
            return by_phone()
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
