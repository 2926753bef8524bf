//! The queue guarantees, on both backends (the embedded SQL queue and Redis Streams): retries
//! with backoff, dead letters with their last error, replay and drain, undecodable jobs, and a
//! backlog far above any batch size.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use common::{Deployment, Sandbox, wait_for};
use jobs::worker::QueueSource;
use jobs::{DeadSelector, Delivery, Envelope, JobError, JobQueue, JobType, RetryPolicy};
use serde_json::json;

const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base: Duration::from_millis(20),
    cap: Duration::from_millis(80),
};

async fn open(d: Deployment) -> (Sandbox, Arc<dyn JobQueue>) {
    let sandbox = Sandbox::new(d).await;
    let mut config = sandbox.config();
    let db = omega::prepare(&mut config, true).await.unwrap();
    let queue = omega::open_queue(&config, &db).await.unwrap();
    (sandbox, queue)
}

fn envelope(payload: serde_json::Value) -> Envelope {
    Envelope {
        id: uuid::Uuid::new_v4().to_string(),
        job_type: JobType::RecordSms,
        request_id: Some(uuid::Uuid::new_v4().to_string()),
        trace_id: None,
        business_id: Some(payload["business"].as_i64().unwrap_or(1)),
        attempt: 0,
        enqueued_at: chrono::Utc::now().timestamp_millis(),
        last_error: None,
        first_failed_at: None,
        payload: serde_json::value::to_raw_value(&payload).unwrap(),
    }
}

/// What the test handler saw.
#[derive(Default)]
struct Seen {
    attempts: Mutex<Vec<(String, u32)>>,
    succeeded: AtomicUsize,
    /// When set, jobs in `always` mode succeed (for replays).
    heal: std::sync::atomic::AtomicBool,
}

/// A handler driven by the payload's `mode`: `ok`, `flaky` (fails until its third attempt),
/// `once` (fails its first attempt), `permanent`, `always` (transient, every time).
async fn handler(d: Arc<Delivery>, seen: Data<Arc<Seen>>) -> Result<(), JobError> {
    seen.attempts
        .lock()
        .unwrap()
        .push((d.envelope.id.clone(), d.attempt));
    let mode = d.envelope.payload_value()["mode"]
        .as_str()
        .unwrap_or("ok")
        .to_owned();
    let result = match mode.as_str() {
        "flaky" if d.attempt < 3 => {
            Err(JobError::Transient(format!("flaky attempt {}", d.attempt)))
        }
        "once" if d.attempt < 2 => Err(JobError::Transient("first attempt fails".into())),
        "permanent" => Err(JobError::Permanent("recipient does not exist".into())),
        "always" if !seen.heal.load(Ordering::SeqCst) => {
            Err(JobError::Transient("provider is down".into()))
        }
        _ => Ok(()),
    };
    if result.is_ok() {
        seen.succeeded.fetch_add(1, Ordering::SeqCst);
    }
    result
}

/// Runs a worker over `queue` until the returned sender fires.
fn run_worker(
    queue: Arc<dyn JobQueue>,
    seen: Arc<Seen>,
    concurrency: usize,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let consumer = format!("test-{}", uuid::Uuid::new_v4().simple());
    let source = QueueSource::new(
        queue,
        JobType::RecordSms,
        consumer.clone(),
        concurrency,
        POLICY,
    );
    let worker = WorkerBuilder::new(consumer)
        .backend(source)
        .concurrency(concurrency)
        .data(seen)
        .build(handler);
    tokio::spawn(async move {
        let _ = worker
            .run_until(async move {
                let _ = rx.await;
                Ok::<(), std::io::Error>(())
            })
            .await;
    });
    tx
}

async fn stats(queue: &Arc<dyn JobQueue>) -> jobs::QueueStats {
    queue
        .stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.job_type == "record_sms")
        .unwrap()
}

async fn settled(queue: &Arc<dyn JobQueue>, done: u64, dead: u64) {
    wait_for("the queue to settle", Duration::from_secs(60), || async {
        let s = stats(queue).await;
        (s.done == done && s.dead == dead && s.pending + s.running + s.retrying == 0).then_some(())
    })
    .await;
}

async fn transient_failures_are_retried(d: Deployment) {
    let (_sandbox, queue) = open(d).await;
    let jobs: Vec<Envelope> = (0..5).map(|_| envelope(json!({"mode": "flaky"}))).collect();
    queue.push(&jobs).await.unwrap();
    let seen = Arc::new(Seen::default());
    let stop = run_worker(queue.clone(), seen.clone(), 4);
    settled(&queue, 5, 0).await;
    let attempts = seen.attempts.lock().unwrap().clone();
    for job in &jobs {
        let mut mine: Vec<u32> = attempts
            .iter()
            .filter(|(id, _)| id == &job.id)
            .map(|(_, a)| *a)
            .collect();
        mine.sort();
        assert_eq!(
            mine,
            vec![1, 2, 3],
            "job {} ran on attempts {mine:?}",
            job.id
        );
    }
    assert_eq!(seen.succeeded.load(Ordering::SeqCst), 5);
    let _ = stop.send(());
}
both_deployments!(retries, transient_failures_are_retried);

async fn dead_letters_replay_and_drain(d: Deployment) {
    let (_sandbox, queue) = open(d).await;
    let permanent = envelope(json!({"mode": "permanent", "business": 7}));
    let always = envelope(json!({"mode": "always", "business": 8}));
    queue
        .push(&[permanent.clone(), always.clone()])
        .await
        .unwrap();
    let seen = Arc::new(Seen::default());
    let stop = run_worker(queue.clone(), seen.clone(), 2);
    settled(&queue, 0, 2).await;

    // The permanent failure ran once; the transient one until the policy gave up.
    let attempts = seen.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts
            .iter()
            .filter(|(id, _)| id == &permanent.id)
            .count(),
        1
    );
    assert_eq!(
        attempts.iter().filter(|(id, _)| id == &always.id).count(),
        POLICY.max_attempts as usize
    );

    let page = queue
        .list_dead(JobType::RecordSms, &DeadSelector::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    let dead_permanent = page.items.iter().find(|j| j.id == permanent.id).unwrap();
    assert_eq!(dead_permanent.last_error, "recipient does not exist");
    assert_eq!(dead_permanent.attempts, 1);
    assert_eq!(dead_permanent.business_id, Some(7));
    assert_eq!(dead_permanent.payload["mode"], "permanent");
    let dead_always = page.items.iter().find(|j| j.id == always.id).unwrap();
    assert!(
        dead_always
            .last_error
            .starts_with("gave up after 3 attempts"),
        "{}",
        dead_always.last_error
    );
    assert!(dead_always.first_failed_at <= dead_always.last_failed_at);

    // Filters.
    let by_error = DeadSelector {
        error_contains: Some("PROVIDER IS DOWN".into()),
        ..Default::default()
    };
    let found = queue
        .list_dead(JobType::RecordSms, &by_error, 0, 10)
        .await
        .unwrap();
    assert_eq!(
        found
            .items
            .iter()
            .map(|j| j.id.as_str())
            .collect::<Vec<_>>(),
        vec![always.id.as_str()]
    );
    let by_business = DeadSelector {
        business_id: Some(7),
        ..Default::default()
    };
    assert_eq!(
        queue
            .list_dead(JobType::RecordSms, &by_business, 0, 10)
            .await
            .unwrap()
            .total,
        1
    );
    assert_eq!(
        queue
            .list_dead(JobType::RecordSms, &DeadSelector::default(), 1, 10)
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Replay the transient one once the provider is back: it runs once more and succeeds.
    seen.heal.store(true, Ordering::SeqCst);
    let one = DeadSelector {
        ids: Some(vec![always.id.clone()]),
        ..Default::default()
    };
    assert_eq!(
        queue.replay_dead(JobType::RecordSms, &one).await.unwrap(),
        1
    );
    assert_eq!(
        queue.replay_dead(JobType::RecordSms, &one).await.unwrap(),
        0,
        "a second replay finds nothing"
    );
    settled(&queue, 1, 1).await;
    assert_eq!(seen.succeeded.load(Ordering::SeqCst), 1);

    // Drain the permanent one.
    assert_eq!(
        queue
            .drain_dead(JobType::RecordSms, &DeadSelector::default())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        queue
            .list_dead(JobType::RecordSms, &DeadSelector::default(), 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
    settled(&queue, 1, 0).await;
    let _ = stop.send(());
}
both_deployments!(dead_letters, dead_letters_replay_and_drain);

async fn backlog_far_above_batch_size_drains(d: Deployment) {
    const JOBS: usize = 20_000;
    let (_sandbox, queue) = open(d).await;
    // Every job fails once, so the whole backlog also passes through the retry schedule.
    let jobs: Vec<Envelope> = (0..JOBS)
        .map(|_| envelope(json!({"mode": "once"})))
        .collect();
    for chunk in jobs.chunks(2_000) {
        queue.push(chunk).await.unwrap();
    }
    assert_eq!(stats(&queue).await.pending, JOBS as u64);
    let seen = Arc::new(Seen::default());
    let stops = [
        run_worker(queue.clone(), seen.clone(), 64),
        run_worker(queue.clone(), seen.clone(), 64),
    ];
    wait_for("the backlog to drain", Duration::from_secs(240), || async {
        let s = stats(&queue).await;
        assert_eq!(s.dead, 0, "{s:?}");
        (s.done == JOBS as u64 && s.pending + s.running + s.retrying == 0).then_some(())
    })
    .await;
    assert_eq!(seen.succeeded.load(Ordering::SeqCst), JOBS);
    for stop in stops {
        let _ = stop.send(());
    }
}
both_deployments!(backlog, backlog_far_above_batch_size_drains);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stream_entries_are_buried_and_the_worker_goes_on() {
    let (sandbox, queue) = open(Deployment::Scaled).await;
    let prefix = sandbox.env["OMEGA_REDIS_PREFIX"].clone();
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stream = format!("{{{prefix}:record_sms}}:stream");
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("e")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("other")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    queue
        .push(&[envelope(json!({"mode": "ok"}))])
        .await
        .unwrap();
    let seen = Arc::new(Seen::default());
    let stop = run_worker(queue.clone(), seen.clone(), 2);
    settled(&queue, 1, 2).await;
    let page = queue
        .list_dead(JobType::RecordSms, &DeadSelector::default(), 0, 10)
        .await
        .unwrap();
    assert!(
        page.items
            .iter()
            .any(|j| j.last_error.starts_with("undecodable job envelope")),
        "{page:?}"
    );
    assert!(
        page.items
            .iter()
            .any(|j| j.last_error == "stream entry without an envelope"),
        "{page:?}"
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_table_rows_are_buried_and_the_worker_goes_on() {
    use sea_orm::ConnectionTrait;
    let sandbox = Sandbox::new(Deployment::Embedded).await;
    let mut config = sandbox.config();
    let db = omega::prepare(&mut config, true).await.unwrap();
    let queue = omega::open_queue(&config, &db).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO omega_jobs (id, job_type, payload, state, attempts, run_at, created_at) \
         VALUES ('broken-1', 'record_sms', '{not json', 'ready', 0, 0, 0)",
    )
    .await
    .unwrap();
    queue
        .push(&[envelope(json!({"mode": "ok"}))])
        .await
        .unwrap();
    let seen = Arc::new(Seen::default());
    let stop = run_worker(queue.clone(), seen.clone(), 2);
    settled(&queue, 1, 1).await;
    let page = queue
        .list_dead(JobType::RecordSms, &DeadSelector::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(page.items[0].id, "broken-1");
    assert!(
        page.items[0]
            .last_error
            .starts_with("undecodable job envelope")
    );
    let _ = stop.send(());
}

async fn undecodable_payloads_go_dead_and_the_worker_goes_on(d: Deployment) {
    // A well-formed envelope whose payload is no RecordSms job: the real worker buries it with
    // the decode error and goes on with the next job.
    let app = common::TestApp::spawn(d).await;
    app.onboard(1).await;
    let mut bad =
        envelope(json!({"type": "record_sms", "data": {"business_id": 1, "items": "not a list"}}));
    bad.business_id = Some(1);
    app.queue.push(&[bad.clone()]).await.unwrap();
    let body = json!({"category": "conversation", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "after", "status": "sent"}]});
    let ok: serde_json::Value = app
        .post(
            "/businesses/1/sms/record",
            Some(common::PLATFORM_KEY),
            &body,
        )
        .await
        .json()
        .await
        .unwrap();
    app.request_messages(1, ok["request_id"].as_str().unwrap(), 1)
        .await;
    let dead = wait_for(
        "the bad job to be buried",
        Duration::from_secs(20),
        || async {
            let page = app
                .queue
                .list_dead(JobType::RecordSms, &DeadSelector::default(), 0, 10)
                .await
                .unwrap();
            (page.total == 1).then_some(page)
        },
    )
    .await;
    assert_eq!(dead.items[0].id, bad.id);
    assert_eq!(dead.items[0].attempts, 1, "decode errors are not retried");
    assert!(
        dead.items[0]
            .last_error
            .starts_with("undecodable record_sms payload"),
        "{}",
        dead.items[0].last_error
    );
}
both_deployments!(
    undecodable_payload,
    undecodable_payloads_go_dead_and_the_worker_goes_on
);

/// Notes (what a send's provider accepted, kept until its batch records it) are kept, read,
/// forgotten, and swept when left behind, on both backends.
async fn notes_are_kept_until_forgotten(d: Deployment) {
    let (_sandbox, queue) = open(d).await;
    assert_eq!(queue.noted("sent:1").await.unwrap(), None);
    queue.note("sent:1", "first").await.unwrap();
    queue.note("sent:1", "again").await.unwrap();
    queue.note("sent:2", "second").await.unwrap();
    assert_eq!(
        queue.noted("sent:1").await.unwrap().as_deref(),
        Some("again")
    );
    queue
        .forget_notes(&["sent:1".into(), "sent:3".into()])
        .await
        .unwrap();
    assert_eq!(queue.noted("sent:1").await.unwrap(), None);
    assert_eq!(
        queue.noted("sent:2").await.unwrap().as_deref(),
        Some("second")
    );
    if d == Deployment::Embedded {
        // The table's notes go with the dead jobs' sweep (Redis's expire by themselves).
        let later = chrono::Utc::now().timestamp_millis() + 1;
        queue.sweep_dead(later).await.unwrap();
        assert_eq!(queue.noted("sent:2").await.unwrap(), None);
    }
}
both_deployments!(notes, notes_are_kept_until_forgotten);
