//! Webhook endpoints: where a business (or the platform, for every business) wants events
//! POSTed, signed by the Standard Webhooks spec ([`signature`]). The relay turns each event
//! into one [`DeliverWebhook`] job per endpoint that wants it; a worker makes the attempts
//! and records them here, and an endpoint that keeps failing is disabled.
pub mod signature;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use signature::Secret;

use crate::event_log::{Event, EventHead, EventType};
use crate::query::{Page, Paging};
use crate::secrets::Sealer;
use crate::{Error, Result, webhook, webhook_attempt};

/// An endpoint to create.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    /// None for a platform-wide endpoint.
    pub business_id: Option<i64>,
    /// Checked by the caller against the URL policy (`crate::urls`).
    pub url: String,
    /// None for every type.
    pub event_types: Option<Vec<EventType>>,
    pub description: Option<String>,
}

/// Creates an endpoint; its secret is returned in clear this once and kept sealed.
pub async fn create(
    db: &impl ConnectionTrait,
    sealer: &Sealer,
    new: NewWebhook,
    at: DateTime<Utc>,
) -> Result<(webhook::Model, Secret)> {
    let secret = Secret::generate();
    let types = new
        .event_types
        .map(|ts| json!(ts.iter().map(|t| t.as_str()).collect::<Vec<_>>()));
    let model = webhook::ActiveModel {
        business_id: Set(new.business_id),
        url: Set(new.url),
        event_types: Set(types),
        description: Set(new.description),
        secret: Set(sealer.seal(secret.to_text().as_bytes())),
        created_at: Set(at),
        failing_since: Set(None),
        disabled_at: Set(None),
        disabled_reason: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((model, secret))
}

/// The endpoints of a business (None: the platform-wide ones), oldest first.
pub async fn list(db: &impl ConnectionTrait, owner: Option<i64>) -> Result<Vec<webhook::Model>> {
    Ok(webhook::Entity::find()
        .filter(owned_by(owner))
        .order_by_asc(webhook::Column::Id)
        .all(db)
        .await?)
}

fn owned_by(owner: Option<i64>) -> Condition {
    match owner {
        Some(b) => Condition::all().add(webhook::Column::BusinessId.eq(b)),
        None => Condition::all().add(webhook::Column::BusinessId.is_null()),
    }
}

/// One endpoint of a business (None: a platform-wide one); another owner's is not found.
pub async fn find(
    db: &impl ConnectionTrait,
    owner: Option<i64>,
    id: i64,
) -> Result<webhook::Model> {
    webhook::Entity::find_by_id(id)
        .filter(owned_by(owner))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("webhook {id}")))
}

/// Removes an endpoint and its attempts; deliveries still queued for it are dropped.
pub async fn delete(db: &impl ConnectionTrait, owner: Option<i64>, id: i64) -> Result<()> {
    find(db, owner, id).await?;
    webhook_attempt::Entity::delete_many()
        .filter(webhook_attempt::Column::WebhookId.eq(id))
        .exec(db)
        .await?;
    webhook::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// Turns a disabled endpoint back on (its failures forgotten).
pub async fn enable(
    db: &impl ConnectionTrait,
    owner: Option<i64>,
    id: i64,
) -> Result<webhook::Model> {
    let mut model: webhook::ActiveModel = find(db, owner, id).await?.into();
    model.disabled_at = Set(None);
    model.disabled_reason = Set(None);
    model.failing_since = Set(None);
    Ok(model.update(db).await?)
}

/// The event types an endpoint receives; None for all.
pub fn event_types(m: &webhook::Model) -> Option<Vec<String>> {
    m.event_types
        .as_ref()
        .map(|v| serde_json::from_value(v.clone()).unwrap_or_default())
}

/// An enabled endpoint that may want events, its event types read once (the relay asks it
/// about every event of a round).
#[derive(Clone, Debug)]
pub struct Receiver {
    pub id: i64,
    business_id: Option<i64>,
    created_at: DateTime<Utc>,
    types: Option<Vec<String>>,
}

impl Receiver {
    /// Whether it gets an event: its business's (or it is platform-wide), a type it asked
    /// for, and not from before it existed.
    pub fn wants(&self, event: &EventHead) -> bool {
        self.business_id.is_none_or(|b| b == event.business_id)
            && self.created_at <= event.created_at
            && self
                .types
                .as_ref()
                .is_none_or(|ts| ts.contains(&event.event_type))
    }
}

/// The enabled endpoints that may want events of these businesses: theirs and the
/// platform-wide ones ([`Receiver::wants`] decides per event).
pub async fn receivers(db: &impl ConnectionTrait, business_ids: &[i64]) -> Result<Vec<Receiver>> {
    let endpoints = webhook::Entity::find()
        .filter(webhook::Column::DisabledAt.is_null())
        .filter(
            Condition::any()
                .add(webhook::Column::BusinessId.is_null())
                .add(webhook::Column::BusinessId.is_in(business_ids.iter().copied())),
        )
        .all(db)
        .await?;
    Ok(endpoints
        .into_iter()
        .map(|m| Receiver {
            types: event_types(&m),
            id: m.id,
            business_id: m.business_id,
            created_at: m.created_at,
        })
        .collect())
}

/// What webhooks POST and streams send for an event (Standard Webhooks' payload): its type,
/// when it happened, and its data with the business and the event's id added.
pub fn payload(event: &Event) -> Value {
    let mut data = match &event.data {
        Value::Object(map) => map.clone(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("value".into(), other.clone());
            map
        }
    };
    data.insert("business_id".into(), json!(event.business_id));
    data.insert("event_id".into(), json!(event.id.to_string()));
    json!({
        "type": event.event_type,
        "timestamp": event.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
}

/// One event for one endpoint: a job on the queue, the body fixed so every attempt signs
/// the same bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliverWebhook {
    pub webhook_id: i64,
    pub business_id: i64,
    /// `webhook-id`: the same on every attempt, so receivers can drop repeats.
    pub event_id: String,
    pub event_type: String,
    pub body: String,
}

impl DeliverWebhook {
    /// The delivery of `event` to endpoint `webhook_id`; `body` is its [`payload`] as text
    /// (made once for all the event's endpoints).
    pub fn new(webhook_id: i64, event: &Event, body: String) -> Self {
        DeliverWebhook {
            webhook_id,
            business_id: event.business_id,
            event_id: event.id.to_string(),
            event_type: event.event_type.clone(),
            body,
        }
    }
}

/// Where and how a worker delivers to an endpoint.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub secret: Secret,
    /// Whether its last attempt failed (a success then ends the streak).
    pub failing: bool,
}

/// The endpoint's URL and secret, if it still takes deliveries (not deleted or disabled).
pub async fn target(db: &impl ConnectionTrait, sealer: &Sealer, id: i64) -> Result<Option<Target>> {
    let Some(m) = webhook::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    if m.disabled_at.is_some() {
        return Ok(None);
    }
    let text = String::from_utf8(sealer.open(&m.secret)?)
        .map_err(|_| Error::Corrupt(format!("webhook {id}'s secret is not text")))?;
    Ok(Some(Target {
        url: m.url,
        secret: Secret::parse(&text)?,
        failing: m.failing_since.is_some(),
    }))
}

/// How one attempt went.
#[derive(Clone, Debug)]
pub struct Attempted {
    /// None when no answer came.
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// None when it succeeded (a 2xx).
    pub error: Option<String>,
}

/// An attempt to record.
#[derive(Clone, Debug)]
pub struct NewAttempt {
    pub webhook_id: i64,
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt of its delivery.
    pub attempt: u32,
    pub outcome: Attempted,
    /// Whether the endpoint was failing before it (a success then ends the streak).
    pub was_failing: bool,
}

/// Records attempts (in the caller's transaction) and the endpoints' failing streaks: a
/// success ends one; a failure when every attempt for `disable_after` has failed disables
/// the endpoint. For each attempt, whether it disabled its endpoint.
pub async fn record_attempts(
    txn: &impl ConnectionTrait,
    attempts: &[NewAttempt],
    at: DateTime<Utc>,
    disable_after: Duration,
) -> Result<Vec<bool>> {
    for chunk in attempts.chunks(crate::db::INSERT_CHUNK) {
        let rows = chunk.iter().map(|a| webhook_attempt::ActiveModel {
            webhook_id: Set(a.webhook_id),
            event_id: Set(a.event_id.clone()),
            event_type: Set(a.event_type.clone()),
            attempt: Set(a.attempt.min(i32::MAX as u32) as i32),
            status_code: Set(a.outcome.status_code.map(i32::from)),
            latency_ms: Set(a.outcome.latency_ms),
            error: Set(a.outcome.error.clone()),
            created_at: Set(at),
            ..Default::default()
        });
        webhook_attempt::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    let mut disabled = Vec::with_capacity(attempts.len());
    for a in attempts {
        disabled.push(streak(txn, a, at, disable_after).await?);
    }
    Ok(disabled)
}

/// One attempt's effect on its endpoint's failing streak; whether it disabled the endpoint.
async fn streak(
    txn: &impl ConnectionTrait,
    a: &NewAttempt,
    at: DateTime<Utc>,
    disable_after: Duration,
) -> Result<bool> {
    let endpoint = webhook::Entity::update_many().filter(webhook::Column::Id.eq(a.webhook_id));
    let Some(error) = &a.outcome.error else {
        if a.was_failing {
            endpoint
                .col_expr(
                    webhook::Column::FailingSince,
                    Expr::value(None::<DateTime<Utc>>),
                )
                .filter(webhook::Column::FailingSince.is_not_null())
                .exec(txn)
                .await?;
        }
        return Ok(false);
    };
    endpoint
        .col_expr(webhook::Column::FailingSince, Expr::value(at))
        .filter(webhook::Column::FailingSince.is_null())
        .exec(txn)
        .await?;
    let reason = format!(
        "every delivery failed for {} hours; the last: {error}",
        disable_after.num_hours()
    );
    let disabled = webhook::Entity::update_many()
        .col_expr(webhook::Column::DisabledAt, Expr::value(at))
        .col_expr(webhook::Column::DisabledReason, Expr::value(reason))
        .filter(webhook::Column::Id.eq(a.webhook_id))
        .filter(webhook::Column::DisabledAt.is_null())
        .filter(webhook::Column::FailingSince.lte(at - disable_after))
        .exec(txn)
        .await?;
    Ok(disabled.rows_affected > 0)
}

/// An endpoint's attempts, newest first.
pub async fn attempts(
    db: &impl ConnectionTrait,
    webhook_id: i64,
    paging: Paging,
) -> Result<Page<webhook_attempt::Model>> {
    let query = webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::WebhookId.eq(webhook_id))
        .order_by_desc(webhook_attempt::Column::Id);
    paging.fetch(db, query).await
}

/// Deletes attempts older than `before` (the retention sweep); how many.
pub async fn sweep_attempts(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64> {
    Ok(webhook_attempt::Entity::delete_many()
        .filter(webhook_attempt::Column::CreatedAt.lt(before))
        .exec(db)
        .await?
        .rows_affected)
}
