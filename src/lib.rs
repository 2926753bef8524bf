//! Wires the crates into running processes: `serve` (ingress and workers in one process),
//! `ingress`, and `worker`. The CLI in `main.rs` and the integration tests both start omega
//! through [`start`].
pub mod config;
pub mod jobs_cli;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use jobs::redis_queue::RedisQueue;
use jobs::sql_queue::SqlQueue;
use jobs::{JobQueue, Producer, RetryPolicy};
use migrations::{Migrator, MigratorTrait};
use poem::listener::{Listener, TcpListener};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{Config, LogFormat};

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
pub fn metrics_render() -> ingress::MetricsRender {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("valid buckets")
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone();
    Arc::new(move || handle.render())
}

/// How often the queue gauges are refreshed (a stats call per job type, not per scrape).
const GAUGE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

async fn refresh_queue_gauges(
    queue: Arc<dyn JobQueue>,
    stop: impl std::future::Future<Output = ()>,
) {
    let refresh = async {
        let mut every = tokio::time::interval(GAUGE_EVERY);
        loop {
            every.tick().await;
            match queue.stats().await {
                Ok(stats) => {
                    for s in stats {
                        for (state, n) in [
                            ("pending", s.pending),
                            ("running", s.running),
                            ("retrying", s.retrying),
                            ("dead", s.dead),
                        ] {
                            metrics::gauge!("omega_queue_jobs", "job_type" => s.job_type.clone(), "state" => state).set(n as f64);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read queue counts for metrics"),
            }
        }
    };
    tokio::select! { _ = refresh => {}, _ = stop => {} }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Ingress and workers in one process (the embedded default).
    Serve,
    Ingress,
    Worker,
}

/// A started omega: its address (when it serves HTTP) and its tasks.
pub struct Running {
    pub addr: Option<SocketAddr>,
    pub db: DatabaseConnection,
    pub queue: Arc<dyn JobQueue>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    /// Graceful stop: the ingress stops accepting and finishes requests under way; workers
    /// finish or hand back their jobs.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        while let Some(done) = self.tasks.join_next().await {
            done.context("a task panicked")??;
        }
        Ok(())
    }

    /// Runs until `signal` completes (then shuts down) or a task fails.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            _ = signal => {}
            Some(done) = self.tasks.join_next() => {
                done.context("a task panicked")??;
                anyhow::bail!("a component stopped unexpectedly");
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Connects to the database (creating the data dir and secret for the embedded default),
/// runs migrations where this process owns them, and ensures the bootstrap key.
pub async fn prepare(config: &mut Config, migrate: bool) -> anyhow::Result<DatabaseConnection> {
    if config.is_sqlite() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        config.ensure_secret_key()?;
    }
    let db = entities::db::connect(&config.database_url, config.db_max_connections)
        .await
        .context("connecting to the database")?;
    if migrate {
        Migrator::up(&db, None)
            .await
            .context("running migrations")?;
    }
    if let Some(key) = &config.bootstrap_platform_key {
        entities::keys::ensure_platform(&db, key)
            .await
            .context("ensuring the bootstrap platform key")?;
    }
    Ok(db)
}

pub async fn open_queue(
    config: &Config,
    db: &DatabaseConnection,
) -> anyhow::Result<Arc<dyn JobQueue>> {
    Ok(match &config.redis_url {
        Some(url) => Arc::new(
            RedisQueue::connect(url, &config.redis_prefix, config.visibility_timeout)
                .await
                .context("connecting to Redis")?,
        ),
        None => Arc::new(SqlQueue::new(db.clone(), config.visibility_timeout)),
    })
}

pub async fn start(mut config: Config, role: Role) -> anyhow::Result<Running> {
    // `serve` and the embedded database migrate on start; scaled ingress and worker processes
    // leave it to `omega migrate`, so that many processes never race on the schema.
    let migrate = role == Role::Serve || config.is_sqlite();
    let db = prepare(&mut config, migrate).await?;
    let queue = open_queue(&config, &db).await?;
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut addr = None;

    if config.allow_private_urls {
        tracing::warn!(
            "OMEGA_ALLOW_PRIVATE_URLS=true: webhook endpoints may be plain http and private, \
             loopback or link-local addresses; this is for tests and private deployments only"
        );
    }
    let urls = entities::urls::UrlPolicy {
        allow_private: config.allow_private_urls,
    };
    // Streams here hear the relay here (one process) or, scaled, through Redis.
    let wakeup = match &config.redis_url {
        Some(url) => jobs::wakeup::Wakeup::redis(url, &config.redis_prefix)
            .await
            .context("connecting to Redis for event wake-ups")?,
        None => jobs::wakeup::Wakeup::local(),
    };
    let webhook_sealer = |secret: &[u8]| entities::secrets::Sealer::for_purpose(secret, "webhooks");

    let metrics = metrics_render();
    tasks.spawn({
        let (queue, stop) = (queue.clone(), stopped(stop_rx.clone()));
        async move {
            refresh_queue_gauges(queue, stop).await;
            Ok(())
        }
    });

    if role == Role::Worker
        && let Some(listen) = config.metrics_listen
    {
        // Worker processes have no API; they can still be scraped.
        let acceptor = TcpListener::bind(listen.to_string())
            .into_acceptor()
            .await
            .with_context(|| format!("binding {listen}"))?;
        let app = poem::Route::new().at("/metrics", ingress::metrics_endpoint(metrics.clone()));
        let signal = stopped(stop_rx.clone());
        tasks.spawn(async move {
            poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, signal, None)
                .await
                .context("metrics server")
        });
    }

    if role != Role::Worker {
        let secret = config
            .secret_key
            .as_deref()
            .context("the secret key is set by prepare()")?;
        let settings = ingress::Settings {
            public_url: config.public_url.clone(),
            sealer: entities::secrets::Sealer::new(secret),
            unsubscribe: entities::unsubscribe::Tokens::new(secret),
            twilio: config.twilio.clone(),
            email_webhooks: email_webhooks(&config)?,
            deadlines: config.deadlines,
            rates: config.rates.clone(),
            webhook_sealer: webhook_sealer(secret),
            urls,
            stream_heartbeat: config.stream_heartbeat,
            threading: entities::threading::Threading::new(secret),
        };
        let rate_limiter = match &config.redis_url {
            Some(url) => ingress::rate_limit::RateLimiter::redis(url, &config.redis_prefix)
                .await
                .context("connecting to Redis for rate limits")?,
            None => ingress::rate_limit::RateLimiter::local(),
        };
        // The push gets most of the request's deadline, so that a hung queue is reported as
        // such (and the Idempotency-Key released) before the deadline cuts the request off.
        let producer = Producer::bounded(queue.clone(), config.deadlines.request * 3 / 4);
        let state = Arc::new(ingress::AppState::new(
            db.clone(),
            producer,
            settings,
            rate_limiter,
            wakeup.clone(),
        ));
        if let Some(url) = &config.redis_url {
            // Events relayed by worker processes wake this process's streams.
            let (wakeup, url, prefix) = (wakeup.clone(), url.clone(), config.redis_prefix.clone());
            let stop = stopped(stop_rx.clone());
            tasks.spawn(async move {
                wakeup.listen_to_redis(&url, &prefix, stop).await;
                Ok(())
            });
        }
        let app = ingress::app(state, &config.public_url, metrics.clone());
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        addr = Some(listener.local_addr()?);
        tracing::info!(addr = ?addr, "ingress listening");
        let (signal, grace) = (stopped(stop_rx.clone()), config.shutdown_timeout);
        let limits = config.connections;
        tasks.spawn(async move {
            ingress::server::serve(listener, app, limits, signal, grace)
                .await
                .context("ingress server")
        });
    }
    if role != Role::Ingress {
        let secret = config
            .secret_key
            .as_deref()
            .context("the secret key is set by prepare()")?;
        tasks.spawn({
            let (db, queue, stop) = (db.clone(), queue.clone(), stopped(stop_rx.clone()));
            let (retention, every) = (config.retention, config.sweep_every);
            async move {
                workers::sweep::run(db, queue, retention, every, stop).await;
                Ok(())
            }
        });
        tasks.spawn({
            let (db, queue, wakeup) = (db.clone(), queue.clone(), wakeup.clone());
            let stop = stopped(stop_rx.clone());
            async move {
                workers::relay::run(db, queue, wakeup, stop).await;
                Ok(())
            }
        });
        let opts = workers::WorkerOptions {
            webhooks: workers::WebhookSettings {
                sealer: webhook_sealer(secret),
                urls,
                timeout: config.webhook_timeout,
                disable_after: config.webhook_disable_after,
                // An endpoint not known to be fast holds at most an eighth of the delivery
                // workers: a slow one leaves the rest to every other endpoint.
                per_endpoint: workers::DELIVERIES_AT_ONCE / 8,
            },
            concurrency: config.worker_concurrency,
            batch: config.worker_batch,
            provider_calls: config.worker_provider_calls,
            policy: RetryPolicy {
                max_attempts: config.job_max_attempts,
                base: config.job_backoff_base,
                cap: config.job_backoff_max,
            },
            job_timeout: config.job_timeout,
            shutdown_timeout: config.shutdown_timeout,
            providers: workers::ProviderSettings {
                clients: workers::providers::Clients::new(&workers::providers::ApiBases {
                    twilio: config.twilio_api_base.clone(),
                    sendgrid: config.sendgrid_api_base.clone(),
                    mailgun: config.mailgun_api_base.clone(),
                    postmark: config.postmark_api_base.clone(),
                    ses: config.ses_endpoint.clone(),
                }),
                public_url: config.public_url.trim_end_matches('/').to_owned(),
                twilio: config.twilio.clone(),
                sendgrid_api_key: config.sendgrid_api_key.clone(),
                mailgun: config.mailgun.clone(),
                postmark_server_token: config.postmark_server_token.clone(),
                ses: config.ses.clone(),
                smtp_url: config.smtp_url.clone(),
                default_sms: config.default_sms_provider,
                default_email: config.default_email_provider,
                credentials: Arc::new(entities::credentials::CredentialStore::new(
                    entities::secrets::Sealer::new(secret),
                )),
                lookups: Default::default(),
                unsubscribe: entities::unsubscribe::Tokens::new(secret),
                threading: entities::threading::Threading::new(secret),
                inbound_email_domain: config.inbound_email_domain.clone(),
            },
        };
        let (db, queue, signal) = (db.clone(), queue.clone(), stopped(stop_rx.clone()));
        tasks.spawn(async move {
            workers::run(db, queue, opts, signal)
                .await
                .context("workers")
        });
    }
    Ok(Running {
        addr,
        db,
        queue,
        stop,
        tasks,
    })
}

/// Logs to stderr: human-readable, or JSON lines with `OMEGA_LOG_FORMAT=json`; filtered by
/// `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// The email providers' webhook credentials, parsed (the config was validated).
fn email_webhooks(config: &Config) -> anyhow::Result<ingress::EmailWebhookSettings> {
    if let Some(prefix) = &config.sns_trusted_cert_prefix {
        tracing::warn!(
            prefix,
            "OMEGA_SNS_TRUSTED_CERT_PREFIX is set: SNS certificates are also trusted from this \
             non-AWS location; this is for tests only"
        );
    }
    Ok(ingress::EmailWebhookSettings {
        sendgrid_key: config
            .sendgrid_webhook_public_key
            .as_deref()
            .map(ingress::email_events::sendgrid_key)
            .transpose()
            .map_err(|e| anyhow::anyhow!("OMEGA_SENDGRID_WEBHOOK_PUBLIC_KEY: {e}"))?,
        mailgun_signing_key: config.mailgun_signing_key.clone(),
        postmark_basic: config.postmark_webhook.clone(),
        ses_topic_arns: config.ses_topic_arns.clone(),
        sns_trusted_cert_prefix: config.sns_trusted_cert_prefix.clone(),
        inbound_token: config.inbound_email_token.clone(),
        inbound_basic: config.inbound_email_basic.clone(),
    })
}
