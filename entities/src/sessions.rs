//! Staff sessions: opaque random tokens, stored as SHA-256 hashes with an expiry. Opaque (not
//! signed) because every use is checked against the table anyway for revocation, so a
//! signature would add key management and no saved lookup.
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::Expr,
};

use crate::keys::hash_secret;
use crate::{Error, Result, session, staff};

/// A new session for a staff member of the business; returns the row and the token (shown once).
pub async fn create(
    db: &impl ConnectionTrait,
    business_id: i64,
    staff_id: i64,
    ttl: Duration,
) -> Result<(session::Model, String)> {
    if staff::Entity::find_by_id((business_id, staff_id))
        .one(db)
        .await?
        .is_none()
    {
        return Err(Error::NotFound(format!(
            "staff member {staff_id} of business {business_id}"
        )));
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let now = Utc::now();
    let row = session::ActiveModel {
        token_hash: Set(hash_secret(&token)),
        business_id: Set(business_id),
        staff_id: Set(staff_id),
        expires_at: Set(now + ttl),
        revoked_at: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((row, token))
}

/// The session a token names, revoked or not.
pub async fn find(db: &impl ConnectionTrait, token: &str) -> Result<Option<session::Model>> {
    Ok(session::Entity::find()
        .filter(session::Column::TokenHash.eq(hash_secret(token)))
        .one(db)
        .await?)
}

fn revoke_now() -> DateTime<Utc> {
    Utc::now()
}

/// Revokes one session; returns how many were still active (0 or 1).
pub async fn revoke(db: &impl ConnectionTrait, session_id: i64) -> Result<u64> {
    let res = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(revoke_now()))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Revokes every active session of a staff member; returns how many.
pub async fn revoke_staff(
    db: &impl ConnectionTrait,
    business_id: i64,
    staff_id: i64,
) -> Result<u64> {
    let res = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(revoke_now()))
        .filter(session::Column::BusinessId.eq(business_id))
        .filter(session::Column::StaffId.eq(staff_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(Utc::now()))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
