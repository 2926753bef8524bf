//! Sending: the worker records the message first (`queued`), checks consent, dispatches, then
//! records what the provider said. A message that already has a provider id is never sent
//! again, so a re-run of its job cannot send twice.
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ConnectionTrait, DatabaseConnection, EntityTrait, Set,
};

use serde::{Deserialize, Serialize};

use crate::record::RecordBatch;
use crate::types::{Channel, MessageStatus, Provider};
use crate::{Error, Result, client, message, message_event};

/// One message to send: its request's envelope with this one item, and where it stands in
/// the request (the slot that makes a re-run find the same row).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SendJob {
    pub batch: RecordBatch,
    pub index: i32,
    #[serde(default)]
    pub media_urls: Vec<String>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub from_name: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// Whether the client may be sent to on this channel, and if not, why.
pub async fn consent(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
    channel: Channel,
) -> Result<Option<String>> {
    let c = client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("client {client_id}")))?;
    let refused = match channel {
        Channel::Sms | Channel::Voice => {
            (!c.sms_opt_in || c.sms_opted_out_at.is_some()).then(|| {
                format!(
                    "the client opted out of SMS{}",
                    c.sms_opt_out_reason
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
            })
        }
        Channel::Email => (!c.email_opt_in || c.email_opted_out_at.is_some()).then(|| {
            format!(
                "the client opted out of email{}",
                c.email_opt_out_reason
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        }),
        Channel::Note => None,
    };
    Ok(refused)
}

async fn settle(
    db: &DatabaseConnection,
    msg: message::Model,
    provider: Provider,
    provider_message_id: Option<String>,
    status: MessageStatus,
    error: Option<(String, String)>,
    from: Option<&str>,
) -> Result<message::Model> {
    let txn = crate::db::begin_write(db).await?;
    let now = Utc::now();
    let id = msg.id;
    let mut row: message::ActiveModel = msg.into();
    row.provider = Set(Some(provider.as_str().into()));
    if let Some(from) = from {
        row.from_addr = Set(Some(from.to_owned()));
    }
    if provider_message_id.is_some() {
        row.provider_message_id = Set(provider_message_id);
        row.sent_at = Set(Some(now));
    }
    row.status = Set(status.as_str().into());
    row.error_code = Set(error.as_ref().map(|e| e.0.clone()));
    row.error_message = Set(error.as_ref().map(|e| e.1.clone()));
    row.updated_at = Set(now);
    let updated = row.update(&txn).await?;
    message_event::Entity::insert(message_event::ActiveModel {
        id: NotSet,
        message_id: Set(id),
        status: Set(status.as_str().into()),
        error_code: Set(error.as_ref().map(|e| e.0.clone())),
        error_message: Set(error.map(|e| e.1)),
        source: Set("worker".into()),
        dedupe_key: Set(None),
        occurred_at: Set(now),
        created_at: Set(now),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(updated)
}

/// The provider accepted the message (sent from `from`).
pub async fn mark_sent(
    db: &DatabaseConnection,
    msg: message::Model,
    provider: Provider,
    provider_message_id: String,
    status: MessageStatus,
    from: &str,
) -> Result<message::Model> {
    settle(
        db,
        msg,
        provider,
        Some(provider_message_id),
        status,
        None,
        Some(from),
    )
    .await
}

/// The message failed for good, with the provider's (or omega's) code and reason.
pub async fn mark_failed(
    db: &DatabaseConnection,
    msg: message::Model,
    provider: Provider,
    code: &str,
    reason: &str,
) -> Result<message::Model> {
    settle(
        db,
        msg,
        provider,
        None,
        MessageStatus::Failed,
        Some((code.to_owned(), reason.to_owned())),
        None,
    )
    .await
}
