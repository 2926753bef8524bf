//! Idempotency-Key records. A key is first reserved (status 0, "in progress"), then completed
//! with the response; a repeat within the window replays that response.
use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr};

use crate::{Result, idempotency_record as rec};

/// How long a key is remembered.
pub const WINDOW_HOURS: i64 = 24;
/// How long a reservation may stay "in progress" before it is taken to be abandoned (its
/// request was cut off by the deadline, or its process died) and the key can be used again.
/// Far longer than any request may run, and than the completion's retries take.
pub const ABANDONED_AFTER: Duration = Duration::minutes(5);

pub enum Reservation {
    /// The key is new: go on, then `complete` (or `release` on failure).
    Reserved,
    /// The key was used before with this body and finished: replay its response.
    Replay { status_code: u16, body: String },
    /// The key was used before with another body.
    Mismatch,
    /// The first request with this key is still being handled.
    InProgress,
}

pub async fn reserve(
    db: &impl ConnectionTrait,
    scope: &str,
    key: &str,
    request_hash: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Reservation> {
    // A record past the window no longer counts: forget it so the key can be used afresh.
    rec::Entity::delete_many()
        .filter(rec::Column::Scope.eq(scope))
        .filter(rec::Column::Key.eq(key))
        .filter(rec::Column::CreatedAt.lt(now - Duration::hours(WINDOW_HOURS)))
        .exec(db)
        .await?;
    let inserted = rec::Entity::insert(rec::ActiveModel {
        scope: Set(scope.into()),
        key: Set(key.into()),
        request_hash: Set(request_hash.into()),
        status_code: Set(0),
        response_body: Set(String::new()),
        created_at: Set(now),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(db)
    .await?;
    if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        return Ok(Reservation::Reserved);
    }
    let Some(existing) = rec::Entity::find_by_id((scope.to_owned(), key.to_owned()))
        .one(db)
        .await?
    else {
        // Deleted between our insert and read (expired and swept): treat as a fresh key.
        return Box::pin(reserve(db, scope, key, request_hash, now)).await;
    };
    if existing.status_code == 0 && existing.created_at < now - ABANDONED_AFTER {
        // Abandoned: take it over, unless another repeat took it first.
        let taken = rec::Entity::update_many()
            .col_expr(rec::Column::RequestHash, Expr::value(request_hash))
            .col_expr(rec::Column::CreatedAt, Expr::value(now))
            .filter(rec::Column::Scope.eq(scope))
            .filter(rec::Column::Key.eq(key))
            .filter(rec::Column::StatusCode.eq(0))
            .filter(rec::Column::CreatedAt.eq(existing.created_at))
            .exec(db)
            .await?;
        if taken.rows_affected == 1 {
            return Ok(Reservation::Reserved);
        }
        return Ok(Reservation::InProgress);
    }
    Ok(if existing.request_hash != request_hash {
        Reservation::Mismatch
    } else if existing.status_code == 0 {
        Reservation::InProgress
    } else {
        Reservation::Replay {
            status_code: existing.status_code as u16,
            body: existing.response_body,
        }
    })
}

pub async fn complete(
    db: &impl ConnectionTrait,
    scope: &str,
    key: &str,
    status_code: u16,
    body: &str,
) -> Result<()> {
    rec::Entity::update_many()
        .col_expr(rec::Column::StatusCode, Expr::value(status_code as i32))
        .col_expr(rec::Column::ResponseBody, Expr::value(body))
        .filter(rec::Column::Scope.eq(scope))
        .filter(rec::Column::Key.eq(key))
        .exec(db)
        .await?;
    Ok(())
}

/// Forgets a reservation whose request was not accepted, so the client can retry with the key.
pub async fn release(db: &impl ConnectionTrait, scope: &str, key: &str) -> Result<()> {
    rec::Entity::delete_many()
        .filter(rec::Column::Scope.eq(scope))
        .filter(rec::Column::Key.eq(key))
        .filter(rec::Column::StatusCode.eq(0))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes records past the window as of `now`; returns how many.
pub async fn sweep(db: &impl ConnectionTrait, now: chrono::DateTime<Utc>) -> Result<u64> {
    let res = rec::Entity::delete_many()
        .filter(rec::Column::CreatedAt.lt(now - Duration::hours(WINDOW_HOURS)))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
