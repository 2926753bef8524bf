//! The apalis workers: one worker per job type, each fetching from the shared queue and
//! doing the job's database work (and, for send jobs, the provider call).
mod batch;
mod handlers;
pub mod providers;
mod send;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use apalis::prelude::*;
use batch::Batcher;
use entities::cache::TtlCache;
use entities::outbound::{SendJob, Settlement};
use entities::record::{Recorded, Slot};
use entities::status::{Applied, StatusReport};
use entities::types::{Channel, Provider};
use jobs::worker::QueueSource;
use jobs::{Job, JobError, JobQueue, JobType, RetryPolicy, StatusUpdates};
use sea_orm::DatabaseConnection;

pub use handlers::handle;

/// What every handler needs.
pub struct Ctx {
    pub db: DatabaseConnection,
    pub policy: RetryPolicy,
    pub providers: ProviderSettings,
    /// The database steps that concurrent jobs share a transaction for.
    batches: Batches,
}

/// A data-layer failure as a job outcome: worth retrying or not.
pub(crate) fn job_error(e: entities::Error) -> JobError {
    if e.is_transient() {
        JobError::Transient(e.to_string())
    } else {
        JobError::Permanent(e.to_string())
    }
}

/// A failure because what the job is about is not recorded yet (a provider callback that
/// overtook its send): retried until it appears, or the attempts run out.
pub(crate) fn retried_until_recorded(e: entities::Error) -> JobError {
    match e {
        entities::Error::NotFound(what) => {
            JobError::Transient(format!("{what} is not recorded (yet)"))
        }
        other => job_error(other),
    }
}

/// The group-committed steps of the send and status jobs (see [`batch`]).
struct Batches {
    /// A send's first step: its message recorded as `queued` (or found, on a re-run).
    record: Batcher<Arc<SendJob>, Recorded>,
    /// A send's last step: the provider's answer, or the failure.
    settle: Batcher<Settlement, ()>,
    /// The sandbox's delivery reports, queued as `UpdateStatus` jobs (one per business and
    /// batch) like a provider's callbacks.
    reports: Batcher<(i64, StatusReport), ()>,
    /// Status reports applied.
    status: Batcher<StatusReport, Applied>,
}

impl Batches {
    fn new(db: &DatabaseConnection, producer: jobs::Producer, max: usize) -> Self {
        let record = Batcher::new("record", max, {
            let db = db.clone();
            move |jobs: Arc<[Arc<SendJob>]>| {
                let db = db.clone();
                async move {
                    let slots: Vec<Slot> = jobs
                        .iter()
                        .filter_map(|j| {
                            Some(Slot {
                                batch: &j.batch,
                                index: j.index,
                                item: j.batch.items.first()?,
                            })
                        })
                        .collect();
                    if slots.len() != jobs.len() {
                        return Err(JobError::Permanent("a send job without its message".into()));
                    }
                    let recorded = entities::record::record_many(&db, &slots)
                        .await
                        .map_err(job_error)?;
                    Ok(recorded.into_iter().map(|r| r.map_err(job_error)).collect())
                }
            }
        });
        let settle = Batcher::new("settle", max, {
            let db = db.clone();
            move |settlements: Arc<[Settlement]>| {
                let db = db.clone();
                async move {
                    entities::outbound::settle_many(&db, &settlements)
                        .await
                        .map_err(job_error)?;
                    Ok(settlements.iter().map(|_| Ok(())).collect())
                }
            }
        });
        let reports = Batcher::new(
            "reports",
            max,
            move |reports: Arc<[(i64, StatusReport)]>| {
                let producer = producer.clone();
                async move {
                    let n = reports.len();
                    let mut by_business: BTreeMap<i64, Vec<StatusReport>> = BTreeMap::new();
                    for (business_id, report) in reports.iter() {
                        by_business
                            .entry(*business_id)
                            .or_default()
                            .push(report.clone());
                    }
                    let jobs: Vec<Job> = by_business
                        .into_iter()
                        .map(|(business_id, reports)| {
                            Job::UpdateStatus(StatusUpdates {
                                business_id: Some(business_id),
                                reports,
                            })
                        })
                        .collect();
                    producer
                        .enqueue(&jobs, "sandbox", None)
                        .await
                        .map_err(|e| JobError::Transient(e.to_string()))?;
                    Ok((0..n).map(|_| Ok(())).collect())
                }
            },
        );
        let status = Batcher::new("status", max, {
            let db = db.clone();
            move |reports: Arc<[StatusReport]>| {
                let db = db.clone();
                async move {
                    let refs: Vec<&StatusReport> = reports.iter().collect();
                    let applied = entities::status::apply_many(&db, &refs)
                        .await
                        .map_err(job_error)?;
                    // A report can overtake the send it is about.
                    Ok(applied
                        .into_iter()
                        .map(|a| a.map_err(retried_until_recorded))
                        .collect())
                }
            }
        });
        Batches {
            record,
            settle,
            reports,
            status,
        }
    }
}

/// Where and how messages are sent.
#[derive(Clone)]
pub struct ProviderSettings {
    pub clients: providers::Clients,
    /// Status callbacks point here (`OMEGA_PUBLIC_URL`).
    pub public_url: String,
    /// The global accounts; a business's own (from onboarding) takes precedence.
    pub twilio: Option<entities::credentials::TwilioCredentials>,
    pub sendgrid_api_key: Option<String>,
    /// An SMTP relay (`OMEGA_SMTP_URL`).
    pub smtp_url: Option<String>,
    pub default_sms: Option<Provider>,
    pub default_email: Option<Provider>,
    /// Opens businesses' sealed credentials.
    pub sealer: entities::secrets::Sealer,
    /// What every send looks up about its business, cached.
    pub lookups: Arc<Lookups>,
}

/// How long a worker trusts a business's credentials, default providers and location
/// numbers: changes from onboarding apply to sends within this time.
const LOOKUP_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Per-business lookups of the send path, each read from the database at most once per
/// `LOOKUP_TTL`.
pub struct Lookups {
    credentials: TtlCache<(i64, &'static str), Option<Vec<u8>>>,
    defaults: TtlCache<i64, (Option<String>, Option<String>)>,
    numbers: TtlCache<(i64, i64), Option<String>>,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups {
            credentials: TtlCache::new(LOOKUP_TTL, 100_000),
            defaults: TtlCache::new(LOOKUP_TTL, 100_000),
            numbers: TtlCache::new(LOOKUP_TTL, 100_000),
        }
    }
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("public_url", &self.public_url)
            .field("twilio", &self.twilio)
            .field(
                "sendgrid",
                &self.sendgrid_api_key.as_ref().map(|_| "<configured>"),
            )
            .finish_non_exhaustive()
    }
}

impl ProviderSettings {
    /// A business's own credentials of one kind, opened (cached for `LOOKUP_TTL`).
    async fn own<T: serde::de::DeserializeOwned>(
        &self,
        db: &DatabaseConnection,
        business_id: i64,
        kind: &'static str,
    ) -> Result<Option<T>, entities::Error> {
        use sea_orm::EntityTrait;
        let plain =
            self.lookups
                .credentials
                .get_or_load(&(business_id, kind), async {
                    let Some(row) = entities::provider_credential::Entity::find_by_id((
                        business_id,
                        kind.to_owned(),
                    ))
                    .one(db)
                    .await?
                    else {
                        return Ok(None);
                    };
                    let plain = self.sealer.open(&row.sealed).map_err(|e| {
                        entities::Error::Corrupt(format!("stored credentials: {e}"))
                    })?;
                    Ok::<_, entities::Error>(Some(plain))
                })
                .await?;
        Ok(plain.and_then(|p| serde_json::from_slice(&p).ok()))
    }

    /// The business's default provider for a channel (set from its own accounts at
    /// onboarding), cached for `LOOKUP_TTL`.
    async fn business_default(
        &self,
        db: &DatabaseConnection,
        business_id: i64,
        channel: Channel,
    ) -> Result<Option<Provider>, entities::Error> {
        use sea_orm::EntityTrait;
        let (sms, email) = self
            .lookups
            .defaults
            .get_or_load(&business_id, async {
                let b = entities::business::Entity::find_by_id(business_id)
                    .one(db)
                    .await?;
                Ok::<_, entities::Error>(
                    b.map(|b| (b.default_sms_provider, b.default_email_provider))
                        .unwrap_or_default(),
                )
            })
            .await?;
        let stored = match channel {
            Channel::Email => email,
            _ => sms,
        };
        Ok(stored.and_then(|p| p.parse().ok()))
    }

    /// A location's phone number (cached for `LOOKUP_TTL`).
    pub async fn location_number(
        &self,
        db: &DatabaseConnection,
        business_id: i64,
        location_id: i64,
    ) -> Result<Option<String>, entities::Error> {
        use sea_orm::EntityTrait;
        self.lookups
            .numbers
            .get_or_load(&(business_id, location_id), async {
                Ok::<_, entities::Error>(
                    entities::location::Entity::find_by_id((business_id, location_id))
                        .one(db)
                        .await?
                        .and_then(|l| l.phone_number),
                )
            })
            .await
    }

    /// The provider for a message: the one requested, else the business's default, else the
    /// configured default, else the real provider when credentials exist, else the sandbox.
    /// Err: why it cannot be used.
    pub async fn choose(
        &self,
        channel: Channel,
        requested: Option<Provider>,
        db: &DatabaseConnection,
        business_id: i64,
    ) -> Result<Result<send::Chosen, (Provider, String)>, entities::Error> {
        let requested = match requested {
            Some(p) => Some(p),
            None => self.business_default(db, business_id, channel).await?,
        };
        Ok(match channel {
            Channel::Email => {
                let own: Option<entities::credentials::EmailCredentials> =
                    self.own(db, business_id, "email").await?;
                let own_smtp = own
                    .clone()
                    .filter(|e| e.provider == Provider::Smtp && e.smtp_url.is_some());
                let own_sendgrid = own.filter(|e| e.provider == Provider::Sendgrid);
                // A business's own provider first, then the global ones.
                let default = if own_sendgrid.is_some()
                    || (own_smtp.is_none() && self.sendgrid_api_key.is_some())
                {
                    Provider::Sendgrid
                } else if own_smtp.is_some() || self.smtp_url.is_some() {
                    Provider::Smtp
                } else {
                    Provider::Sandbox
                };
                let p = requested.or(self.default_email).unwrap_or(default);
                match p {
                    Provider::Smtp => match (own_smtp, &self.smtp_url) {
                        (Some(e), _) => Ok(send::Chosen::Smtp {
                            url: e.smtp_url.unwrap_or_default(),
                            from_email: Some(e.from_email),
                        }),
                        (None, Some(url)) => Ok(send::Chosen::Smtp {
                            url: url.clone(),
                            from_email: None,
                        }),
                        _ => Err((p, "SMTP is not configured for this business".into())),
                    },
                    Provider::Sandbox => Ok(send::Chosen::Sandbox),
                    Provider::Sendgrid => match (own_sendgrid, &self.sendgrid_api_key) {
                        (Some(e), _) if e.api_key.is_some() => Ok(send::Chosen::Sendgrid {
                            api_key: e.api_key.unwrap_or_default(),
                            from_email: Some(e.from_email),
                        }),
                        (_, Some(key)) => Ok(send::Chosen::Sendgrid {
                            api_key: key.clone(),
                            from_email: None,
                        }),
                        _ => Err((p, "SendGrid is not configured for this business".into())),
                    },
                    other => Err((
                        other,
                        format!("sending email through {other} is not supported by this version"),
                    )),
                }
            }
            _ => {
                let own: Option<entities::credentials::TwilioCredentials> =
                    self.own(db, business_id, "twilio").await?;
                let creds = own.or_else(|| self.twilio.clone());
                let p = requested
                    .or(self.default_sms)
                    .unwrap_or(if creds.is_some() {
                        Provider::Twilio
                    } else {
                        Provider::Sandbox
                    });
                match p {
                    Provider::Sandbox => Ok(send::Chosen::Sandbox),
                    Provider::Twilio => creds
                        .map(send::Chosen::Twilio)
                        .ok_or((p, "Twilio is not configured for this business".into())),
                    other => Err((
                        other,
                        format!("sending SMS through {other} is not supported"),
                    )),
                }
            }
        })
    }
}

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub providers: ProviderSettings,
    /// Jobs of one type handled at once by this process.
    pub concurrency: usize,
    /// The most send or status jobs that share one transaction; so many of those run at once.
    pub batch: usize,
    pub policy: RetryPolicy,
    /// A job running longer than this fails (and is retried).
    pub job_timeout: Duration,
    /// How long a shutdown waits for jobs under way.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("worker monitor: {0}")]
    Monitor(#[from] apalis::prelude::MonitorError),
}

/// Runs workers for every job type until `shutdown` completes, then lets jobs under way finish
/// (up to the shutdown timeout) and hands unstarted ones back to the queue.
pub async fn run(
    db: DatabaseConnection,
    queue: Arc<dyn JobQueue>,
    opts: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkersError> {
    let batches = Batches::new(&db, jobs::Producer::new(queue.clone()), opts.batch);
    let ctx = Arc::new(Ctx {
        db,
        policy: opts.policy,
        providers: opts.providers.clone(),
        batches,
    });
    // Consumer names are unique per process so a restarted process never inherits a dead
    // one's deliveries silently; those are taken over after the visibility timeout.
    let instance = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut monitor = Monitor::new().shutdown_timeout(opts.shutdown_timeout);
    for job_type in JobType::ALL.iter().copied() {
        let (ctx, queue, opts, instance) =
            (ctx.clone(), queue.clone(), opts.clone(), instance.clone());
        let concurrency = match job_type {
            // Onboarding is one large transaction per job: a few at a time is plenty.
            JobType::Onboard => opts.concurrency.min(2),
            // Group-committed: the more run at once, the fuller each transaction.
            JobType::SendSms | JobType::SendEmail | JobType::UpdateStatus => {
                opts.concurrency.max(opts.batch)
            }
            _ => opts.concurrency,
        };
        monitor = monitor.register(move |index| {
            let consumer = format!("{}-{instance}-{index}", job_type.as_str());
            let source = QueueSource::new(
                queue.clone(),
                job_type,
                consumer.clone(),
                concurrency,
                opts.policy,
            );
            WorkerBuilder::new(consumer)
                .backend(source)
                .concurrency(concurrency)
                .timeout(opts.job_timeout)
                .catch_panic()
                .data(ctx.clone())
                .build(handle)
        });
    }
    monitor
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await?;
    Ok(())
}
