//! The dead-letter store on Redis: a hash of dead jobs by id (`dead`), their envelopes
//! (`dead_env`) and an index by time of failure (`dead_idx`). Listing pages through the index
//! when unfiltered; replay and drain run in bounded Lua batches.
use std::collections::HashMap;

use redis::{AsyncCommands, Script};

use super::RedisQueue;
use crate::queue::{DeadJob, DeadPage, DeadSelector};
use crate::{JobType, QueueError};

/// Dead jobs replayed or drained per script call.
const DEAD_BATCH: usize = 500;

pub(super) const REPLAY: &str = r"
local n = 0
for _, id in ipairs(ARGV) do
  local env = redis.call('HGET', KEYS[2], id)
  if env then
    redis.call('XADD', KEYS[4], '*', 'e', env)
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    n = n + 1
  end
end
return n
";

pub(super) const DRAIN: &str = r"
local n = 0
for _, id in ipairs(ARGV) do
  if redis.call('HDEL', KEYS[1], id) == 1 then
    n = n + 1
  end
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
return n
";

impl RedisQueue {
    pub(super) async fn dead_page(
        &self,
        t: JobType,
        selector: &DeadSelector,
        offset: u64,
        limit: u64,
    ) -> Result<DeadPage, QueueError> {
        let keys = self.keys(t);
        let mut conn = self.conn.clone();
        let unfiltered = selector.ids.is_none()
            && selector.business_id.is_none()
            && selector.error_contains.is_none();
        if unfiltered {
            let total: u64 = conn.zcard(&keys.dead_idx).await?;
            if limit == 0 {
                return Ok(DeadPage {
                    items: Vec::new(),
                    total,
                });
            }
            let ids: Vec<String> = conn
                .zrevrange(
                    &keys.dead_idx,
                    offset as isize,
                    (offset + limit - 1) as isize,
                )
                .await?;
            let mut items = Vec::with_capacity(ids.len());
            if !ids.is_empty() {
                let raws: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(&keys.dead)
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await?;
                for raw in raws.into_iter().flatten() {
                    items.push(parse_dead(&raw)?);
                }
            }
            return Ok(DeadPage { items, total });
        }
        let matching: Vec<DeadJob> = self
            .all_dead(t)
            .await?
            .into_iter()
            .filter(|j| selector.matches(j))
            .collect();
        let total = matching.len() as u64;
        let items = matching
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        Ok(DeadPage { items, total })
    }

    pub(super) async fn matching_dead_ids(
        &self,
        t: JobType,
        selector: &DeadSelector,
    ) -> Result<Vec<String>, QueueError> {
        let keys = self.keys(t);
        let mut conn = self.conn.clone();
        if selector.business_id.is_none() && selector.error_contains.is_none() {
            if let Some(ids) = &selector.ids {
                return Ok(ids.clone());
            }
            return Ok(conn.zrevrange(&keys.dead_idx, 0, -1).await?);
        }
        Ok(self
            .all_dead(t)
            .await?
            .into_iter()
            .filter(|j| selector.matches(j))
            .map(|j| j.id)
            .collect())
    }

    async fn all_dead(&self, t: JobType) -> Result<Vec<DeadJob>, QueueError> {
        let mut conn = self.conn.clone();
        let all: HashMap<String, String> = conn.hgetall(self.keys(t).dead).await?;
        let mut jobs = Vec::with_capacity(all.len());
        for raw in all.values() {
            jobs.push(parse_dead(raw)?);
        }
        jobs.sort_by(|a, b| {
            b.last_failed_at
                .cmp(&a.last_failed_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(jobs)
    }

    pub(super) async fn run_dead_script(
        &self,
        script: &Script,
        t: JobType,
        ids: &[String],
    ) -> Result<u64, QueueError> {
        let keys = self.keys(t);
        let mut conn = self.conn.clone();
        let mut total = 0u64;
        for chunk in ids.chunks(DEAD_BATCH) {
            let n: u64 = script
                .key(&keys.dead)
                .key(&keys.dead_env)
                .key(&keys.dead_idx)
                .key(&keys.stream)
                .arg(chunk)
                .invoke_async(&mut conn)
                .await?;
            total += n;
        }
        Ok(total)
    }
}

fn parse_dead(raw: &str) -> Result<DeadJob, QueueError> {
    #[derive(serde::Deserialize)]
    struct Stored {
        id: String,
        job_type: String,
        request_id: Option<String>,
        business_id: Option<i64>,
        attempts: u32,
        last_error: String,
        first_failed_at: i64,
        last_failed_at: i64,
        payload: serde_json::Value,
    }
    let s: Stored = serde_json::from_str(raw)?;
    Ok(DeadJob {
        id: s.id,
        job_type: s.job_type,
        request_id: s.request_id,
        business_id: s.business_id,
        attempts: s.attempts,
        last_error: s.last_error,
        first_failed_at: s.first_failed_at,
        last_failed_at: s.last_failed_at,
        payload: s.payload,
    })
}
