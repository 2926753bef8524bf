//! Sending: the worker records the message first (`queued`), checks consent, dispatches, then
//! records what the provider said. A message that already has a provider id is never sent
//! again, so a re-run of its job cannot send twice.
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait};

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
    /// An email answering a client's email: what threads it there.
    #[serde(default)]
    pub thread: Option<EmailThread>,
}

/// The client's email a reply answers: its `Message-ID` (for `In-Reply-To`) and the
/// `References` chain that ends with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailThread {
    pub in_reply_to: String,
    pub references: String,
}

/// Whether the client may be sent to on this channel, and if not, why.
pub fn refusal(c: &client::Model, channel: Channel) -> Option<String> {
    let (opted_in, opted_out_at, reason, name) = match channel {
        Channel::Sms | Channel::Voice => (
            c.sms_opt_in,
            c.sms_opted_out_at,
            &c.sms_opt_out_reason,
            "SMS",
        ),
        Channel::Email => (
            c.email_opt_in,
            c.email_opted_out_at,
            &c.email_opt_out_reason,
            "email",
        ),
        Channel::Note => return None,
    };
    (!opted_in || opted_out_at.is_some()).then(|| {
        format!(
            "the client opted out of {name}{}",
            reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
    })
}

/// What became of one dispatch: the provider's answer or why the message failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub message_id: i64,
    pub provider: Provider,
    pub provider_message_id: Option<String>,
    pub status: MessageStatus,
    /// The provider's (or omega's) code and reason.
    pub error: Option<(String, String)>,
    /// The sender the message went out from.
    pub from: Option<String>,
}

impl Settlement {
    /// The provider accepted the message (sent from `from`).
    pub fn sent(
        message_id: i64,
        provider: Provider,
        provider_message_id: String,
        status: MessageStatus,
        from: &str,
    ) -> Self {
        Settlement {
            message_id,
            provider,
            provider_message_id: Some(provider_message_id),
            status,
            error: None,
            from: Some(from.to_owned()),
        }
    }

    /// The message failed for good, with the provider's (or omega's) code and reason.
    pub fn failed(message_id: i64, provider: Provider, code: &str, reason: &str) -> Self {
        Settlement {
            message_id,
            provider,
            provider_message_id: None,
            status: MessageStatus::Failed,
            error: Some((code.to_owned(), reason.to_owned())),
            from: None,
        }
    }
}

/// Records what became of many dispatches in one transaction: each message's provider,
/// provider id, status and error, and an entry in its history.
pub async fn settle_many(db: &DatabaseConnection, settlements: &[Settlement]) -> Result<()> {
    let txn = crate::db::begin_write(db).await?;
    crate::db::by_key_only(&txn).await?;
    settle_in(&txn, settlements, Utc::now()).await?;
    txn.commit().await?;
    Ok(())
}

async fn settle_in(
    db: &impl ConnectionTrait,
    settlements: &[Settlement],
    now: DateTime<Utc>,
) -> Result<()> {
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
    if settlements.is_empty() {
        return Ok(());
    }
    if crate::db::is_sqlite(db) {
        for s in settlements {
            let mut update = message::Entity::update_many()
                .col_expr(message::Column::Provider, Expr::value(s.provider.as_str()))
                .col_expr(message::Column::Status, Expr::value(s.status.as_str()))
                .col_expr(
                    message::Column::ErrorCode,
                    Expr::value(s.error.as_ref().map(|e| e.0.clone())),
                )
                .col_expr(
                    message::Column::ErrorMessage,
                    Expr::value(s.error.as_ref().map(|e| e.1.clone())),
                )
                .col_expr(message::Column::UpdatedAt, Expr::value(now));
            if let Some(from) = &s.from {
                update = update.col_expr(message::Column::FromAddr, Expr::value(from.clone()));
            }
            if let Some(pid) = &s.provider_message_id {
                update = update
                    .col_expr(message::Column::ProviderMessageId, Expr::value(pid.clone()))
                    .col_expr(message::Column::SentAt, Expr::value(now));
            }
            update
                .filter(message::Column::Id.eq(s.message_id))
                .exec(db)
                .await?;
        }
    } else {
        let rows: Vec<serde_json::Value> = settlements
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.message_id,
                    "provider": s.provider.as_str(),
                    "pid": s.provider_message_id,
                    "from_addr": s.from,
                    "status": s.status.as_str(),
                    "code": s.error.as_ref().map(|e| &e.0),
                    "reason": s.error.as_ref().map(|e| &e.1),
                })
            })
            .collect();
        crate::db::lock_in_order(db, "messages", settlements.iter().map(|s| s.message_id)).await?;
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE messages m SET
                provider = v.provider,
                from_addr = COALESCE(v.from_addr, m.from_addr),
                provider_message_id = COALESCE(v.pid, m.provider_message_id),
                sent_at = CASE WHEN v.pid IS NULL THEN m.sent_at ELSE $2 END,
                status = v.status,
                error_code = v.code,
                error_message = v.reason,
                updated_at = $2
             FROM jsonb_to_recordset($1::jsonb)
                AS v(id bigint, provider text, pid text, from_addr text, status text, code text, reason text)
             WHERE m.id = v.id",
            [serde_json::Value::Array(rows).into(), now.into()],
        ))
        .await?;
    }
    // Settled messages were on their way (queued) until now; a provider that answers
    // `queued` has not moved them.
    let moved: Vec<(i64, String)> = settlements
        .iter()
        .filter(|s| s.status != MessageStatus::Queued)
        .map(|s| (s.message_id, MessageStatus::Queued.as_str().to_owned()))
        .collect();
    crate::event_log::status_updated(db, &moved, now).await?;
    let events: Vec<_> = settlements
        .iter()
        .map(|s| {
            let error = s
                .error
                .clone()
                .map(|(code, reason)| (Some(code), Some(reason)));
            crate::status_history::event_row(s.message_id, s.status, error, "worker", now, now)
        })
        .collect();
    crate::status_history::insert_events(db, events).await
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
/// the failure and the retry). Returns the send job that resends it, or `None` when the
/// message is no longer `failed` (a concurrent retry took it): only a failed message is ever
/// resent, so two retries never send it twice.
pub async fn requeue(db: &DatabaseConnection, msg: message::Model) -> Result<Option<SendJob>> {
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
    let job = resend_job(&msg)?;
    let txn = crate::db::begin_write(db).await?;
    let now = Utc::now();
    let id = msg.id;
    let taken = message::Entity::update_many()
        .col_expr(
            message::Column::Status,
            Expr::value(MessageStatus::Queued.as_str()),
        )
        .col_expr(
            message::Column::ProviderMessageId,
            Expr::value(None::<String>),
        )
        .col_expr(message::Column::ErrorCode, Expr::value(None::<String>))
        .col_expr(message::Column::ErrorMessage, Expr::value(None::<String>))
        .col_expr(message::Column::UpdatedAt, Expr::value(now))
        .filter(message::Column::Id.eq(id))
        .filter(message::Column::Status.eq(MessageStatus::Failed.as_str()))
        .exec(&txn)
        .await?;
    if taken.rows_affected == 0 {
        return Ok(None);
    }
    crate::status_history::append_event(
        &txn,
        id,
        MessageStatus::Queued,
        Some((None, Some("retry".into()))),
        "retry",
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(Some(job))
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
    let strings = crate::query::json_strings;
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
            scheduled_at: None,
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
        thread: serde_json::from_value(meta["thread"].clone()).ok(),
    })
}
