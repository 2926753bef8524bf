//! Nothing accepted is lost: jobs answered 200 while no worker runs survive, and a worker
//! killed with SIGKILL mid-batch leaves its jobs to be taken over; every message ends up
//! recorded exactly once. Runs the real `omega worker` binary as a separate process.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use omega::Role;
use serde_json::{Value, json};

const REQUESTS: usize = 400;
const PER_REQUEST: usize = 5;

fn spawn_worker(sandbox: &Sandbox, log: &std::path::Path) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_omega"))
        .arg("worker")
        .arg("--concurrency")
        .arg("4")
        .envs(&sandbox.env)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the omega binary starts")
}

async fn held_jobs(app: &TestApp) -> u64 {
    app.queue
        .stats()
        .await
        .unwrap()
        .iter()
        .find(|s| s.job_type == "record_sms")
        .unwrap()
        .running
}

async fn killed_worker_loses_nothing(d: Deployment) {
    let sandbox = Sandbox::new(d).await;
    let app = TestApp::spawn_in(sandbox, Role::Ingress).await;
    app.onboard_directly(1).await;

    // Accept every request with no worker running.
    let app_ref = &app;
    for batch in 0..REQUESTS / 20 {
        let posts = (0..20).map(|i| {
            let n = batch * 20 + i;
            let messages: Vec<Value> = (0..PER_REQUEST)
                .map(|k| json!({"client_id": n as i64, "to_number": "+14155550123", "message": format!("m{n}-{k}"), "status": "sent"}))
                .collect();
            let body = json!({"category": "conversation", "messages": messages});
            async move { app_ref.post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body).await.status() }
        });
        for status in futures::future::join_all(posts).await {
            assert_eq!(status, 200);
        }
    }
    let expected = (REQUESTS * PER_REQUEST) as i64;
    let log = tempfile::NamedTempFile::new().unwrap();

    // A worker starts, works a while, and is killed with SIGKILL while it holds jobs.
    let mut first = spawn_worker(&app.sandbox, log.path());
    wait_for(
        "the first worker to be busy",
        Duration::from_secs(60),
        || async {
            let recorded = app.count("SELECT COUNT(*) FROM messages").await;
            (recorded >= expected / 5 && held_jobs(&app).await > 0).then_some(())
        },
    )
    .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let recorded_at_kill = app.count("SELECT COUNT(*) FROM messages").await;
    assert!(
        recorded_at_kill < expected,
        "the kill came too late to test anything"
    );
    assert!(held_jobs(&app).await > 0, "the killed worker held no jobs");

    // A second worker takes over, including the jobs the dead one held.
    let mut second = spawn_worker(&app.sandbox, log.path());
    wait_for("every job to settle", Duration::from_secs(120), || async {
        let s = app.queue.stats().await.unwrap();
        let s = s.iter().find(|s| s.job_type == "record_sms").unwrap();
        if s.dead > 0 {
            let dead = app
                .queue
                .list_dead(jobs::JobType::RecordSms, &Default::default(), 0, 3)
                .await
                .unwrap();
            panic!(
                "{s:?}: {:?}",
                dead.items.iter().map(|j| &j.last_error).collect::<Vec<_>>()
            );
        }
        (s.pending + s.running + s.retrying == 0).then_some(())
    })
    .await;
    second.start_kill().unwrap();
    second.wait().await.unwrap();

    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        expected,
        "every accepted message recorded once"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM (SELECT DISTINCT body FROM messages) AS d")
            .await,
        expected,
        "no message recorded twice"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM message_events").await,
        expected
    );
    let log_text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!log_text.contains("panicked"), "{log_text}");
}
both_deployments!(killed_worker, killed_worker_loses_nothing);

async fn accepted_jobs_survive_an_ingress_restart(d: Deployment) {
    // Accept with an ingress-only process, stop it, then start the embedded default's
    // `serve`: the jobs accepted before are processed.
    let sandbox = Sandbox::new(d).await;
    let app = TestApp::spawn_in(sandbox, Role::Ingress).await;
    app.onboard_directly(1).await;
    let body = json!({"category": "conversation", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "kept", "status": "sent"}]});
    let ok: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let sandbox = app.stop().await;
    let app = TestApp::spawn_in(sandbox, Role::Serve).await;
    let v = app
        .request_messages(1, ok["request_id"].as_str().unwrap(), 1)
        .await;
    assert_eq!(v["messages"][0]["body"], "kept");
}
both_deployments!(ingress_restart, accepted_jobs_survive_an_ingress_restart);
