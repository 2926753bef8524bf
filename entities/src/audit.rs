//! The audit log: who exported or erased which client's data, and when. Entries hold ids and
//! counts, never personal data, so they outlive what they describe.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::{Result, audit_entry};

pub const CLIENT_EXPORT: &str = "client.export";
pub const CLIENT_ERASE: &str = "client.erase";

/// Who asks, as the log names them.
#[derive(Clone, Debug)]
pub struct Actor {
    /// `platform_key:7`, `business_key:3`.
    pub name: String,
    /// The request's id, to find its log lines.
    pub request_id: Option<String>,
}

/// Appends an entry.
pub async fn record(
    db: &impl ConnectionTrait,
    business_id: i64,
    action: &str,
    subject: &str,
    actor: &Actor,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) -> Result<()> {
    audit_entry::Entity::insert(audit_entry::ActiveModel {
        id: NotSet,
        business_id: Set(business_id),
        action: Set(action.to_owned()),
        subject: Set(subject.to_owned()),
        actor: Set(actor.name.clone()),
        request_id: Set(actor.request_id.clone()),
        detail: Set(detail),
        created_at: Set(at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// A business's entries, newest first.
pub async fn of_business(
    db: &impl ConnectionTrait,
    business_id: i64,
    limit: u64,
) -> Result<Vec<audit_entry::Model>> {
    Ok(audit_entry::Entity::find()
        .filter(audit_entry::Column::BusinessId.eq(business_id))
        .order_by_desc(audit_entry::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// How the log names a client.
pub fn client_subject(client_id: i64) -> String {
    format!("client:{client_id}")
}
