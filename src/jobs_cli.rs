//! `omega jobs …`: queue counts and the dead-letter store from the command line, against
//! whichever queue the configuration names (embedded or Redis). Same operations as the admin
//! HTTP API, through `jobs::ops`.
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jobs::{DeadSelector, JobQueue, JobType, ops};

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Counts per job type: pending, running, failed (retrying), dead, done.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// The dead-letter store.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Args, Clone)]
pub struct Filter {
    /// The queue: record_sms, record_email, onboard.
    pub job_type: String,
    /// Only jobs of this business.
    #[arg(long)]
    pub business: Option<i64>,
    /// Only jobs whose last error contains this text (case-insensitive).
    #[arg(long)]
    pub error: Option<String>,
}

#[derive(Subcommand)]
pub enum DeadCommand {
    /// Dead jobs, newest failure first.
    List {
        #[command(flatten)]
        filter: Filter,
        #[arg(long, default_value_t = 1)]
        page: u64,
        #[arg(long, default_value_t = 20)]
        page_size: u64,
        #[arg(long)]
        json: bool,
    },
    /// One dead job with its payload.
    Show { job_type: String, id: String },
    /// Put dead jobs back on their queue (by --id, by filter, or --all).
    Replay(Action),
    /// Delete dead jobs (by --id, by filter, or --all).
    Drain(Action),
}

#[derive(Args)]
pub struct Action {
    #[command(flatten)]
    filter: Filter,
    /// These jobs (repeatable).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Every dead job of the type, when no --id or filter is given.
    #[arg(long)]
    all: bool,
    /// Count what would be done, change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn job_type(name: &str) -> anyhow::Result<JobType> {
    JobType::parse(name).with_context(|| {
        let known: Vec<&str> = JobType::ALL.iter().map(|t| t.as_str()).collect();
        format!("no queue named {name:?}; queues: {}", known.join(", "))
    })
}

fn selector(filter: &Filter, ids: Vec<String>) -> DeadSelector {
    DeadSelector {
        ids: (!ids.is_empty()).then_some(ids),
        business_id: filter.business,
        error_contains: filter.error.clone(),
    }
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

pub async fn run(queue: Arc<dyn JobQueue>, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Stats { json } => {
            let stats = queue.stats().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!(
                    "{:<14} {:>10} {:>10} {:>10} {:>10} {:>12}",
                    "queue", "pending", "running", "failed", "dead", "done"
                );
                for s in stats {
                    println!(
                        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>12}",
                        s.job_type, s.pending, s.running, s.retrying, s.dead, s.done
                    );
                }
            }
        }
        JobsCommand::Dead {
            command:
                DeadCommand::List {
                    filter,
                    page,
                    page_size,
                    json,
                },
        } => {
            let t = job_type(&filter.job_type)?;
            let size = page_size.clamp(1, 1000);
            let found = queue
                .list_dead(
                    t,
                    &selector(&filter, vec![]),
                    page.max(1).saturating_sub(1) * size,
                    size,
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                println!("{} dead {} job(s); page {page}", found.total, t);
                for j in &found.items {
                    println!(
                        "{}  attempts={}  last_failed={}  {}\n    error: {}",
                        j.id,
                        j.attempts,
                        time(j.last_failed_at),
                        ops::summarize(j),
                        j.last_error
                    );
                }
            }
        }
        JobsCommand::Dead {
            command: DeadCommand::Show { job_type: name, id },
        } => {
            let t = job_type(&name)?;
            let only = DeadSelector {
                ids: Some(vec![id.clone()]),
                ..Default::default()
            };
            let found = queue.list_dead(t, &only, 0, 1).await?;
            let job = found
                .items
                .into_iter()
                .next()
                .with_context(|| format!("no dead {t} job {id}"))?;
            println!("{}", serde_json::to_string_pretty(&job)?);
        }
        JobsCommand::Dead {
            command: DeadCommand::Replay(action),
        } => act(queue, action, true).await?,
        JobsCommand::Dead {
            command: DeadCommand::Drain(action),
        } => act(queue, action, false).await?,
    }
    Ok(())
}

async fn act(queue: Arc<dyn JobQueue>, action: Action, replay: bool) -> anyhow::Result<()> {
    let t = job_type(&action.filter.job_type)?;
    let narrowed =
        !action.ids.is_empty() || action.filter.business.is_some() || action.filter.error.is_some();
    if !narrowed && !action.all {
        bail!("name jobs with --id, narrow them with --business/--error, or say --all");
    }
    let verb = if replay { "replay" } else { "drain" };
    let selector = selector(&action.filter, action.ids);
    if action.dry_run {
        let n = queue.dead_ids(t, &selector).await?.len();
        println!("dry run: would {verb} {n} dead {t} job(s)");
        return Ok(());
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("valid progress template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("{verb} {t}"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let affected = ops::apply_in_chunks(queue.as_ref(), t, &selector, replay, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "{verb}ed {affected} dead {t} job(s)",
        verb = if replay { "replay" } else { "drain" }
    );
    Ok(())
}
