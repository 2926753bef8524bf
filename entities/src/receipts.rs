//! Webhook receipts: one row per provider delivery, so that a provider's retry of the same
//! delivery is dropped at the door, and deliveries no business owns (orphans) stay visible to
//! operators instead of being retried by the provider forever.
use chrono::Utc;
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set, TryInsertResult, sea_query::OnConflict,
};

use crate::{Result, webhook_receipt};

/// Stores the receipt; false when this delivery was received before.
pub async fn record(
    db: &impl ConnectionTrait,
    provider: &str,
    dedupe_key: &str,
    business_id: Option<i64>,
    payload: serde_json::Value,
) -> Result<bool> {
    let inserted = webhook_receipt::Entity::insert(webhook_receipt::ActiveModel {
        id: NotSet,
        provider: Set(provider.to_owned()),
        dedupe_key: Set(dedupe_key.to_owned()),
        business_id: Set(business_id),
        orphan: Set(business_id.is_none()),
        payload: Set(payload),
        received_at: Set(Utc::now()),
    })
    // Any unique key (provider + dedupe key): no conflict target.
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .try_insert()
    .exec_without_returning(db)
    .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
}

/// Removes a receipt whose work could not be queued, so the provider's retry is taken.
pub async fn forget(db: &impl ConnectionTrait, provider: &str, dedupe_key: &str) -> Result<()> {
    webhook_receipt::Entity::delete_many()
        .filter(webhook_receipt::Column::Provider.eq(provider))
        .filter(webhook_receipt::Column::DedupeKey.eq(dedupe_key))
        .exec(db)
        .await?;
    Ok(())
}

/// Orphan receipts, newest first, and how many there are.
pub async fn orphans(
    db: &impl ConnectionTrait,
    page: u64,
    page_size: u64,
) -> Result<(Vec<webhook_receipt::Model>, u64)> {
    let q = webhook_receipt::Entity::find()
        .filter(webhook_receipt::Column::Orphan.eq(true))
        .order_by_desc(webhook_receipt::Column::Id);
    let pages = q.paginate(db, page_size);
    let total = pages.num_items().await?;
    Ok((pages.fetch_page(page.saturating_sub(1)).await?, total))
}
