//! Delivery status updates: every report is kept in the message's event history; the
//! message's status only moves forward (initiated < queued < sending < sent < delivered /
//! undelivered / failed < read). A report seen before (same dedupe key) is recorded once.
//! Provider events that are not a status (a click, a spam complaint, an unknown event) are
//! kept in the history too, with the message's status unchanged.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};
use serde::{Deserialize, Serialize};

use crate::db::IN_LIST_CHUNK;
use crate::types::{Channel, MessageStatus, Provider};
use crate::{Error, Result, message, message_event};

/// Which message a report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRef {
    /// omega's id, within a business.
    Id { business_id: i64, message_id: i64 },
    /// omega's id as a provider echoed it back (SendGrid `custom_args`, Mailgun variables,
    /// Postmark metadata, SES tags). Whoever sent the email chose that value, so it counts
    /// only for a message of the provider the event came through, and, when the event
    /// carries the provider's id, of that id: one business cannot reach another's messages
    /// by naming their ids on a shared provider account.
    Omega {
        message_id: i64,
        #[serde(default)]
        provider: Option<Provider>,
        #[serde(default)]
        provider_message_id: Option<String>,
    },
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

/// Applies one report. A report about a message not recorded yet is `NotFound` (the caller
/// retries it later: a callback can overtake the send it reports on).
pub async fn apply(db: &DatabaseConnection, report: &StatusReport) -> Result<Applied> {
    apply_many(db, &[report])
        .await?
        .pop()
        .unwrap_or_else(|| Err(Error::NotFound(format!("message {:?}", report.message))))
}

/// Applies many reports in one transaction, as if one after the other in the given order;
/// one result per report. On Postgres the statements do not grow with the number of reports
/// (but for consent withdrawals).
pub async fn apply_many(
    db: &DatabaseConnection,
    reports: &[&StatusReport],
) -> Result<Vec<Result<Applied>>> {
    let txn = crate::db::begin_write(db).await?;
    crate::db::by_key_only(&txn).await?;
    let applied = apply_in(&txn, reports, Utc::now()).await?;
    txn.commit().await?;
    Ok(applied)
}

/// How the reports of one batch leave a message: its final status and what changed with it.
struct Advance {
    status: MessageStatus,
    error: Option<(Option<String>, Option<String>)>,
    delivered_at: Option<DateTime<Utc>>,
    /// The report that set the final status.
    by: usize,
}

async fn apply_in(
    db: &impl ConnectionTrait,
    reports: &[&StatusReport],
    now: DateTime<Utc>,
) -> Result<Vec<Result<Applied>>> {
    let found = find_many(db, reports).await?;
    // Each report's key in the history (None where its message is not recorded).
    let keys: Vec<Option<String>> = found
        .iter()
        .zip(reports)
        .map(|(m, r)| m.as_ref().map(|m| format!("{}:{}", m.id, r.dedupe_key)))
        .collect();
    let mut events: Vec<(&str, message_event::ActiveModel)> = (0..reports.len())
        .filter_map(|i| {
            let (m, r) = (found[i].as_ref()?, reports[i]);
            let current = m.status.parse().unwrap_or(MessageStatus::Queued);
            let mut event = crate::status_history::event_row(
                m.id,
                r.status.unwrap_or(current),
                Some((r.error_code.clone(), r.error_message.clone())),
                &r.source,
                r.occurred_at,
                now,
            );
            event.dedupe_key = Set(keys[i].clone());
            Some((keys[i].as_deref()?, event))
        })
        .collect();
    // In the order of their keys, so batches sharing a report (a job delivered twice) wait
    // for each other on the unique index instead of deadlocking.
    events.sort_by(|a, b| a.0.cmp(b.0));
    let events: Vec<message_event::ActiveModel> = events.into_iter().map(|(_, e)| e).collect();
    let mut fresh: HashSet<String> = crate::status_history::insert_new_events(db, events)
        .await?
        .into_iter()
        .collect();

    // Each report counts once, the first time its key is seen, in order.
    let mut counted = vec![false; reports.len()];
    let mut advances: BTreeMap<i64, Advance> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        let (Some(m), Some(key)) = (found[i].as_ref(), &keys[i]) else {
            continue;
        };
        if !fresh.remove(key) {
            continue;
        }
        counted[i] = true;
        if let Some(reason) = &r.opt_out {
            let channel: Channel = m.channel.parse()?;
            crate::clients::set_consent(
                db,
                m.business_id,
                m.client_id,
                channel,
                m.to_addr.as_deref(),
                false,
                r.occurred_at,
                reason,
            )
            .await?;
        }
        let Some(status) = r.status else { continue };
        let current = match advances.get(&m.id) {
            Some(a) => a.status,
            None => m.status.parse()?,
        };
        if status.rank() <= current.rank() {
            continue;
        }
        let before = advances.remove(&m.id);
        let error = if r.error_code.is_some() || r.error_message.is_some() {
            Some((r.error_code.clone(), r.error_message.clone()))
        } else {
            before.as_ref().and_then(|b| b.error.clone())
        };
        let delivered_at = if status == MessageStatus::Delivered {
            Some(r.occurred_at)
        } else {
            before.and_then(|b| b.delivered_at)
        };
        advances.insert(
            m.id,
            Advance {
                status,
                error,
                delivered_at,
                by: i,
            },
        );
    }
    let advanced = advance(db, &advances, now).await?;
    let moved: Vec<(i64, String)> = advances
        .iter()
        .filter(|(id, _)| advanced.contains(id))
        .filter_map(|(id, a)| Some((*id, found[a.by].as_ref()?.status.clone())))
        .collect();
    crate::event_log::status_updated(db, &moved, now).await?;
    Ok((0..reports.len())
        .map(|i| match &found[i] {
            None => Err(Error::NotFound(format!("message {:?}", reports[i].message))),
            Some(_) if !counted[i] => Ok(Applied::Duplicate),
            Some(m) if advanced.contains(&m.id) && advances[&m.id].by == i => Ok(Applied::Advanced),
            Some(_) => Ok(Applied::Kept),
        })
        .collect())
}

/// The statuses a message can move forward from to `status`.
fn behind(status: MessageStatus) -> Vec<&'static str> {
    MessageStatus::ALL
        .iter()
        .filter(|s| s.rank() < status.rank())
        .map(|s| s.as_str())
        .collect()
}

/// Moves messages forward. The move is decided by the database against each row as it is
/// now (another report may have moved it since it was read), so concurrent reports never
/// move a message back. Returns the ids that moved.
async fn advance(
    db: &impl ConnectionTrait,
    advances: &BTreeMap<i64, Advance>,
    now: DateTime<Utc>,
) -> Result<HashSet<i64>> {
    let mut moved = HashSet::new();
    if advances.is_empty() {
        return Ok(moved);
    }
    if crate::db::is_sqlite(db) {
        for (id, a) in advances {
            let mut update = message::Entity::update_many()
                .col_expr(message::Column::Status, Expr::value(a.status.as_str()))
                .col_expr(message::Column::UpdatedAt, Expr::value(now));
            if let Some((code, reason)) = &a.error {
                update = update
                    .col_expr(message::Column::ErrorCode, Expr::value(code.clone()))
                    .col_expr(message::Column::ErrorMessage, Expr::value(reason.clone()));
            }
            if let Some(at) = a.delivered_at {
                update = update.col_expr(message::Column::DeliveredAt, Expr::value(Some(at)));
            }
            let result = update
                .filter(message::Column::Id.eq(*id))
                .filter(message::Column::Status.is_in(behind(a.status)))
                .exec(db)
                .await?;
            if result.rows_affected > 0 {
                moved.insert(*id);
            }
        }
        return Ok(moved);
    }
    // The rank of the stored status, in SQL.
    let rank = MessageStatus::ALL
        .iter()
        .fold(String::from("CASE m.status"), |sql, s| {
            format!("{sql} WHEN '{}' THEN {}", s.as_str(), s.rank())
        })
        + " END";
    let rows: Vec<serde_json::Value> = advances
        .iter()
        .map(|(id, a)| {
            serde_json::json!({
                "id": id,
                "status": a.status.as_str(),
                "rank": a.status.rank(),
                "set_error": a.error.is_some(),
                "code": a.error.as_ref().and_then(|e| e.0.clone()),
                "reason": a.error.as_ref().and_then(|e| e.1.clone()),
                "delivered_at": a.delivered_at,
            })
        })
        .collect();
    crate::db::lock_in_order(db, "messages", advances.keys().copied()).await?;
    let sql = format!(
        "UPDATE messages m SET
            status = v.status,
            updated_at = $2,
            error_code = CASE WHEN v.set_error THEN v.code ELSE m.error_code END,
            error_message = CASE WHEN v.set_error THEN v.reason ELSE m.error_message END,
            delivered_at = COALESCE(v.delivered_at, m.delivered_at)
         FROM jsonb_to_recordset($1::jsonb)
            AS v(id bigint, status text, rank int, set_error boolean, code text, reason text, delivered_at timestamptz)
         WHERE m.id = v.id AND {rank} < v.rank
         RETURNING m.id"
    );
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            [serde_json::Value::Array(rows).into(), now.into()],
        ))
        .await?;
    for row in rows {
        moved.insert(row.try_get_by_index::<i64>(0)?);
    }
    Ok(moved)
}

/// Provider message ids compared as providers write them: with or without the angle
/// brackets of a Message-ID header.
fn same_id(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        s.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned()
    };
    bare(a) == bare(b)
}

/// The message each report is about (None where it is not recorded): one query per kind of
/// reference for the whole batch.
async fn find_many(
    db: &impl ConnectionTrait,
    reports: &[&StatusReport],
) -> Result<Vec<Option<message::Model>>> {
    let mut ids = BTreeSet::new();
    // Provider ids by provider: the unique index is on (provider, provider id).
    let mut pids: BTreeMap<Option<&str>, BTreeSet<&str>> = BTreeMap::new();
    for r in reports {
        match &r.message {
            MessageRef::Id { message_id, .. } | MessageRef::Omega { message_id, .. } => {
                ids.insert(*message_id);
            }
            MessageRef::Provider {
                provider,
                provider_message_id,
                ..
            } => {
                pids.entry(provider.map(|p| p.as_str()))
                    .or_default()
                    .insert(provider_message_id.as_str());
            }
        }
    }
    let mut rows: Vec<message::Model> = vec![];
    let ids: Vec<i64> = ids.into_iter().collect();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        rows.extend(
            message::Entity::find()
                .filter(message::Column::Id.is_in(chunk.iter().copied()))
                .all(db)
                .await?,
        );
    }
    if crate::db::is_sqlite(db) {
        for (provider, pids) in pids {
            let pids: Vec<&str> = pids.into_iter().collect();
            for chunk in pids.chunks(IN_LIST_CHUNK) {
                let mut q = message::Entity::find()
                    .filter(message::Column::ProviderMessageId.is_in(chunk.iter().copied()));
                q = match provider {
                    Some(p) => q.filter(message::Column::Provider.eq(p)),
                    None => q,
                };
                rows.extend(q.all(db).await?);
            }
        }
    } else {
        rows.extend(by_provider_ids_pg(db, &pids).await?);
    }
    let by_id: HashMap<i64, &message::Model> = rows.iter().map(|m| (m.id, m)).collect();
    let mut by_pid: HashMap<&str, Vec<&message::Model>> = HashMap::new();
    for m in &rows {
        if let Some(pid) = &m.provider_message_id {
            by_pid.entry(pid.as_str()).or_default().push(m);
        }
    }
    Ok(reports
        .iter()
        .map(|r| {
            let m = match &r.message {
                MessageRef::Id {
                    business_id,
                    message_id,
                } => by_id
                    .get(message_id)
                    .filter(|m| m.business_id == *business_id),
                MessageRef::Omega {
                    message_id,
                    provider,
                    provider_message_id,
                } => by_id.get(message_id).filter(|m| {
                    provider.is_some_and(|p| m.provider.as_deref() == Some(p.as_str()))
                        && match (provider_message_id, &m.provider_message_id) {
                            (Some(reported), Some(stored)) => same_id(reported, stored),
                            // Not known yet (the event overtook the send's settling): it
                            // waits, as a report about a message not recorded does.
                            (Some(_), None) => false,
                            (None, _) => true,
                        }
                }),
                MessageRef::Provider {
                    business_id,
                    provider,
                    provider_message_id,
                } => by_pid
                    .get(provider_message_id.as_str())
                    .into_iter()
                    .flatten()
                    .find(|m| {
                        business_id.is_none_or(|b| m.business_id == b)
                            && provider.is_none_or(|p| m.provider.as_deref() == Some(p.as_str()))
                    }),
            };
            m.map(|m| (*m).clone())
        })
        .collect())
}

/// Postgres: messages by (provider, provider id), one index probe per pair whatever the
/// planner's statistics say (a provider id is NULL until the message is sent, so statistics
/// taken before often call every id rare and every scan cheap). An id whose provider is not
/// known is looked for under every provider and under none.
async fn by_provider_ids_pg(
    db: &impl ConnectionTrait,
    pids: &BTreeMap<Option<&str>, BTreeSet<&str>>,
) -> Result<Vec<message::Model>> {
    use sea_orm::{IdenStatic, Iterable};
    let mut pairs = vec![];
    let mut without = vec![];
    for (provider, ids) in pids {
        for id in ids {
            match provider {
                Some(p) => pairs.push(serde_json::json!({"provider": p, "pid": id})),
                None => {
                    without.push(*id);
                    for p in Provider::ALL {
                        pairs.push(serde_json::json!({"provider": p.as_str(), "pid": id}));
                    }
                }
            }
        }
    }
    let columns = message::Column::iter()
        .map(|c| format!("m.\"{}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns} FROM jsonb_to_recordset($1::jsonb) AS k(provider text, pid text)
         JOIN messages m ON m.provider = k.provider AND m.provider_message_id = k.pid"
    );
    let mut rows = message::Entity::find()
        .from_raw_sql(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            sql,
            [serde_json::Value::Array(pairs).into()],
        ))
        .all(db)
        .await?;
    for chunk in without.chunks(IN_LIST_CHUNK) {
        let q = message::Entity::find()
            .filter(message::Column::Provider.is_null())
            .filter(message::Column::ProviderMessageId.is_in(chunk.iter().copied()));
        rows.extend(q.all(db).await?);
    }
    Ok(rows)
}
