//! Sending: the worker records the message first (`queued`), checks consent, dispatches, then
//! records what the provider said. A message that already has a provider id is never sent
//! again, so a re-run of its job cannot send twice.
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, Set};

use serde::{Deserialize, Serialize};

use crate::record::RecordBatch;
use crate::types::{Channel, MessageStatus, Provider};
use crate::{Error, Result, client, message};

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
    let error = error.map(|(code, reason)| (Some(code), Some(reason)));
    crate::inbox::append_event(&txn, id, status, error, "worker", now).await?;
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

/// Failure codes that retrying cannot fix (the recipient, not the moment, is the problem).
pub const PERMANENT_CODES: &[&str] = &[
    "21211",
    "21610",
    "21612",
    "21614",
    "30006",
    "30007",
    "opted_out",
    "bounce",
    "dropped",
    "blocked",
    "unsubscribed",
];

pub fn is_permanent(code: Option<&str>) -> bool {
    code.is_some_and(|c| PERMANENT_CODES.contains(&c))
}

/// Which failed messages to retry.
#[derive(Clone, Debug, Default)]
pub struct RetrySelection {
    pub business_id: Option<i64>,
    pub message_ids: Option<Vec<i64>>,
    pub channel: Option<Channel>,
    pub since: Option<chrono::DateTime<Utc>>,
    pub until: Option<chrono::DateTime<Utc>>,
    pub limit: u64,
}

/// Failed outbound messages that omega itself sent (it has a send job to repeat), oldest first.
pub async fn failed_messages(
    db: &impl ConnectionTrait,
    sel: &RetrySelection,
) -> Result<Vec<message::Model>> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr};
    let mut q = message::Entity::find()
        .filter(message::Column::Status.eq(MessageStatus::Failed.as_str()))
        .filter(message::Column::Direction.eq("outbound"))
        .filter(message::Column::Channel.is_in([Channel::Sms.as_str(), Channel::Email.as_str()]))
        .filter(message::Column::RequestId.is_not_null())
        .filter(Expr::cust(
            "EXISTS (SELECT 1 FROM message_events e WHERE e.message_id = messages.id AND e.source = 'worker')",
        ));
    if let Some(b) = sel.business_id {
        q = q.filter(message::Column::BusinessId.eq(b));
    }
    if let Some(ids) = &sel.message_ids {
        q = q.filter(message::Column::Id.is_in(ids.clone()));
    }
    if let Some(c) = sel.channel {
        q = q.filter(message::Column::Channel.eq(c.as_str()));
    }
    if let Some(t) = sel.since {
        q = q.filter(message::Column::CreatedAt.gte(t));
    }
    if let Some(t) = sel.until {
        q = q.filter(message::Column::CreatedAt.lt(t));
    }
    Ok(q.order_by_asc(message::Column::Id)
        .limit(sel.limit)
        .all(db)
        .await?)
}

/// Puts a failed message back to `queued` for a resend (its row is kept; the history shows
/// the failure and the retry). Returns the send job that resends it.
pub async fn requeue(db: &DatabaseConnection, msg: message::Model) -> Result<SendJob> {
    let job = resend_job(&msg)?;
    let txn = crate::db::begin_write(db).await?;
    let now = Utc::now();
    let id = msg.id;
    let mut row: message::ActiveModel = msg.into();
    row.status = Set(MessageStatus::Queued.as_str().into());
    row.provider_message_id = Set(None);
    row.error_code = Set(None);
    row.error_message = Set(None);
    row.updated_at = Set(now);
    row.update(&txn).await?;
    crate::inbox::append_event(
        &txn,
        id,
        MessageStatus::Queued,
        Some((None, Some("retry".into()))),
        "retry",
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(job)
}

/// Undoes `requeue` when its job could not be queued.
pub async fn unqueue(
    db: &DatabaseConnection,
    message_id: i64,
    code: &str,
    reason: &str,
) -> Result<()> {
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
    message::Entity::update_many()
        .col_expr(
            message::Column::Status,
            Expr::value(MessageStatus::Failed.as_str()),
        )
        .col_expr(message::Column::ErrorCode, Expr::value(code))
        .col_expr(message::Column::ErrorMessage, Expr::value(reason))
        .filter(message::Column::Id.eq(message_id))
        .filter(message::Column::Status.eq(MessageStatus::Queued.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

fn resend_job(m: &message::Model) -> Result<SendJob> {
    let strings = crate::inbox::json_strings;
    let meta = &m.metadata;
    let batch = crate::record::RecordBatch {
        business_id: m.business_id,
        request_id: m
            .request_id
            .clone()
            .ok_or_else(|| Error::Invalid("the message has no request to repeat".into()))?,
        channel: m.channel.parse()?,
        direction: crate::types::Direction::Outbound,
        category: m.category.as_deref().map(str::parse).transpose()?,
        notification_type: m.notification_type.as_deref().map(str::parse).transpose()?,
        staff_id: m.staff_id,
        provider: m.provider.as_deref().map(str::parse).transpose()?,
        sent_by: m.sent_by,
        sender_type: m.sender_type.parse()?,
        sent_at: None,
        location_id: m.location_id,
        items: vec![crate::record::RecordItem {
            message_id: m.external_id,
            client_id: m.client_id,
            wl_user_id: None,
            from: m.from_addr.clone(),
            to: m.to_addr.clone().unwrap_or_default(),
            subject: m.subject.clone(),
            body: m.body.clone(),
            cc: strings(&m.cc),
            bcc: strings(&m.bcc),
            attachments: m.attachments.clone(),
            status: MessageStatus::Queued,
            provider_message_id: None,
            metadata: meta.clone(),
        }],
    };
    let media_urls = m
        .attachments
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["url"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(SendJob {
        batch,
        index: m.request_index.unwrap_or(0),
        media_urls: if m.channel == Channel::Sms.as_str() {
            media_urls
        } else {
            vec![]
        },
        html: meta["html"].as_str().map(str::to_owned),
        from_name: meta["from_name"].as_str().map(str::to_owned),
        reply_to: meta["reply_to"].as_str().map(str::to_owned),
    })
}
