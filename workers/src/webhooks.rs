//! The `deliver_webhook` job: one event POSTed to one endpoint, signed by the Standard
//! Webhooks spec, each attempt recorded. Failures (non-2xx, timeouts, connection errors) are
//! retried on the queue's usual schedule and then dead-lettered, where operators see,
//! replay and drain them like any job.
//!
//! One business's slow endpoint must not hold every worker: an endpoint that has not shown
//! itself fast (recent attempts answered within [`FAST`] on average) has at most
//! `per_endpoint` attempts under way per process; further jobs for it wait in the queue (not
//! counted as attempts) while other endpoints' jobs run. A fast endpoint is not limited, so
//! a busy, healthy receiver gets the whole pool.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entities::cache::{LOOKUP_MAX, LOOKUP_TTL, TtlCache};
use entities::secrets::Sealer;
use entities::urls::UrlPolicy;
use entities::webhooks::{self, Attempted, DeliverWebhook, NewAttempt, Target};
use sea_orm::DatabaseConnection;

use crate::batch::Batcher;
use jobs::JobError;

use crate::Ctx;
use crate::outcome::job_error;

/// How webhooks are delivered.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Opens the endpoints' secrets.
    pub sealer: Sealer,
    pub urls: UrlPolicy,
    /// One attempt's limit (connecting, sending and the answer).
    pub timeout: Duration,
    /// An endpoint whose every attempt failed for this long is disabled.
    pub disable_after: chrono::Duration,
    /// Attempts under way at once, per process, for an endpoint not known to be fast.
    pub per_endpoint: usize,
}

/// How long a job for an endpoint at its limit waits before it is tried again.
const BUSY_WAIT: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

pub(crate) struct Deliverer {
    settings: WebhookSettings,
    http: reqwest::Client,
    /// Endpoints' URLs and opened secrets, for a few seconds (a deleted or disabled endpoint
    /// stops receiving within that time).
    targets: TtlCache<i64, Option<Arc<Target>>>,
    load: Arc<Mutex<HashMap<i64, Load>>>,
    /// Attempts are recorded group-committed: one transaction per batch, not per attempt.
    attempts: Batcher<NewAttempt, bool>,
}

impl Deliverer {
    pub fn new(db: &DatabaseConnection, settings: WebhookSettings, batch: usize) -> Self {
        let attempts = Batcher::new("webhook_attempts", batch, {
            let (db, disable_after) = (db.clone(), settings.disable_after);
            move |attempts: Arc<[NewAttempt]>| {
                let db = db.clone();
                async move {
                    let record = async {
                        let txn = entities::db::begin_write(&db).await?;
                        let now = chrono::Utc::now();
                        let disabled =
                            webhooks::record_attempts(&txn, &attempts, now, disable_after).await?;
                        txn.commit().await?;
                        Ok::<_, entities::Error>(disabled)
                    };
                    let disabled = record.await.map_err(job_error)?;
                    Ok(disabled.into_iter().map(Ok).collect())
                }
            }
        });
        let mut http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            // A redirect could lead anywhere, past the URL policy; the endpoint's owner
            // registers the final URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("omega-webhooks/1");
        if !settings.urls.allow_private {
            http = http.dns_resolver(Arc::new(PublicOnly(settings.urls)));
        }
        Deliverer {
            http: http.build().expect("the webhook HTTP client builds"),
            settings,
            targets: TtlCache::new(LOOKUP_TTL, LOOKUP_MAX),
            load: Default::default(),
            attempts,
        }
    }

    /// A place among the endpoint's attempts under way, if it may have one more.
    fn slot(&self, webhook_id: i64) -> Option<Slot> {
        let mut load = self.load.lock().expect("not poisoned");
        let l = load.entry(webhook_id).or_default();
        let fast = l.latency_ms.is_some_and(|ms| ms < FAST.as_millis() as f64);
        if l.in_flight >= self.settings.per_endpoint && !fast {
            return None;
        }
        l.in_flight += 1;
        Some(Slot {
            webhook_id,
            load: self.load.clone(),
        })
    }

    /// Keeps the endpoint's average answer time (a moving average of recent attempts).
    fn observe(&self, webhook_id: i64, took: Duration) {
        let ms = took.as_millis() as f64;
        let mut load = self.load.lock().expect("not poisoned");
        let l = load.entry(webhook_id).or_default();
        l.latency_ms = Some(l.latency_ms.map_or(ms, |avg| 0.8 * avg + 0.2 * ms));
    }
}

/// An endpoint's attempts in this process.
#[derive(Default)]
struct Load {
    in_flight: usize,
    /// The moving average of its attempts' time; None until one has finished.
    latency_ms: Option<f64>,
}

/// An endpoint answering within this on average is not limited.
const FAST: Duration = Duration::from_secs(1);

struct Slot {
    webhook_id: i64,
    load: Arc<Mutex<HashMap<i64, Load>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut load = self.load.lock().expect("not poisoned");
        if let Some(l) = load.get_mut(&self.webhook_id) {
            l.in_flight = l.in_flight.saturating_sub(1);
        }
    }
}

/// Resolves names to public addresses only, at every connection (a name checked when the
/// endpoint was created may have been re-pointed since). Every call to a user-given URL
/// (webhooks, attachments) resolves through it.
pub(crate) struct PublicOnly(pub UrlPolicy);

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, name) = (self.0, name.as_str().to_owned());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = policy.public_addrs(&name, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Makes one attempt and records it.
pub(crate) async fn deliver(ctx: &Ctx, job: &DeliverWebhook, attempt: u32) -> Result<(), JobError> {
    let deliverer = &ctx.webhooks;
    let target = deliverer
        .targets
        .get_or_load(&job.webhook_id, async {
            let found = webhooks::target(&ctx.db, &deliverer.settings.sealer, job.webhook_id);
            Ok::<_, entities::Error>(found.await?.map(Arc::new))
        })
        .await
        .map_err(job_error)?;
    let Some(target) = target else {
        tracing::info!(
            webhook_id = job.webhook_id,
            "webhook endpoint deleted or disabled; delivery dropped"
        );
        return Ok(());
    };
    let Some(_slot) = deliverer.slot(job.webhook_id) else {
        return Err(JobError::NotDue {
            until: chrono::Utc::now() + BUSY_WAIT,
        });
    };
    deliverer
        .settings
        .urls
        .parse(&target.url)
        .map_err(|e| JobError::Permanent(e.to_string()))?;
    let timestamp = chrono::Utc::now().timestamp();
    let signature = target
        .secret
        .sign(&job.event_id, timestamp, job.body.as_bytes());
    let started = Instant::now();
    let answer = deliverer
        .http
        .post(&target.url)
        .header("content-type", "application/json")
        .header("webhook-id", &job.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(job.body.clone())
        .send()
        .await;
    let took = started.elapsed();
    deliverer.observe(job.webhook_id, took);
    let latency_ms = took.as_millis() as i64;
    let (outcome, retry_after) = match answer {
        Ok(r) if r.status().is_success() => (
            Attempted {
                status_code: Some(r.status().as_u16()),
                latency_ms,
                error: None,
            },
            None,
        ),
        Ok(r) => {
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let status = r.status();
            (
                Attempted {
                    status_code: Some(status.as_u16()),
                    latency_ms,
                    error: Some(format!("the endpoint answered {status}")),
                },
                retry_after,
            )
        }
        Err(e) => (
            Attempted {
                status_code: None,
                latency_ms,
                error: Some(describe(&e, deliverer.settings.timeout)),
            },
            None,
        ),
    };
    metrics::counter!(
        "omega_webhook_attempts_total",
        "outcome" => if outcome.error.is_none() { "ok" } else { "failed" }
    )
    .increment(1);
    let disabled = deliverer
        .attempts
        .submit(NewAttempt {
            webhook_id: job.webhook_id,
            event_id: job.event_id.clone(),
            event_type: job.event_type.clone(),
            attempt,
            outcome: outcome.clone(),
            was_failing: target.failing,
        })
        .await?;
    if target.failing != outcome.error.is_some() || disabled {
        // The endpoint's streak (or state) changed: read it afresh next time.
        deliverer.targets.forget(&job.webhook_id);
    }
    let Some(error) = outcome.error else {
        return Ok(());
    };
    if disabled {
        metrics::counter!("omega_webhooks_disabled_total").increment(1);
        tracing::warn!(
            webhook_id = job.webhook_id,
            business_id = job.business_id,
            error,
            "webhook endpoint disabled: every delivery failed for too long"
        );
        return Err(JobError::Permanent(format!(
            "{error}; the endpoint is now disabled"
        )));
    }
    Err(match retry_after {
        Some(after) => JobError::RetryAfter {
            after,
            reason: error,
        },
        None => JobError::Transient(error),
    })
}

/// A failed call, with the cause reqwest keeps in its source chain.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {timeout:?}");
    }
    let mut text = if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
