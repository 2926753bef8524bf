//! The `omega` command line: a thin layer over the crates.
use anyhow::Context;
use clap::{Parser, Subcommand};
use omega::{Config, Role};

#[derive(Parser)]
#[command(name = "omega", version, about = "Queue-first messaging backend")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Ingress and workers in one process (the default).
    Serve,
    /// The HTTP ingress only.
    Ingress,
    /// Workers only.
    Worker {
        /// Jobs of one type run at once (overrides OMEGA_WORKER_CONCURRENCY).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Queues and dead jobs (for operators).
    Jobs {
        #[command(subcommand)]
        command: omega::jobs_cli::JobsCommand,
    },
    /// Messages (for operators).
    Messages {
        #[command(subcommand)]
        command: MessagesCommand,
    },
    /// API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// A business's audit log (client exports and erasures), newest first, as JSON lines.
    Audit {
        #[arg(long)]
        business: i64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Webhook deliveries (for operators).
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Provider deliveries no business owns (a number or account not onboarded), newest
    /// first, as JSON lines: they were answered 200 so the provider stops retrying.
    Orphans {
        #[arg(long, default_value_t = 1)]
        page: u64,
        #[arg(long, default_value_t = 50)]
        page_size: u64,
    },
}

#[derive(Subcommand)]
enum MessagesCommand {
    /// Resend failed messages omega sent (permanent failures are skipped).
    RetryFailed {
        /// Only this business.
        #[arg(long)]
        business: Option<i64>,
        /// sms or email.
        #[arg(long)]
        channel: Option<String>,
        /// Failed messages created at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (it is shown this once).
    Create {
        /// A platform key: every business and the admin endpoints.
        #[arg(
            long,
            conflicts_with = "business",
            required_unless_present = "business"
        )]
        platform: bool,
        /// A key for this business only.
        #[arg(long)]
        business: Option<i64>,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// A business's keys (prefix, name, created, last used; never the key).
    List {
        #[arg(long)]
        business: i64,
    },
    /// Revoke a key; it stops working within a second everywhere.
    Revoke { id: i64 },
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::from_env()?;
    omega::init_logging(config.log_format);
    let role = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Role::Serve,
        Command::Ingress => Role::Ingress,
        Command::Worker { concurrency } => {
            if let Some(n) = concurrency {
                config.worker_concurrency = n;
                config.validate()?;
            }
            Role::Worker
        }
        Command::Migrate => {
            omega::prepare(&mut config, true).await?;
            println!("migrations applied");
            return Ok(());
        }
        Command::Webhooks {
            command: WebhooksCommand::Orphans { page, page_size },
        } => {
            let migrate = config.is_sqlite();
            let db = omega::prepare(&mut config, migrate).await?;
            let (rows, total) =
                entities::receipts::orphans(&db, page.max(1), page_size.clamp(1, 1000)).await?;
            for r in rows {
                println!(
                    "{}",
                    serde_json::json!({"id": r.id, "provider": r.provider, "delivery": r.dedupe_key,
                        "received_at": r.received_at, "payload": r.payload})
                );
            }
            eprintln!("{total} orphan deliveries in all");
            return Ok(());
        }
        Command::Audit { business, limit } => {
            anyhow::ensure!((1..=10_000).contains(&limit), "--limit is 1 to 10000");
            let migrate = config.is_sqlite();
            let db = omega::prepare(&mut config, migrate).await?;
            for e in entities::audit::of_business(&db, business, limit).await? {
                println!("{}", serde_json::to_string(&e)?);
            }
            return Ok(());
        }
        Command::Jobs { command } => {
            let migrate = config.is_sqlite();
            let db = omega::prepare(&mut config, migrate).await?;
            let queue = omega::open_queue(&config, &db).await?;
            return omega::jobs_cli::run(queue, command).await;
        }
        Command::Messages {
            command:
                MessagesCommand::RetryFailed {
                    business,
                    channel,
                    since,
                    until,
                    limit,
                    dry_run,
                },
        } => {
            let channel = match channel.as_deref() {
                None => None,
                Some("sms") => Some(entities::types::Channel::Sms),
                Some("email") => Some(entities::types::Channel::Email),
                Some(other) => anyhow::bail!("--channel is sms or email, not {other:?}"),
            };
            anyhow::ensure!((1..=10_000).contains(&limit), "--limit is 1 to 10000");
            let migrate = config.is_sqlite();
            let db = omega::prepare(&mut config, migrate).await?;
            let producer = jobs::Producer::new(omega::open_queue(&config, &db).await?);
            let selection = entities::outbound::RetrySelection {
                business_id: business,
                message_ids: None,
                channel,
                since,
                until,
                limit,
            };
            let outcome =
                jobs::ops::retry_failed(&db, &producer, &selection, dry_run, None).await?;
            let verb = if dry_run { "would queue" } else { "queued" };
            println!(
                "{verb} {} failed message(s) again; skipped {} permanent failure(s)",
                outcome.queued.len(),
                outcome.skipped_permanent
            );
            return Ok(());
        }
        Command::Keys {
            command: KeysCommand::List { business },
        } => {
            let migrate = config.is_sqlite();
            let db = omega::prepare(&mut config, migrate).await?;
            for k in entities::keys::list_for_business(&db, business).await? {
                let used = k
                    .last_used_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into());
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{state}\tcreated {}\tlast used {used}",
                    k.id,
                    k.prefix,
                    k.name,
                    k.created_at.to_rfc3339()
                );
            }
            return Ok(());
        }
        Command::Keys {
            command: KeysCommand::Revoke { id },
        } => {
            let migrate = config.is_sqlite();
            let db = omega::prepare(&mut config, migrate).await?;
            let k = entities::keys::revoke(&db, id)
                .await
                .context("revoking the key")?;
            println!("revoked key {} ({})", k.id, k.prefix);
            return Ok(());
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    platform,
                    business,
                    name,
                },
        } => {
            let migrate = config.is_sqlite();
            let db = omega::prepare(&mut config, migrate).await?;
            let kind = match (platform, business) {
                (true, _) => entities::keys::KeyKind::Platform,
                (false, Some(id)) => entities::keys::KeyKind::Business(id),
                (false, None) => anyhow::bail!("say --platform or --business ID"),
            };
            let (row, key) = entities::keys::create(&db, kind, &name, entities::keys::generate())
                .await
                .context("creating the key")?;
            println!("{key}");
            eprintln!(
                "key {} ({}) created; it is not shown again",
                row.id, row.prefix
            );
            return Ok(());
        }
    };
    let running = omega::start(config, role).await?;
    running.run_until(shutdown_signal()).await
}
