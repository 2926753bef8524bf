//! Delivery status updates: every report is kept in the message's event history; the
//! message's status only moves forward (initiated < queued < sending < sent < delivered /
//! undelivered / failed < read). A report seen before (same dedupe key) is recorded once.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, Set, TryInsertResult, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};

use crate::types::{MessageStatus, Provider};
use crate::{Error, Result, message, message_event};

/// Which message a report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRef {
    /// omega's id, within a business.
    Id { business_id: i64, message_id: i64 },
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
    pub status: MessageStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// Who reported it: `api` or `provider`.
    pub source: String,
    /// Identifies the report itself, so a repeat is recorded once.
    pub dedupe_key: String,
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
    let inserted = message_event::Entity::insert(message_event::ActiveModel {
        id: NotSet,
        message_id: Set(msg.id),
        status: Set(report.status.as_str().into()),
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
    let current: MessageStatus = msg.status.parse()?;
    let advanced = report.status.rank() > current.rank();
    if advanced {
        let mut row: message::ActiveModel = msg.into();
        row.status = Set(report.status.as_str().into());
        if report.error_code.is_some() || report.error_message.is_some() {
            row.error_code = Set(report.error_code.clone());
            row.error_message = Set(report.error_message.clone());
        }
        if report.status == MessageStatus::Delivered {
            row.delivered_at = Set(Some(report.occurred_at));
        }
        row.updated_at = Set(now);
        row.update(&txn).await?;
    }
    txn.commit().await?;
    Ok(if advanced {
        Applied::Advanced
    } else {
        Applied::Kept
    })
}
