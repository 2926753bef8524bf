//! Operations: the admin queue endpoints, the `omega jobs` CLI, `/metrics`, graceful shutdown
//! on SIGTERM, and the deployment files.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use jobs::JobType;
use serde_json::{Value, json};

/// Buries one undecodable record_sms job of business 1 through the real worker.
async fn one_dead_job(app: &TestApp) -> String {
    common::dead_job(
        app,
        json!({"type": "record_sms", "data": {"business_id": 1, "items": "broken"}}),
    )
    .await
}

async fn admin_queue_endpoints(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let id = one_dead_job(&app).await;
    let key1 = app.business_key(1).await;
    assert_eq!(app.get("/admin/queues", None).await.status(), 401);
    assert_eq!(app.get("/admin/queues", Some(&key1)).await.status(), 403);

    let page: Value = app
        .get("/admin/queues/record_sms/dead", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 1);
    assert_eq!(page["total_pages"], 1);
    let item = &page["items"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["business_id"], 1);
    assert_eq!(item["attempts"], 1);
    assert!(
        item["last_error"]
            .as_str()
            .unwrap()
            .starts_with("undecodable record_sms payload")
    );
    assert_eq!(item["summary"], "record_sms: 0 messages for business 1");
    let filtered: Value = app
        .get(
            "/admin/queues/record_sms/dead?business_id=2",
            Some(PLATFORM_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["total"], 0);
    let filtered: Value = app
        .get(
            "/admin/queues/record_sms/dead?error_contains=UNDECODABLE",
            Some(PLATFORM_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["total"], 1);
    assert_eq!(
        app.get("/admin/queues/nope/dead", Some(PLATFORM_KEY))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get(
            "/admin/queues/record_sms/dead?page_size=0",
            Some(PLATFORM_KEY)
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.get("/admin/queues/record_sms/dead?page=x", Some(PLATFORM_KEY))
            .await
            .status(),
        422
    );

    // Dry runs count and change nothing; unknown ids match nothing.
    let dry: Value = app
        .post(
            "/admin/queues/record_sms/dead/replay",
            Some(PLATFORM_KEY),
            &json!({"dry_run": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dry, json!({"count": 1, "dry_run": true}));
    let none: Value = app
        .post(
            "/admin/queues/record_sms/dead/drain",
            Some(PLATFORM_KEY),
            &json!({"ids": ["nope"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["count"], 0);
    assert_eq!(
        app.post(
            "/admin/queues/record_sms/dead/drain",
            Some(PLATFORM_KEY),
            &json!({"ids": []})
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.post(
            "/admin/queues/record_sms/dead/drain",
            Some(&key1),
            &json!({})
        )
        .await
        .status(),
        403
    );

    // Replay: the job runs again (and, still undecodable, dies again after one attempt).
    let replayed: Value = app
        .post(
            "/admin/queues/record_sms/dead/replay",
            Some(PLATFORM_KEY),
            &json!({"ids": [id]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replayed["count"], 1);
    wait_for(
        "the replayed job to die again",
        Duration::from_secs(20),
        || async {
            let stats = app.queue.stats().await.unwrap();
            let s = stats.iter().find(|s| s.job_type == "record_sms").unwrap();
            let page = app
                .queue
                .list_dead(JobType::RecordSms, &Default::default(), 0, 1)
                .await
                .unwrap();
            (s.dead == 1 && s.pending + s.running == 0 && page.items[0].last_failed_at > 0)
                .then_some(())
        },
    )
    .await;
    // Drain by filter.
    let drained: Value = app
        .post(
            "/admin/queues/record_sms/dead/drain",
            Some(PLATFORM_KEY),
            &json!({"business_id": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(drained["count"], 1);
    let v: Value = app
        .get("/admin/queues", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["dead"] == 0),
        "{v}"
    );
}
both_deployments!(admin_queues, admin_queue_endpoints);

fn omega(sandbox: &Sandbox, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(args)
        .envs(&sandbox.env)
        .env("RUST_LOG", "error")
        .output()
        .expect("omega runs")
}

async fn cli_jobs_commands(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let id = one_dead_job(&app).await;
    let sandbox = &app.sandbox;

    let out = omega(sandbox, &["jobs", "stats", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let record = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["job_type"] == "record_sms")
        .unwrap();
    assert_eq!(record["dead"], 1);

    let out = omega(sandbox, &["jobs", "dead", "list", "record_sms", "--json"]);
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["items"][0]["id"], id);
    let out = omega(sandbox, &["jobs", "dead", "show", "record_sms", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("undecodable"));

    // Replay and drain need a selection, and dry runs change nothing.
    let out = omega(sandbox, &["jobs", "dead", "drain", "record_sms"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all"));
    let out = omega(
        sandbox,
        &["jobs", "dead", "drain", "record_sms", "--all", "--dry-run"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "dry run: would drain 1 dead record_sms job(s)"
    );
    let out = omega(sandbox, &["jobs", "dead", "drain", "nope", "--all"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no queue named"));
    let out = omega(
        sandbox,
        &[
            "jobs",
            "dead",
            "drain",
            "record_sms",
            "--error",
            "undecodable",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "drained 1 dead record_sms job(s)"
    );
    assert_eq!(
        app.queue
            .list_dead(JobType::RecordSms, &Default::default(), 0, 1)
            .await
            .unwrap()
            .total,
        0
    );

    // The on-call script asks first and refuses without a terminal or --yes.
    let script = std::process::Command::new("scripts/drain-dead")
        .args(["record_sms", "--all"])
        .envs(&sandbox.env)
        .env("OMEGA_BIN", env!("CARGO_BIN_EXE_omega"))
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!script.status.success());
    assert!(String::from_utf8_lossy(&script.stdout).contains("would drain 0"));
    assert!(String::from_utf8_lossy(&script.stderr).contains("--yes"));
}
both_deployments!(cli_jobs, cli_jobs_commands);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_requests_jobs_and_queues() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    app.onboard(1).await;
    let body = json!({"category": "conversation", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "m", "status": "sent"}]});
    let ok: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    app.request_messages(1, ok["request_id"].as_str().unwrap(), 1)
        .await;
    let text = wait_for("the metrics", Duration::from_secs(15), || async {
        let text = app.get("/metrics", None).await.text().await.unwrap();
        (text.contains("omega_jobs_settled_total") && text.contains("omega_queue_jobs"))
            .then_some(text)
    })
    .await;
    for needle in [
        r#"omega_http_requests_total{route="/businesses/{business_id}/sms/record",method="POST",status="200"}"#,
        r#"omega_http_request_duration_seconds_bucket{route="/businesses/{business_id}/sms/record",method="POST""#,
        r#"omega_jobs_enqueued_total{job_type="record_sms"}"#,
        r#"omega_jobs_settled_total{job_type="record_sms",outcome="succeeded"}"#,
        r#"omega_job_duration_seconds_bucket{job_type="record_sms""#,
        r#"omega_queue_jobs{job_type="record_sms",state="dead"}"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // Unknown paths share one label instead of one per path.
    app.get("/no/such/path/123", None).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(text.contains(r#"route="unmatched""#));
    assert!(!text.contains("/no/such/path/123"));
}

async fn sigterm_stops_cleanly_and_loses_nothing(d: Deployment) {
    // A real `omega serve` process accepts jobs, gets SIGTERM, and exits 0; whatever it had
    // not finished is still queued and is done by the next process.
    let mut sandbox = Sandbox::new(d).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    sandbox.set("OMEGA_LISTEN", &format!("127.0.0.1:{port}"));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_omega"))
        .arg("serve")
        .envs(&sandbox.env)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("omega to listen", Duration::from_secs(30), || async {
        http.get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    let resp = http
        .post(format!("{base}/business/onboard"))
        .header("X-API-KEY", PLATFORM_KEY)
        .json(&common::onboard_body(1, "Spa"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    wait_for("the onboarding", Duration::from_secs(30), || async {
        let r = http
            .get(format!("{base}/business/1/onboarding-status"))
            .header("X-API-KEY", PLATFORM_KEY)
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        (v["status"] == "completed").then_some(())
    })
    .await;
    let mut request_ids = Vec::new();
    for n in 0..50 {
        let body = json!({"category": "conversation", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": format!("m{n}"), "status": "sent"}]});
        let r = http
            .post(format!("{base}/businesses/1/sms/record"))
            .header("X-API-KEY", PLATFORM_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        // Every request is accepted (the business exists), and the process is still running.
        if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            request_ids.push(v["request_id"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        request_ids.len() >= 40,
        "only {} requests were accepted",
        request_ids.len()
    );
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within the shutdown timeout")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    let mut sandbox = sandbox;
    sandbox.set("OMEGA_LISTEN", "127.0.0.1:0");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    for rid in &request_ids {
        app.request_messages(1, rid, 1).await;
    }
}
both_deployments!(sigterm, sigterm_stops_cleanly_and_loses_nothing);

#[test]
fn compose_file_describes_the_scaled_deployment() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/compose.yaml")).unwrap();
    let mut doc: serde_norway::Value =
        serde_norway::from_str(&text).expect("compose.yaml is valid YAML");
    doc.apply_merge().expect("merge keys resolve");
    let services = doc["services"].as_mapping().expect("services");
    for name in ["postgres", "redis", "migrate", "ingress", "worker", "proxy"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let command = |svc: &str| -> Vec<String> {
        doc["services"][svc]["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(command("migrate"), ["migrate"]);
    assert_eq!(command("ingress"), ["ingress"]);
    assert_eq!(command("worker"), ["worker"]);
    let redis = command("redis").join(" ");
    assert!(
        redis.contains("--appendonly yes"),
        "Redis must persist accepted jobs: {redis}"
    );
    assert_eq!(
        doc["services"]["ingress"]["deploy"]["replicas"].as_u64(),
        Some(2)
    );
    let health = format!("{:?}", doc["services"]["ingress"]["healthcheck"]["test"]);
    assert!(health.contains("/health"), "{health}");
    assert_eq!(
        doc["services"]["worker"]["depends_on"]["migrate"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    // The merged service definitions carry the scaled deployment's settings.
    let env = &doc["services"]["worker"]["environment"];
    assert!(
        env["OMEGA_DATABASE_URL"]
            .as_str()
            .unwrap()
            .starts_with("postgres://")
    );
    assert!(
        env["OMEGA_REDIS_URL"]
            .as_str()
            .unwrap()
            .starts_with("redis://")
    );
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("\nUSER "),
        "the runtime image runs as a non-root user"
    );
    assert!(
        dockerfile.matches("FROM ").count() >= 2,
        "multi-stage build"
    );
}

/// Issue 14, item 15: what only grows is swept after its retention (idempotency records after
/// their window, webhook receipts, dead jobs, finished onboarding runs but each business's
/// latest), and the sweep runs by itself in worker processes.
async fn expired_records_are_swept(d: Deployment) {
    use chrono::{Duration as Days, Utc};
    use entities::retention::Retention;
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set("OMEGA_SWEEP_EVERY_SECS", "1");
    sandbox.set("OMEGA_RETENTION_WEBHOOK_RECEIPTS_HOURS", "1");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    // A receipt two hours old goes by itself (retention 1 h, sweep every second); a new one stays.
    entities::receipts::record(&app.db, "twilio", "old", None, json!({"x": 1}))
        .await
        .unwrap();
    entities::receipts::record(&app.db, "twilio", "new", None, json!({"x": 2}))
        .await
        .unwrap();
    entities::webhook_receipt::Entity::update_many()
        .col_expr(
            entities::webhook_receipt::Column::ReceivedAt,
            Expr::value(Utc::now() - Days::hours(2)),
        )
        .filter(entities::webhook_receipt::Column::DedupeKey.eq("old"))
        .exec(&app.db)
        .await
        .unwrap();
    wait_for("the periodic sweep", Duration::from_secs(10), || async {
        (app.count("SELECT COUNT(*) FROM webhook_receipts WHERE dedupe_key = 'old'")
            .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_receipts").await, 1);

    // One sweep with the default retention, as of two days on. Every record is dated so that
    // the app's own sweep (every second, as of now) leaves it alone.
    let now = Utc::now();
    let then = now + Days::days(2);
    let dead = one_dead_job(&app).await;
    entities::idempotency::reserve(&app.db, "s", "old", "h", now)
        .await
        .unwrap();
    entities::idempotency::reserve(&app.db, "s", "new", "h", then)
        .await
        .unwrap();
    entities::onboard::start_run(&app.db, "old-run", 1)
        .await
        .unwrap();
    entities::onboard::set_run_status(&app.db, "old-run", entities::onboard::COMPLETED, None)
        .await
        .unwrap();
    let long_ago = now - Days::days(29);
    entities::onboarding_run::Entity::update_many()
        .col_expr(
            entities::onboarding_run::Column::CreatedAt,
            Expr::value(long_ago),
        )
        .col_expr(
            entities::onboarding_run::Column::UpdatedAt,
            Expr::value(long_ago),
        )
        .filter(entities::onboarding_run::Column::RequestId.eq("old-run"))
        .exec(&app.db)
        .await
        .unwrap();
    let retention = Retention::default();
    let report = workers::sweep::sweep_once(&app.db, app.queue.as_ref(), &retention, then)
        .await
        .unwrap();
    assert_eq!(report.data.idempotency_records, 1);
    assert_eq!(
        report.data.onboarding_runs, 1,
        "the old run; the latest is kept"
    );
    assert_eq!(report.dead_jobs, 0, "the dead job is two days old");
    assert_eq!(app.count("SELECT COUNT(*) FROM onboarding_runs").await, 1);
    assert_eq!(
        app.get("/business/1/onboarding-status", Some(PLATFORM_KEY))
            .await
            .status(),
        200
    );
    // A month on, the dead job goes too.
    let later = now + retention.dead_jobs + Days::hours(1);
    let report = workers::sweep::sweep_once(&app.db, app.queue.as_ref(), &retention, later)
        .await
        .unwrap();
    assert_eq!(report.dead_jobs, 1, "dead job {dead}");
    assert_eq!(
        app.queue
            .list_dead(JobType::RecordSms, &Default::default(), 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM onboarding_runs").await,
        1,
        "the latest run stays"
    );
}
both_deployments!(retention, expired_records_are_swept);
