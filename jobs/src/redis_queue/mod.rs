//! The scaled deployment's queue: one Redis Stream per job type, read through a consumer
//! group.
//!
//! - push: XADD. fetch: XREADGROUP with BLOCK, so an idle worker sees a new job at once.
//! - A delivery stays in the group's pending list until settled; XAUTOCLAIM hands deliveries
//!   idle past the visibility timeout (their worker died) to a live consumer.
//! - Settling is one MULTI: XACK + XDEL, and for a retry (or a job not due yet) a ZADD to the
//!   type's delayed set,
//!   for a burial an HSET into its dead-letter hash. So a job is always in exactly one place.
//! - Due retries move from the delayed set back to the stream in bounded batches (a Lua
//!   script with a LIMIT), never all at once, so any backlog drains.
//!
//! The dead-letter hash's listing, replay and drain are in [`dead`].
mod dead;
mod keys;
mod scripts;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Script, Value};

use crate::queue::{DeadJob, DeadPage, DeadSelector, JobQueue, QueueStats};
use crate::{Delivery, Envelope, JobType, QueueError, now_ms};
use keys::Keys;
use scripts::{PROMOTE, PUSH};

const GROUP: &str = "omega";
/// Due retries moved to the stream per fetch.
const PROMOTE_BATCH: usize = 1000;

pub struct RedisQueue {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    visibility: Duration,
    /// One connection per consumer for blocking reads, so a BLOCK never stalls other commands.
    readers: tokio::sync::Mutex<HashMap<String, MultiplexedConnection>>,
    last_reclaim: Mutex<HashMap<JobType, Instant>>,
    promote: Script,
    push: Script,
    replay: Script,
    drain: Script,
}

impl RedisQueue {
    /// Connects and creates the consumer groups. `prefix` namespaces every key (tests use a
    /// fresh one each).
    pub async fn connect(
        url: &str,
        prefix: &str,
        visibility: Duration,
    ) -> Result<Self, QueueError> {
        let client = crate::redis_client(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2);
        let conn = client.get_connection_manager_with_config(config).await?;
        let queue = RedisQueue {
            client,
            conn,
            prefix: prefix.to_owned(),
            visibility,
            readers: Default::default(),
            last_reclaim: Default::default(),
            promote: Script::new(PROMOTE),
            push: Script::new(PUSH),
            replay: Script::new(dead::REPLAY),
            drain: Script::new(dead::DRAIN),
        };
        queue.ensure_groups().await?;
        Ok(queue)
    }

    fn keys(&self, t: JobType) -> Keys {
        Keys::of(&self.prefix, t)
    }

    fn note_key(&self, key: &str) -> String {
        format!("{{{}:notes}}:{key}", self.prefix)
    }

    async fn ensure_groups(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        for t in JobType::ALL {
            // From id 0: entries pushed before the group existed are read too.
            let res: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys(*t).stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match res {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn reader(&self, consumer: &str) -> Result<MultiplexedConnection, QueueError> {
        let mut readers = self.readers.lock().await;
        if let Some(conn) = readers.get(consumer) {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(None);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        readers.insert(consumer.to_owned(), conn.clone());
        Ok(conn)
    }

    fn reclaim_due(&self, t: JobType) -> bool {
        let every = (self.visibility / 4).max(Duration::from_millis(200));
        let mut last = self.last_reclaim.lock().expect("reclaim clock poisoned");
        let now = Instant::now();
        match last.get(&t) {
            Some(at) if now.duration_since(*at) < every => false,
            _ => {
                last.insert(t, now);
                true
            }
        }
    }

    /// Decodes stream entries; an entry that is not a valid envelope is buried as it is.
    async fn decode(
        &self,
        t: JobType,
        entries: Vec<StreamId>,
        reclaimed: bool,
    ) -> Result<Vec<Delivery>, QueueError> {
        let keys = self.keys(t);
        let mut conn = self.conn.clone();
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let raw: Option<String> = entry.get("e");
            let parsed = raw.as_deref().map(serde_json::from_str::<Envelope>);
            match parsed {
                Some(Ok(envelope)) => {
                    let reclaims: u32 = if reclaimed {
                        conn.hincr(&keys.claims, &entry.id, 1).await?
                    } else {
                        0
                    };
                    out.push(Delivery {
                        attempt: envelope.attempt + 1 + reclaims,
                        envelope,
                        receipt: entry.id,
                    });
                }
                other => {
                    let error = match other {
                        Some(Err(e)) => format!("undecodable job envelope: {e}"),
                        _ => "stream entry without an envelope".to_owned(),
                    };
                    tracing::error!(job_type = %t, entry = %entry.id, %error, "burying a malformed queue entry");
                    let now = now_ms();
                    let id = format!("malformed-{}", entry.id);
                    let dead = DeadJob {
                        id: id.clone(),
                        job_type: t.as_str().into(),
                        request_id: None,
                        business_id: None,
                        attempts: 0,
                        last_error: error,
                        first_failed_at: now,
                        last_failed_at: now,
                        payload: serde_json::Value::String(raw.unwrap_or_default()),
                    };
                    redis::pipe()
                        .atomic()
                        .hset(&keys.dead, &id, serde_json::to_string(&dead)?)
                        .zadd(&keys.dead_idx, &id, now)
                        .xack(&keys.stream, GROUP, &[&entry.id])
                        .xdel(&keys.stream, &[&entry.id])
                        .exec_async(&mut conn)
                        .await?;
                }
            }
        }
        Ok(out)
    }

    async fn settle(
        &self,
        d: &Delivery,
        then: impl FnOnce(&mut redis::Pipeline, &Keys),
    ) -> Result<(), QueueError> {
        let keys = self.keys(d.envelope.job_type);
        let mut pipe = redis::pipe();
        pipe.atomic();
        then(&mut pipe, &keys);
        pipe.xack(&keys.stream, GROUP, &[&d.receipt])
            .xdel(&keys.stream, &[&d.receipt])
            .hdel(&keys.claims, &d.receipt);
        pipe.exec_async(&mut self.conn.clone()).await?;
        Ok(())
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn push(&self, jobs: &[Envelope]) -> Result<(), QueueError> {
        self.push_by(jobs, i64::MAX).await
    }

    /// One script: all the XADDs or none, and none once the deadline has passed by Redis's
    /// clock (so a push that waited on a paused Redis is dropped, not applied late).
    async fn push_by(&self, jobs: &[Envelope], deadline_ms: i64) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut call = self.push.prepare_invoke();
        call.arg(deadline_ms);
        for job in jobs {
            call.key(self.keys(job.job_type).stream)
                .arg(serde_json::to_string(job)?);
        }
        let applied: i64 = call.invoke_async(&mut self.conn.clone()).await?;
        if applied == 1 {
            Ok(())
        } else {
            Err(QueueError::Protocol(
                "the push reached Redis after its deadline and was not applied".into(),
            ))
        }
    }

    async fn fetch(
        &self,
        t: JobType,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let keys = self.keys(t);
        let mut conn = self.conn.clone();
        let now = now_ms();
        let (_moved, next_due): (u64, i64) = self
            .promote
            .key(&keys.delayed)
            .key(&keys.stream)
            .arg(now)
            .arg(PROMOTE_BATCH)
            .invoke_async(&mut conn)
            .await?;
        // Do not block past the next retry's due time, so retries run on schedule.
        let wait = if next_due >= 0 {
            wait.min(Duration::from_millis((next_due - now).max(1) as u64))
        } else {
            wait
        };

        if self.reclaim_due(t) {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&keys.stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(self.visibility.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await?;
            for gone in &reply.deleted_ids {
                let _: () = conn.hdel(&keys.claims, gone).await?;
            }
            if !reply.claimed.is_empty() {
                tracing::warn!(job_type = %t, count = reply.claimed.len(), "took over deliveries abandoned by another worker");
                return self.decode(t, reply.claimed, true).await;
            }
        }

        let mut reader = self.reader(consumer).await?;
        let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&keys.stream)
            .arg(">")
            .query_async(&mut reader)
            .await;
        let reply = match read {
            Ok(reply) => reply,
            Err(e) => {
                // Drop a broken reader so the next fetch opens a new one; recreate groups that
                // vanished with their stream.
                self.readers.lock().await.remove(consumer);
                if e.code() == Some("NOGROUP") {
                    self.ensure_groups().await?;
                    return Ok(Vec::new());
                }
                return Err(e.into());
            }
        };
        let entries = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        self.decode(t, entries, false).await
    }

    async fn ack(&self, d: &Delivery) -> Result<(), QueueError> {
        self.settle(d, |pipe, keys| {
            pipe.incr(&keys.done, 1).ignore();
        })
        .await
    }

    async fn retry(&self, d: &Delivery, delay: Duration, error: &str) -> Result<(), QueueError> {
        let mut next = d.envelope.clone();
        next.attempt = d.attempt;
        next.last_error = Some(error.to_owned());
        next.first_failed_at = next.first_failed_at.or(Some(now_ms()));
        let due = now_ms() + delay.as_millis() as i64;
        let encoded = serde_json::to_string(&next)?;
        self.settle(d, |pipe, keys| {
            pipe.zadd(&keys.delayed, encoded, due).ignore();
        })
        .await
    }

    async fn defer(&self, d: &Delivery, until_ms: i64) -> Result<(), QueueError> {
        let mut next = d.envelope.clone();
        // This delivery was not an attempt.
        next.attempt = d.attempt.saturating_sub(1);
        let encoded = serde_json::to_string(&next)?;
        self.settle(d, |pipe, keys| {
            pipe.zadd(&keys.delayed, encoded, until_ms).ignore();
        })
        .await
    }

    async fn bury(&self, d: &Delivery, error: &str) -> Result<(), QueueError> {
        let now = now_ms();
        let first_failed_at = d.envelope.first_failed_at.unwrap_or(now);
        let dead = DeadJob {
            id: d.envelope.id.clone(),
            job_type: d.envelope.job_type.as_str().into(),
            request_id: d.envelope.request_id.clone(),
            business_id: d.envelope.business_id,
            attempts: d.attempt,
            last_error: error.to_owned(),
            first_failed_at,
            last_failed_at: now,
            payload: d.envelope.payload_value(),
        };
        let mut fresh = d.envelope.clone();
        fresh.attempt = 0;
        fresh.last_error = None;
        fresh.first_failed_at = None;
        let (dead, fresh) = (
            serde_json::to_string(&dead)?,
            serde_json::to_string(&fresh)?,
        );
        self.settle(d, |pipe, keys| {
            pipe.hset(&keys.dead, &d.envelope.id, dead)
                .ignore()
                .hset(&keys.dead_env, &d.envelope.id, fresh)
                .ignore()
                .zadd(&keys.dead_idx, &d.envelope.id, now)
                .ignore();
        })
        .await
    }

    async fn release(&self, d: &Delivery) -> Result<(), QueueError> {
        let encoded = serde_json::to_string(&d.envelope)?;
        self.settle(d, |pipe, keys| {
            pipe.xadd(&keys.stream, "*", &[("e", encoded)]).ignore();
        })
        .await
    }

    async fn keep_alive(&self, d: &Delivery, consumer: &str) -> Result<(), QueueError> {
        let keys = self.keys(d.envelope.job_type);
        let _: Value = redis::cmd("XCLAIM")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(&d.receipt)
            .arg("JUSTID")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        for t in JobType::ALL {
            let keys = self.keys(*t);
            let (len, pending, retrying, dead, done): (u64, Value, u64, u64, Option<u64>) =
                redis::pipe()
                    .xlen(&keys.stream)
                    .cmd("XPENDING")
                    .arg(&keys.stream)
                    .arg(GROUP)
                    .zcard(&keys.delayed)
                    .hlen(&keys.dead)
                    .get(&keys.done)
                    .query_async(&mut conn)
                    .await?;
            let running = match pending {
                Value::Array(items) => match items.first() {
                    Some(Value::Int(n)) => *n as u64,
                    _ => 0,
                },
                _ => 0,
            };
            out.push(QueueStats {
                job_type: t.as_str().into(),
                pending: len.saturating_sub(running),
                running,
                retrying,
                dead,
                done: done.unwrap_or(0),
            });
        }
        Ok(out)
    }

    async fn list_dead(
        &self,
        t: JobType,
        selector: &DeadSelector,
        offset: u64,
        limit: u64,
    ) -> Result<DeadPage, QueueError> {
        self.dead_page(t, selector, offset, limit).await
    }

    async fn dead_ids(
        &self,
        t: JobType,
        selector: &DeadSelector,
    ) -> Result<Vec<String>, QueueError> {
        self.matching_dead_ids(t, selector).await
    }

    async fn replay_dead(&self, t: JobType, selector: &DeadSelector) -> Result<u64, QueueError> {
        let ids = self.dead_ids(t, selector).await?;
        self.run_dead_script(&self.replay, t, &ids).await
    }

    async fn drain_dead(&self, t: JobType, selector: &DeadSelector) -> Result<u64, QueueError> {
        let ids = self.dead_ids(t, selector).await?;
        self.run_dead_script(&self.drain, t, &ids).await
    }

    async fn sweep_dead(&self, before_ms: i64) -> Result<u64, QueueError> {
        let mut swept = 0;
        for &t in JobType::ALL {
            let ids: Vec<String> = self
                .conn
                .clone()
                .zrangebyscore(self.keys(t).dead_idx, "-inf", format!("({before_ms}"))
                .await?;
            for chunk in ids.chunks(1000) {
                swept += self.run_dead_script(&self.drain, t, chunk).await?;
            }
        }
        Ok(swept)
    }

    async fn note(&self, key: &str, value: &str) -> Result<(), QueueError> {
        // Kept a day at most: a note outlives its job only when the job's worker died
        // before forgetting it, and a re-delivery comes within the visibility timeout.
        let () = self
            .conn
            .clone()
            .set_ex(self.note_key(key), value, 86_400)
            .await?;
        Ok(())
    }

    async fn noted(&self, key: &str) -> Result<Option<String>, QueueError> {
        Ok(self.conn.clone().get(self.note_key(key)).await?)
    }

    async fn forget_notes(&self, keys: &[String]) -> Result<(), QueueError> {
        if keys.is_empty() {
            return Ok(());
        }
        // One DEL: the notes share a hash tag, so their keys are in one slot on a cluster too.
        let keys: Vec<String> = keys.iter().map(|k| self.note_key(k)).collect();
        let _: i64 = self.conn.clone().del(keys).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility
    }
}
