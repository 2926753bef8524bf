//! The embedded deployment's queue: a table in the service's own database (SQLite, or
//! Postgres when no Redis is configured).
//!
//! A row is `ready` (due at `run_at`), `running` (locked by a consumer until `locked_until`)
//! or `dead`; an acked job's row is deleted. Claiming is one UPDATE … RETURNING, so two
//! consumers never get the same row; a `running` row whose lock expired (its worker died) is
//! claimed again. Pushes in this process wake idle consumers at once; others are seen
//! within the poll interval.
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use tokio::sync::Notify;

mod group;

use group::{Group, Write};

use crate::queue::{DeadJob, DeadPage, DeadSelector, JobQueue, QueueStats};
use crate::{Delivery, Envelope, JobType, QueueError, now_ms};

/// How often an idle consumer looks for jobs that no in-process push announced.
const POLL: Duration = Duration::from_millis(250);
const ID_CHUNK: usize = 500;

pub struct SqlQueue {
    db: DatabaseConnection,
    visibility: Duration,
    notify: Arc<Notify>,
    group: OnceLock<Group>,
}

/// A statement written with `?` placeholders, numbered for Postgres.
fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

impl SqlQueue {
    pub fn new(db: DatabaseConnection, visibility: Duration) -> Self {
        SqlQueue {
            db,
            visibility,
            notify: Arc::new(Notify::new()),
            group: OnceLock::new(),
        }
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        statement(self.backend(), sql, values)
    }

    /// The group-committed writes, started with the first of them (inside the runtime).
    fn group(&self) -> &Group {
        self.group.get_or_init(|| Group::start(self.db.clone()))
    }

    async fn exec(&self, sql: &str, values: Vec<Value>) -> Result<u64, QueueError> {
        Ok(self
            .db
            .execute_raw(self.stmt(sql, values))
            .await?
            .rows_affected())
    }

    async fn claim(
        &self,
        t: JobType,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let now = now_ms();
        let (job_type, max) = (Value::from(t.as_str()), Value::from(max as i64));
        let (candidates, values) = if self.backend() == DbBackend::Postgres {
            (
                "SELECT id FROM omega_jobs WHERE job_type = ? \
                   AND ((state = 'ready' AND run_at <= ?) OR (state = 'running' AND locked_until < ?)) \
                   ORDER BY run_at LIMIT ? FOR UPDATE SKIP LOCKED",
                vec![job_type, now.into(), now.into(), max],
            )
        } else {
            // SQLite cannot take the two states of that OR from the index in `run_at`
            // order: it read and sorted every job of the type, under the write lock, so a
            // claim cost as much as the backlog was long. Each state in index order, then
            // merged.
            (
                "SELECT id FROM omega_jobs WHERE id IN ( \
                   SELECT id FROM (SELECT id FROM omega_jobs WHERE job_type = ? AND state = 'ready' \
                     AND run_at <= ? ORDER BY run_at LIMIT ?) \
                   UNION ALL \
                   SELECT id FROM (SELECT id FROM omega_jobs WHERE job_type = ? AND state = 'running' \
                     AND locked_until < ? ORDER BY run_at LIMIT ?)) \
                 ORDER BY run_at LIMIT ?",
                vec![
                    job_type.clone(),
                    now.into(),
                    max.clone(),
                    job_type,
                    now.into(),
                    max.clone(),
                    max,
                ],
            )
        };
        let sql = format!(
            "UPDATE omega_jobs SET state = 'running', attempts = attempts + 1, locked_by = ?, locked_until = ? \
             WHERE id IN ({candidates}) \
             RETURNING id, payload, attempts"
        );
        let lease = vec![
            Value::from(consumer),
            (now + self.visibility.as_millis() as i64).into(),
        ];
        let rows = self
            .db
            .query_all_raw(self.stmt(&sql, lease.into_iter().chain(values).collect()))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("", "id")?;
            let payload: String = row.try_get("", "payload")?;
            let attempts: i32 = row.try_get("", "attempts")?;
            match serde_json::from_str::<Envelope>(&payload) {
                Ok(envelope) => out.push(Delivery {
                    envelope,
                    attempt: attempts as u32,
                    receipt: id,
                }),
                Err(e) => {
                    tracing::error!(job_type = %t, %id, error = %e, "burying a malformed queue row");
                    self.mark_dead(&id, &format!("undecodable job envelope: {e}"))
                        .await?;
                }
            }
        }
        // Oldest first, whatever order RETURNING used.
        out.sort_by_key(|d| d.envelope.enqueued_at);
        Ok(out)
    }

    async fn mark_dead(&self, id: &str, error: &str) -> Result<(), QueueError> {
        let now = now_ms();
        self.exec(
            "UPDATE omega_jobs SET state = 'dead', last_error = ?, locked_by = NULL, locked_until = NULL, \
             first_failed_at = COALESCE(first_failed_at, ?), last_failed_at = ? WHERE id = ?",
            vec![error.into(), now.into(), now.into(), id.into()],
        )
        .await?;
        Ok(())
    }

    /// `AND …` conditions for a dead-job selector, applied in chunks of ids when it names ids.
    fn dead_filter(selector: &DeadSelector) -> (String, Vec<Value>) {
        let mut sql = String::new();
        let mut values = Vec::new();
        if let Some(b) = selector.business_id {
            sql.push_str(" AND business_id = ?");
            values.push(b.into());
        }
        if let Some(needle) = &selector.error_contains {
            sql.push_str(" AND LOWER(last_error) LIKE ?");
            values.push(format!("%{}%", needle.to_lowercase()).into());
        }
        (sql, values)
    }

    /// Runs `sql_head` (ending in a WHERE clause for one job type's dead rows) once per chunk of
    /// selected ids (or once for all), returning the affected row count.
    async fn over_dead(
        &self,
        sql_head: &str,
        head_values: Vec<Value>,
        selector: &DeadSelector,
    ) -> Result<u64, QueueError> {
        let (filter, filter_values) = Self::dead_filter(selector);
        let base_values: Vec<Value> = head_values.into_iter().chain(filter_values).collect();
        match &selector.ids {
            None => self.exec(&format!("{sql_head}{filter}"), base_values).await,
            Some(ids) => {
                let mut total = 0;
                for chunk in ids.chunks(ID_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(",");
                    let mut values = base_values.clone();
                    values.extend(chunk.iter().map(|id| Value::from(id.as_str())));
                    total += self
                        .exec(&format!("{sql_head}{filter} AND id IN ({marks})"), values)
                        .await?;
                }
                Ok(total)
            }
        }
    }
}

#[async_trait]
impl JobQueue for SqlQueue {
    async fn push(&self, jobs: &[Envelope]) -> Result<(), QueueError> {
        // One transaction: every job of a request or none (a caller that gives up drops it,
        // which rolls it back).
        let txn = self.db.begin().await?;
        for chunk in jobs.chunks(ID_CHUNK) {
            let marks = vec!["(?, ?, ?, ?, ?, 'ready', 0, ?, ?)"; chunk.len()].join(", ");
            let mut values = Vec::with_capacity(chunk.len() * 7);
            for job in chunk {
                values.extend([
                    Value::from(job.id.as_str()),
                    job.job_type.as_str().into(),
                    serde_json::to_string(job)?.into(),
                    job.request_id.clone().into(),
                    job.business_id.into(),
                    job.enqueued_at.into(),
                    job.enqueued_at.into(),
                ]);
            }
            txn.execute_raw(self.stmt(
                &format!(
                    "INSERT INTO omega_jobs (id, job_type, payload, request_id, business_id, state, attempts, run_at, created_at) VALUES {marks}"
                ),
                values,
            ))
            .await?;
        }
        txn.commit().await?;
        self.notify.notify_waiters();
        Ok(())
    }

    async fn fetch(
        &self,
        t: JobType,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            // Listen before looking, so a push between the look and the wait is not missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.claim(t, consumer, max).await?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL), notified).await;
        }
    }

    async fn ack(&self, d: &Delivery) -> Result<(), QueueError> {
        self.group()
            .write(Write::Ack {
                receipt: d.receipt.clone(),
                job_type: d.envelope.job_type,
            })
            .await
    }

    async fn retry(&self, d: &Delivery, delay: Duration, error: &str) -> Result<(), QueueError> {
        let now = now_ms();
        self.exec(
            "UPDATE omega_jobs SET state = 'ready', run_at = ?, last_error = ?, locked_by = NULL, locked_until = NULL, \
             first_failed_at = COALESCE(first_failed_at, ?), last_failed_at = ? WHERE id = ?",
            vec![(now + delay.as_millis() as i64).into(), error.into(), now.into(), now.into(), d.receipt.as_str().into()],
        )
        .await?;
        Ok(())
    }

    async fn defer(&self, d: &Delivery, until_ms: i64) -> Result<(), QueueError> {
        self.exec(
            "UPDATE omega_jobs SET state = 'ready', run_at = ?, attempts = attempts - 1, \
             locked_by = NULL, locked_until = NULL WHERE id = ?",
            vec![until_ms.into(), d.receipt.as_str().into()],
        )
        .await?;
        Ok(())
    }

    async fn bury(&self, d: &Delivery, error: &str) -> Result<(), QueueError> {
        self.mark_dead(&d.receipt, error).await
    }

    async fn release(&self, d: &Delivery) -> Result<(), QueueError> {
        self.exec(
            "UPDATE omega_jobs SET state = 'ready', attempts = attempts - 1, locked_by = NULL, locked_until = NULL \
             WHERE id = ? AND state = 'running'",
            vec![d.receipt.as_str().into()],
        )
        .await?;
        self.notify.notify_waiters();
        Ok(())
    }

    async fn keep_alive(&self, d: &Delivery, consumer: &str) -> Result<(), QueueError> {
        self.exec(
            "UPDATE omega_jobs SET locked_until = ? WHERE id = ? AND locked_by = ? AND state = 'running'",
            vec![
                (now_ms() + self.visibility.as_millis() as i64).into(),
                d.receipt.as_str().into(),
                consumer.into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let mut out: Vec<QueueStats> = JobType::ALL
            .iter()
            .map(|t| QueueStats {
                job_type: t.as_str().into(),
                ..Default::default()
            })
            .collect();
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT job_type, state, CASE WHEN last_error IS NULL THEN 0 ELSE 1 END AS failed, COUNT(*) AS n \
                 FROM omega_jobs GROUP BY job_type, state, CASE WHEN last_error IS NULL THEN 0 ELSE 1 END",
                vec![],
            ))
            .await?;
        for row in rows {
            let job_type: String = row.try_get("", "job_type")?;
            let state: String = row.try_get("", "state")?;
            let failed: i32 = row.try_get("", "failed")?;
            let n: i64 = row.try_get("", "n")?;
            let Some(s) = out.iter_mut().find(|s| s.job_type == job_type) else {
                continue;
            };
            match (state.as_str(), failed) {
                ("ready", 0) => s.pending += n as u64,
                ("ready", _) => s.retrying += n as u64,
                ("running", _) => s.running += n as u64,
                ("dead", _) => s.dead += n as u64,
                _ => {}
            }
        }
        let rows = self
            .db
            .query_all_raw(self.stmt("SELECT job_type, done FROM omega_job_counters", vec![]))
            .await?;
        for row in rows {
            let job_type: String = row.try_get("", "job_type")?;
            let done: i64 = row.try_get("", "done")?;
            if let Some(s) = out.iter_mut().find(|s| s.job_type == job_type) {
                s.done = done as u64;
            }
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
        let (mut filter, mut values) = Self::dead_filter(selector);
        if let Some(ids) = &selector.ids {
            // Listing by ids is for a handful of jobs; bound it rather than chunk it.
            let ids: Vec<&String> = ids.iter().take(ID_CHUNK).collect();
            filter.push_str(&format!(
                " AND id IN ({})",
                vec!["?"; ids.len().max(1)].join(",")
            ));
            if ids.is_empty() {
                values.push(Value::from(""));
            }
            values.extend(ids.into_iter().map(|id| Value::from(id.as_str())));
        }
        let mut head = vec![Value::from(t.as_str())];
        head.extend(values);
        let count = self
            .db
            .query_one_raw(self.stmt(
                &format!("SELECT COUNT(*) AS n FROM omega_jobs WHERE job_type = ? AND state = 'dead'{filter}"),
                head.clone(),
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        let mut page_values = head;
        page_values.push((limit as i64).into());
        page_values.push((offset as i64).into());
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT id, payload, attempts, last_error, first_failed_at, last_failed_at, request_id, business_id \
                     FROM omega_jobs WHERE job_type = ? AND state = 'dead'{filter} \
                     ORDER BY last_failed_at DESC, id DESC LIMIT ? OFFSET ?"
                ),
                page_values,
            ))
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let raw: String = row.try_get("", "payload")?;
            let payload = serde_json::from_str::<Envelope>(&raw)
                .map(|e| e.payload_value())
                .unwrap_or(serde_json::Value::String(raw));
            let last_failed_at: Option<i64> = row.try_get("", "last_failed_at")?;
            items.push(DeadJob {
                id: row.try_get("", "id")?,
                job_type: t.as_str().into(),
                request_id: row.try_get("", "request_id")?,
                business_id: row.try_get("", "business_id")?,
                attempts: row.try_get::<i32>("", "attempts")? as u32,
                last_error: row
                    .try_get::<Option<String>>("", "last_error")?
                    .unwrap_or_default(),
                first_failed_at: row
                    .try_get::<Option<i64>>("", "first_failed_at")?
                    .unwrap_or_default(),
                last_failed_at: last_failed_at.unwrap_or_default(),
                payload,
            });
        }
        Ok(DeadPage {
            items,
            total: count as u64,
        })
    }

    async fn dead_ids(
        &self,
        t: JobType,
        selector: &DeadSelector,
    ) -> Result<Vec<String>, QueueError> {
        let (filter, values) = Self::dead_filter(selector);
        let mut all = vec![Value::from(t.as_str())];
        all.extend(values);
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT id FROM omega_jobs WHERE job_type = ? AND state = 'dead'{filter} \
                     ORDER BY last_failed_at DESC, id DESC"
                ),
                all,
            ))
            .await?;
        let mut ids = rows
            .into_iter()
            .map(|r| r.try_get::<String>("", "id"))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(wanted) = &selector.ids {
            let wanted: std::collections::HashSet<&String> = wanted.iter().collect();
            ids.retain(|id| wanted.contains(id));
        }
        Ok(ids)
    }

    async fn replay_dead(&self, t: JobType, selector: &DeadSelector) -> Result<u64, QueueError> {
        let n = self
            .over_dead(
                "UPDATE omega_jobs SET state = 'ready', attempts = 0, run_at = ?, last_error = NULL, \
                 first_failed_at = NULL, last_failed_at = NULL, locked_by = NULL, locked_until = NULL \
                 WHERE job_type = ? AND state = 'dead'",
                vec![now_ms().into(), t.as_str().into()],
                selector,
            )
            .await?;
        self.notify.notify_waiters();
        Ok(n)
    }

    async fn drain_dead(&self, t: JobType, selector: &DeadSelector) -> Result<u64, QueueError> {
        self.over_dead(
            "DELETE FROM omega_jobs WHERE job_type = ? AND state = 'dead'",
            vec![t.as_str().into()],
            selector,
        )
        .await
    }

    async fn sweep_dead(&self, before_ms: i64) -> Result<u64, QueueError> {
        self.exec(
            "DELETE FROM omega_job_notes WHERE created_at < ?",
            vec![before_ms.into()],
        )
        .await?;
        self.exec(
            "DELETE FROM omega_jobs WHERE state = 'dead' AND last_failed_at < ?",
            vec![before_ms.into()],
        )
        .await
    }

    async fn note(&self, key: &str, value: &str) -> Result<(), QueueError> {
        self.group()
            .write(Write::Note {
                key: key.to_owned(),
                value: value.to_owned(),
            })
            .await
    }

    async fn noted(&self, key: &str) -> Result<Option<String>, QueueError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT value FROM omega_job_notes WHERE key = ?",
                vec![key.into()],
            ))
            .await?;
        Ok(row.map(|r| r.try_get("", "value")).transpose()?)
    }

    async fn forget_notes(&self, keys: &[String]) -> Result<(), QueueError> {
        for chunk in keys.chunks(ID_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let values = chunk.iter().map(|k| k.as_str().into()).collect();
            self.exec(
                &format!("DELETE FROM omega_job_notes WHERE key IN ({marks})"),
                values,
            )
            .await?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.db.execute_unprepared("SELECT 1").await?;
        Ok(())
    }

    fn visibility_timeout(&self) -> Duration {
        self.visibility
    }
}
