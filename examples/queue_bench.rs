//! Queue benchmark (run by `scripts/bench queue`): on one backend, pushes N jobs, drains them
//! through an apalis worker with a no-op handler, buries N more through the queue API, and
//! replays them all as an operator would. Prints one line per step with its rate.
//!
//!   cargo run --release --example queue_bench -- embedded 100000
//!   cargo run --release --example queue_bench -- redis 100000
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apalis::prelude::*;
use jobs::worker::QueueSource;
use jobs::{DeadSelector, Delivery, Envelope, JobError, JobQueue, JobType, RetryPolicy, ops};

fn envelope(n: usize) -> Envelope {
    Envelope {
        id: uuid::Uuid::new_v4().to_string(),
        job_type: JobType::RecordSms,
        request_id: Some(uuid::Uuid::new_v4().to_string()),
        trace_id: None,
        business_id: Some((n % 50) as i64),
        attempt: 0,
        enqueued_at: chrono::Utc::now().timestamp_millis(),
        last_error: None,
        first_failed_at: None,
        payload: serde_json::value::to_raw_value(
            &serde_json::json!({"type": "record_sms", "data": {"n": n}}),
        )
        .expect("a JSON payload"),
    }
}

async fn noop(_d: Arc<Delivery>, done: Data<Arc<AtomicUsize>>) -> Result<(), JobError> {
    done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn report(step: &str, n: usize, took: Duration) {
    println!(
        "{step:<34} {n:>9} jobs {:>9.2} s {:>10.0} jobs/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}

async fn pending(queue: &Arc<dyn JobQueue>) -> anyhow::Result<u64> {
    let s = queue.stats().await?;
    Ok(s.iter()
        .find(|s| s.job_type == "record_sms")
        .map(|s| s.pending + s.running)
        .unwrap_or(0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map(String::as_str).unwrap_or("embedded");
    let n: usize = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut config = omega::Config::from_lookup(|k| match k {
        "OMEGA_DATA_DIR" => Some(dir.path().display().to_string()),
        "OMEGA_REDIS_URL" if backend == "redis" => Some(
            std::env::var("OMEGA_BENCH_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        "OMEGA_REDIS_PREFIX" => Some(prefix.clone()),
        _ => None,
    })?;
    if !matches!(backend, "embedded" | "redis") {
        bail!("backend is embedded or redis");
    }
    let db = omega::prepare(&mut config, true).await?;
    let queue = omega::open_queue(&config, &db).await?;
    println!("backend: {backend}, {n} jobs");

    // 1. Push.
    let started = Instant::now();
    let all: Vec<Envelope> = (0..n).map(envelope).collect();
    for chunk in all.chunks(1000) {
        queue.push(chunk).await?;
    }
    report("push (batches of 1000)", n, started.elapsed());

    // 2. Drain through two apalis workers (no-op handler), as a worker process would.
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut stops = Vec::new();
    for i in 0..2 {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let source = QueueSource::new(
            queue.clone(),
            JobType::RecordSms,
            format!("bench-{i}"),
            64,
            RetryPolicy::default(),
        );
        let worker = WorkerBuilder::new(format!("bench-{i}"))
            .backend(source)
            .concurrency(64)
            .data(done.clone())
            .build(noop);
        tokio::spawn(worker.run_until(async move {
            let _ = rx.await;
            Ok::<(), std::io::Error>(())
        }));
        stops.push(tx);
    }
    while done.load(Ordering::Relaxed) < n || pending(&queue).await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report("drain (2 workers x 64, no-op)", n, started.elapsed());
    for s in stops {
        let _ = s.send(());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 3. Bury n jobs (as if a provider outage killed them all).
    for chunk in all.chunks(1000) {
        let fresh: Vec<Envelope> = chunk
            .iter()
            .map(|e| Envelope {
                id: uuid::Uuid::new_v4().to_string(),
                ..e.clone()
            })
            .collect();
        queue.push(&fresh).await?;
    }
    let started = Instant::now();
    let mut buried = 0;
    while buried < n {
        let got = queue
            .fetch(
                JobType::RecordSms,
                "bench-bury",
                1000,
                Duration::from_millis(100),
            )
            .await?;
        for d in &got {
            queue
                .bury(d, "provider unavailable: connection refused")
                .await?;
        }
        buried += got.len();
    }
    report("bury", n, started.elapsed());

    // 4. Replay them all, in chunks, as `omega jobs dead replay --all` does.
    let started = Instant::now();
    let replayed = ops::apply_in_chunks(
        queue.as_ref(),
        JobType::RecordSms,
        &DeadSelector::default(),
        true,
        |_, _| {},
    )
    .await?;
    report("replay all dead", replayed as usize, started.elapsed());
    let back = pending(&queue).await?;
    if back as usize != n || replayed as usize != n {
        bail!("replayed {replayed}, {back} back on the queue; expected {n}");
    }

    if backend == "redis" {
        let client = redis::Client::open(config.redis_url.clone().context("redis url")?)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{prefix}:*"))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
        }
    }
    Ok(())
}
