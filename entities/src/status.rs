//! Delivery status updates: every report is kept in the message's event history; the
//! message's status only moves forward (initiated < queued < sending < sent < delivered /
//! undelivered / failed < read). A report seen before (same dedupe key) is recorded once.
//! Provider events that are not a status (a click, a spam complaint, an unknown event) are
//! kept in the history too, with the message's status unchanged.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TryInsertResult,
    sea_query::{Expr, OnConflict},
};
use serde::{Deserialize, Serialize};

use crate::types::{Channel, MessageStatus, Provider};
use crate::{Error, Result, message, message_event};

/// Which message a report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRef {
    /// omega's id, within a business.
    Id { business_id: i64, message_id: i64 },
    /// omega's id as omega gave it to a provider (SendGrid `custom_args`): ids are unique
    /// across businesses.
    Omega { message_id: i64 },
    /// The provider's id (unique per provider); `business_id` narrows it when known.
    Provider {
        business_id: Option<i64>,
        provider: Option<Provider>,
        provider_message_id: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub message: MessageRef,
    /// None for an event that reports no status (kept in the history only).
    pub status: Option<MessageStatus>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// Who reported it: `api` or `provider`.
    pub source: String,
    /// Identifies the report itself, so a repeat is recorded once.
    pub dedupe_key: String,
    /// The recipient withdrew consent for the message's channel (a bounce, spam complaint or
    /// unsubscribe), with this reason: later sends to them are refused.
    #[serde(default)]
    pub opt_out: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Kept in the history and moved the status forward.
    Advanced,
    /// Kept in the history; the message was already further along.
    Kept,
    /// Seen before: nothing recorded.
    Duplicate,
}

async fn find(db: &impl ConnectionTrait, r: &MessageRef) -> Result<Option<message::Model>> {
    let q = match r {
        MessageRef::Id {
            business_id,
            message_id,
        } => message::Entity::find()
            .filter(message::Column::BusinessId.eq(*business_id))
            .filter(message::Column::Id.eq(*message_id)),
        MessageRef::Omega { message_id } => {
            message::Entity::find().filter(message::Column::Id.eq(*message_id))
        }
        MessageRef::Provider {
            business_id,
            provider,
            provider_message_id,
        } => {
            let mut q = message::Entity::find()
                .filter(message::Column::ProviderMessageId.eq(provider_message_id.as_str()));
            if let Some(b) = business_id {
                q = q.filter(message::Column::BusinessId.eq(*b));
            }
            if let Some(p) = provider {
                q = q.filter(message::Column::Provider.eq(p.as_str()));
            }
            q
        }
    };
    Ok(q.one(db).await?)
}

/// Applies one report. A report about a message not recorded yet is `NotFound` (the caller
/// retries it later: a callback can overtake the send it reports on).
pub async fn apply(db: &DatabaseConnection, report: &StatusReport) -> Result<Applied> {
    let txn = crate::db::begin_write(db).await?;
    let msg = find(&txn, &report.message)
        .await?
        .ok_or_else(|| Error::NotFound(format!("message {:?}", report.message)))?;
    let now = Utc::now();
    let current: MessageStatus = msg.status.parse()?;
    let inserted = message_event::Entity::insert(message_event::ActiveModel {
        id: NotSet,
        message_id: Set(msg.id),
        status: Set(report.status.unwrap_or(current).as_str().into()),
        error_code: Set(report.error_code.clone()),
        error_message: Set(report.error_message.clone()),
        source: Set(report.source.clone()),
        dedupe_key: Set(Some(format!("{}:{}", msg.id, report.dedupe_key))),
        occurred_at: Set(report.occurred_at),
        created_at: Set(now),
    })
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .try_insert()
    .exec_without_returning(&txn)
    .await?;
    if !matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
        txn.commit().await?;
        return Ok(Applied::Duplicate);
    }
    if let Some(reason) = &report.opt_out {
        let channel: Channel = msg.channel.parse()?;
        crate::inbox::set_consent(
            &txn,
            msg.business_id,
            msg.client_id,
            channel,
            false,
            report.occurred_at,
            reason,
        )
        .await?;
    }
    // The move forward is decided by the database against the row as it is now (another
    // report may have moved it since it was read): concurrent reports never move it back.
    let mut advanced = false;
    if let Some(status) = report.status.filter(|s| s.rank() > current.rank()) {
        let behind: Vec<&str> = MessageStatus::ALL
            .iter()
            .filter(|s| s.rank() < status.rank())
            .map(|s| s.as_str())
            .collect();
        let mut update = message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(status.as_str()))
            .col_expr(message::Column::UpdatedAt, Expr::value(now));
        if report.error_code.is_some() || report.error_message.is_some() {
            update = update
                .col_expr(
                    message::Column::ErrorCode,
                    Expr::value(report.error_code.clone()),
                )
                .col_expr(
                    message::Column::ErrorMessage,
                    Expr::value(report.error_message.clone()),
                );
        }
        if status == MessageStatus::Delivered {
            update = update.col_expr(
                message::Column::DeliveredAt,
                Expr::value(Some(report.occurred_at)),
            );
        }
        let result = update
            .filter(message::Column::Id.eq(msg.id))
            .filter(message::Column::Status.is_in(behind))
            .exec(&txn)
            .await?;
        advanced = result.rows_affected > 0;
    }
    txn.commit().await?;
    Ok(if advanced {
        Applied::Advanced
    } else {
        Applied::Kept
    })
}
