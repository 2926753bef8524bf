//! Wires the crates into running processes: `serve` (ingress and workers in one process),
//! `ingress`, and `worker`. The CLI in `main.rs` and the integration tests both start omega
//! through [`start`].
pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use jobs::redis_queue::RedisQueue;
use jobs::sql_queue::SqlQueue;
use jobs::{JobQueue, Producer, RetryPolicy};
use migrations::{Migrator, MigratorTrait};
use poem::listener::{Acceptor, Listener, TcpListener};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{Config, LogFormat};

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

    if role != Role::Worker {
        let state = Arc::new(ingress::AppState::new(
            db.clone(),
            Producer::new(queue.clone()),
        ));
        let app = ingress::app(state, &config.public_url);
        let acceptor = TcpListener::bind(config.listen.to_string())
            .into_acceptor()
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied());
        tracing::info!(addr = ?addr, "ingress listening");
        let (signal, grace) = (stopped(stop_rx.clone()), config.shutdown_timeout);
        tasks.spawn(async move {
            poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, signal, Some(grace))
                .await
                .context("ingress server")
        });
    }
    if role != Role::Ingress {
        let opts = workers::WorkerOptions {
            concurrency: config.worker_concurrency,
            policy: RetryPolicy {
                max_attempts: config.job_max_attempts,
                base: config.job_backoff_base,
                cap: config.job_backoff_max,
            },
            job_timeout: config.job_timeout,
            shutdown_timeout: config.shutdown_timeout,
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
