//! Messages sent later: when a `send_at` is due, a scheduled message's release to the send
//! path when its time comes, and cancelling it before then. Every function takes the clock.
use chrono::{DateTime, Duration, FixedOffset, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use crate::types::MessageStatus;
use crate::{Result, message};

/// The furthest ahead a message may be scheduled (Twilio's own limit).
pub const MAX_AHEAD: Duration = Duration::days(35);
/// A `send_at` this close (or past) is sent at once.
pub const NOW_WITHIN: Duration = Duration::seconds(1);

/// When a message with this `send_at` goes out, as of `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Now,
    At(DateTime<Utc>),
    /// Beyond `MAX_AHEAD`: refused.
    TooFar,
}

pub fn due(send_at: Option<DateTime<FixedOffset>>, now: DateTime<Utc>) -> Due {
    let Some(at) = send_at.map(|t| t.with_timezone(&Utc)) else {
        return Due::Now;
    };
    if at <= now + NOW_WITHIN {
        Due::Now
    } else if at > now + MAX_AHEAD {
        Due::TooFar
    } else {
        Due::At(at)
    }
}

/// Moves scheduled messages to `queued` when their time has come, in one transaction (the
/// group-committed step of due sends): one answer per id, in order; false for a message no
/// longer scheduled (canceled meanwhile), which must not be sent. An id given twice is
/// released once (the first answer is true), so a job delivered twice is sent once.
pub async fn release_many(
    db: &DatabaseConnection,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<Vec<bool>> {
    let txn = crate::db::begin_write(db).await?;
    let mut released = std::collections::HashSet::new();
    for chunk in ids.chunks(crate::db::IN_LIST_CHUNK) {
        let rows = message::Entity::update_many()
            .col_expr(
                message::Column::Status,
                Expr::value(MessageStatus::Queued.as_str()),
            )
            .col_expr(message::Column::UpdatedAt, Expr::value(now))
            .filter(message::Column::Id.is_in(chunk.iter().copied()))
            .filter(message::Column::Status.eq(MessageStatus::Scheduled.as_str()))
            .exec_with_returning(&txn)
            .await?;
        released.extend(rows.into_iter().map(|m| m.id));
    }
    let mut moved: Vec<i64> = released.iter().copied().collect();
    moved.sort_unstable();
    let history = moved
        .iter()
        .map(|&id| {
            crate::status_history::event_row(id, MessageStatus::Queued, None, "schedule", now, now)
        })
        .collect();
    crate::status_history::insert_events(&txn, history).await?;
    let from = MessageStatus::Scheduled.as_str();
    let moved: Vec<(i64, String)> = moved.into_iter().map(|id| (id, from.to_owned())).collect();
    crate::event_log::status_updated(&txn, &moved, now).await?;
    txn.commit().await?;
    Ok(ids.iter().map(|id| released.remove(id)).collect())
}

/// Holds a queued message back until `until` (quiet hours): `scheduled` at that time, with a
/// history entry. False when it is no longer queued.
pub async fn hold(
    db: &DatabaseConnection,
    message_id: i64,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let hold = Move {
        from: MessageStatus::Queued,
        to: MessageStatus::Scheduled,
        scheduled_at: Some(until),
        source: "quiet_hours",
    };
    hold.apply(db, message_id, now).await
}

/// A status change made only from one status: the test is in the UPDATE itself, so of a
/// cancel and a release (or a hold) of the same message only one can happen.
struct Move {
    from: MessageStatus,
    to: MessageStatus,
    /// Set as the message's `scheduled_at` when given.
    scheduled_at: Option<DateTime<Utc>>,
    /// Who made it, for the history entry.
    source: &'static str,
}

impl Move {
    /// Applies the move, its history entry and its event in one transaction.
    async fn apply(
        &self,
        db: &DatabaseConnection,
        message_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let txn = crate::db::begin_write(db).await?;
        let db = &txn;
        let mut update = message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(self.to.as_str()))
            .col_expr(message::Column::UpdatedAt, Expr::value(now));
        if let Some(at) = self.scheduled_at {
            update = update.col_expr(message::Column::ScheduledAt, Expr::value(at));
        }
        let moved = update
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::Status.eq(self.from.as_str()))
            .exec(db)
            .await?
            .rows_affected;
        if moved == 1 {
            crate::status_history::append_event(db, message_id, self.to, None, self.source, now)
                .await?;
            let from = self.from.as_str().to_owned();
            crate::event_log::status_updated(db, &[(message_id, from)], now).await?;
        }
        txn.commit().await?;
        Ok(moved == 1)
    }
}

/// What a cancel found.
#[derive(Debug)]
pub enum Cancel {
    /// It was scheduled, and is now canceled.
    Canceled(message::Model),
    /// It is on its way or done: too late.
    TooLate(message::Model),
    NotFound,
}

/// Cancels one scheduled message of the business (by omega's id).
pub async fn cancel(
    db: &DatabaseConnection,
    business_id: i64,
    message_id: i64,
    now: DateTime<Utc>,
) -> Result<Cancel> {
    let Some(found) = message::Entity::find_by_id(message_id)
        .filter(message::Column::BusinessId.eq(business_id))
        .one(db)
        .await?
    else {
        return Ok(Cancel::NotFound);
    };
    if !cancel_ids(db, &[message_id], now)
        .await?
        .contains(&message_id)
    {
        return Ok(Cancel::TooLate(found));
    }
    let canceled = message::Entity::find_by_id(message_id)
        .one(db)
        .await?
        .unwrap_or(found);
    Ok(Cancel::Canceled(canceled))
}

/// What cancelling a request's messages did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCancel {
    pub canceled: u64,
    /// Already on their way or done (or canceled before).
    pub too_late: u64,
}

/// Cancels every still-scheduled message of one of the business's requests; None when the
/// request has no recorded message.
pub async fn cancel_request(
    db: &DatabaseConnection,
    business_id: i64,
    request_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<RequestCancel>> {
    let ids: Vec<i64> = message::Entity::find()
        .filter(message::Column::BusinessId.eq(business_id))
        .filter(message::Column::RequestId.eq(request_id))
        .order_by_asc(message::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    if ids.is_empty() {
        return Ok(None);
    }
    let mut canceled = 0;
    for chunk in ids.chunks(500) {
        canceled += cancel_ids(db, chunk, now).await?.len() as u64;
    }
    Ok(Some(RequestCancel {
        canceled,
        too_late: ids.len() as u64 - canceled,
    }))
}

/// Cancels those of the messages that are still scheduled; the ids canceled.
async fn cancel_ids(db: &DatabaseConnection, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>> {
    let mut canceled = Vec::new();
    for &id in ids {
        let cancel = Move {
            from: MessageStatus::Scheduled,
            to: MessageStatus::Canceled,
            scheduled_at: None,
            source: "api",
        };
        if cancel.apply(db, id, now).await? {
            canceled.push(id);
        }
    }
    Ok(canceled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn send_at_is_now_later_or_too_far() {
        let now = Utc.with_ymd_and_hms(2026, 3, 8, 6, 30, 0).unwrap();
        assert_eq!(due(None, now), Due::Now);
        assert_eq!(
            due(Some(at("2026-03-08T01:00:00-05:00")), now),
            Due::Now,
            "past"
        );
        assert_eq!(
            due(Some(at("2026-03-08T06:30:01Z")), now),
            Due::Now,
            "within a second"
        );
        assert_eq!(
            due(Some(at("2026-03-08T02:30:00-05:00")), now),
            Due::At(Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap()),
            "an offset is honoured"
        );
        assert_eq!(
            due(Some(at("2026-04-12T06:30:00Z")), now),
            Due::At(Utc.with_ymd_and_hms(2026, 4, 12, 6, 30, 0).unwrap()),
            "35 days ahead exactly"
        );
        assert_eq!(due(Some(at("2026-04-12T06:30:01Z")), now), Due::TooFar);
    }
}
