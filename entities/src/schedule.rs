//! Messages sent later: when a `send_at` is due, a scheduled message's release to the send
//! path when its time comes, and cancelling it before then. Every function takes the clock.
use chrono::{DateTime, Duration, FixedOffset, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

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

/// Moves a scheduled message to `queued` when its time has come; false when it is no longer
/// scheduled (canceled meanwhile), and then it must not be sent.
pub async fn release(
    db: &impl ConnectionTrait,
    message_id: i64,
    now: DateTime<Utc>,
) -> Result<bool> {
    move_if_scheduled(db, message_id, MessageStatus::Queued, "schedule", now).await
}

/// Holds a queued message back until `until` (quiet hours): `scheduled` at that time, with a
/// history entry. False when it is no longer queued.
pub async fn hold(
    db: &impl ConnectionTrait,
    message_id: i64,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let moved = message::Entity::update_many()
        .col_expr(
            message::Column::Status,
            Expr::value(MessageStatus::Scheduled.as_str()),
        )
        .col_expr(message::Column::ScheduledAt, Expr::value(until))
        .col_expr(message::Column::UpdatedAt, Expr::value(now))
        .filter(message::Column::Id.eq(message_id))
        .filter(message::Column::Status.eq(MessageStatus::Queued.as_str()))
        .exec(db)
        .await?
        .rows_affected;
    if moved == 1 {
        crate::events::append_event(
            db,
            message_id,
            MessageStatus::Scheduled,
            None,
            "quiet_hours",
            now,
        )
        .await?;
    }
    Ok(moved == 1)
}

/// Moves a message to `to` only if it is still `scheduled` (the test is in the UPDATE itself,
/// so a cancel and a release of the same message cannot both happen), with a history entry.
async fn move_if_scheduled(
    db: &impl ConnectionTrait,
    message_id: i64,
    to: MessageStatus,
    source: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let moved = message::Entity::update_many()
        .col_expr(message::Column::Status, Expr::value(to.as_str()))
        .col_expr(message::Column::UpdatedAt, Expr::value(now))
        .filter(message::Column::Id.eq(message_id))
        .filter(message::Column::Status.eq(MessageStatus::Scheduled.as_str()))
        .exec(db)
        .await?
        .rows_affected;
    if moved == 1 {
        crate::events::append_event(db, message_id, to, None, source, now).await?;
    }
    Ok(moved == 1)
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
    db: &impl ConnectionTrait,
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
    db: &impl ConnectionTrait,
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
async fn cancel_ids(
    db: &impl ConnectionTrait,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let mut canceled = Vec::new();
    for &id in ids {
        if move_if_scheduled(db, id, MessageStatus::Canceled, "api", now).await? {
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
