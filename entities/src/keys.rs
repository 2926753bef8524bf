//! API keys: random secrets shown once, stored as SHA-256 hashes. A key is
//! `omk_<prefix><secret>`; the 12-character prefix finds the row, the hash proves the key.
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use sha2::{Digest, Sha256};

use crate::{Error, Result, api_key};

pub const KEY_MARK: &str = "omk_";
const PREFIX_LEN: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Platform,
    Business(i64),
}

impl KeyKind {
    pub fn of(model: &api_key::Model) -> Result<KeyKind> {
        match (model.kind.as_str(), model.business_id) {
            ("platform", _) => Ok(KeyKind::Platform),
            ("business", Some(id)) => Ok(KeyKind::Business(id)),
            _ => Err(Error::Corrupt(format!(
                "api key {} has kind {}",
                model.id, model.kind
            ))),
        }
    }
}

pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The lookup prefix of a presented key, or None when it is not shaped like one of ours.
pub fn prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_MARK)?;
    (rest.len() > PREFIX_LEN && rest.is_ascii()).then(|| &rest[..PREFIX_LEN])
}

/// Stores a key (given, or generated from `random` alphanumerics) and returns the row and the
/// plain key, which is never stored.
pub async fn create(
    db: &impl ConnectionTrait,
    kind: KeyKind,
    name: &str,
    plain: String,
) -> Result<(api_key::Model, String)> {
    let prefix = prefix_of(&plain)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "an API key must look like {KEY_MARK}<at least 13 characters>"
            ))
        })?
        .to_owned();
    let (kind_text, business_id) = match kind {
        KeyKind::Platform => ("platform", None),
        KeyKind::Business(id) => ("business", Some(id)),
    };
    let row = api_key::ActiveModel {
        prefix: Set(prefix),
        key_hash: Set(hash_secret(&plain)),
        kind: Set(kind_text.into()),
        business_id: Set(business_id),
        name: Set(name.into()),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((row, plain))
}

/// Makes sure a platform key with exactly this text exists (for compose and tests).
pub async fn ensure_platform(db: &impl ConnectionTrait, plain: &str) -> Result<api_key::Model> {
    let prefix = prefix_of(plain).ok_or_else(|| {
        Error::Invalid(format!(
            "the bootstrap key must look like {KEY_MARK}<at least 13 characters>"
        ))
    })?;
    if let Some(existing) = find_by_prefix(db, prefix).await? {
        if existing.key_hash == hash_secret(plain) && existing.kind == "platform" {
            return Ok(existing);
        }
        return Err(Error::Conflict(
            "another key already uses the bootstrap key's prefix".into(),
        ));
    }
    Ok(create(db, KeyKind::Platform, "bootstrap", plain.to_owned())
        .await?
        .0)
}

pub async fn find_by_prefix(
    db: &impl ConnectionTrait,
    prefix: &str,
) -> Result<Option<api_key::Model>> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::Prefix.eq(prefix))
        .one(db)
        .await?)
}

pub async fn list_for_business(
    db: &impl ConnectionTrait,
    business_id: i64,
) -> Result<Vec<api_key::Model>> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::BusinessId.eq(business_id))
        .order_by_asc(api_key::Column::Id)
        .all(db)
        .await?)
}

pub async fn revoke(db: &impl ConnectionTrait, id: i64) -> Result<api_key::Model> {
    let row = api_key::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("API key {id}")))?;
    let mut active: api_key::ActiveModel = row.into();
    active.revoked_at = Set(Some(Utc::now()));
    Ok(active.update(db).await?)
}

pub async fn touch(db: &impl ConnectionTrait, id: i64) -> Result<()> {
    api_key::Entity::update_many()
        .col_expr(
            api_key::Column::LastUsedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(api_key::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// A new random key: `omk_` and 40 alphanumerics (about 238 bits).
pub fn generate() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    let secret: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{KEY_MARK}{secret}")
}
