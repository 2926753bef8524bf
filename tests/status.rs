//! Delivery status updates: forward-only, every report kept once in the history, reports that
//! overtake the message they are about are applied when it appears.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, TestApp, wait_for};
use serde_json::{Value, json};

async fn record(app: &TestApp, provider_message_id: &str) -> Value {
    let body = json!({"category": "conversation", "provider": "twilio", "messages": [
        {"client_id": 5, "to_number": "+14155550123", "message": "hi", "status": "sent", "provider_message_id": provider_message_id}]});
    let ok: Value = app
        .post("/businesses/1/sms/record", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    app.request_messages(1, ok["request_id"].as_str().unwrap(), 1)
        .await["messages"][0]
        .clone()
}

async fn history(app: &TestApp, message: &Value) -> Value {
    let rid = message["request_id"].as_str().unwrap();
    app.request_messages(1, rid, 1).await["messages"][0].clone()
}

async fn idle(app: &TestApp) {
    wait_for("the queue to be idle", Duration::from_secs(20), || async {
        let s = app.queue.stats().await.unwrap();
        let dead = app
            .queue
            .list_dead(jobs::JobType::UpdateStatus, &Default::default(), 0, 1)
            .await
            .unwrap();
        assert!(dead.items.is_empty(), "{:?}", dead.items);
        s.iter()
            .all(|s| s.pending + s.running + s.retrying == 0)
            .then_some(())
    })
    .await;
}

async fn status_moves_forward_only(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let m = record(&app, "SM1").await;
    let id = m["id"].as_i64().unwrap();
    // Reversed and duplicated: delivered, then the older sent and queued, then delivered again.
    let updates = json!({"updates": [
        {"message_id": id, "status": "delivered", "occurred_at": "2026-01-01T10:00:03Z"},
        {"message_id": id, "status": "sent", "occurred_at": "2026-01-01T10:00:02Z"},
        {"message_id": id, "status": "queued", "occurred_at": "2026-01-01T10:00:01Z"},
        {"message_id": id, "status": "delivered", "occurred_at": "2026-01-01T10:00:03Z"}
    ]});
    let resp = app
        .post("/businesses/1/sms/status", Some(PLATFORM_KEY), &updates)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"success": true, "updated": 4})
    );
    // The same request again records nothing more.
    assert_eq!(
        app.post("/businesses/1/sms/status", Some(PLATFORM_KEY), &updates)
            .await
            .status(),
        200
    );
    idle(&app).await;
    let m = history(&app, &m).await;
    assert_eq!(m["status"], "delivered");
    assert!(
        m["delivered_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01T10:00:03")
    );
    let events: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    // Oldest first: the recorded `sent` (now), then queued, sent, delivered by their times.
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(&events[..3], ["queued", "sent", "delivered"]);
    // By the provider's id; `read` ranks above delivered; a late failure does not undo it.
    let updates = json!({"updates": [
        {"provider_message_id": "SM1", "status": "read"},
        {"provider_message_id": "SM1", "status": "failed", "error_code": "30003", "error_message": "Unreachable"}
    ]});
    assert_eq!(
        app.post("/businesses/1/sms/status", Some(PLATFORM_KEY), &updates)
            .await
            .status(),
        200
    );
    idle(&app).await;
    let m = history(&app, &m).await;
    assert_eq!(m["status"], "read");
    assert_eq!(m["error_code"], Value::Null);
    let last = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "failed")
        .unwrap()
        .clone();
    assert_eq!(last["error_code"], "30003");
    assert_eq!(m["events"].as_array().unwrap().len(), 6);
}
both_deployments!(forward_only, status_moves_forward_only);

async fn reports_wait_for_their_message(d: Deployment) {
    // Enough attempts to outlast the message being recorded.
    let mut sandbox = common::Sandbox::new(d).await;
    sandbox.set("OMEGA_JOB_MAX_ATTEMPTS", "25");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    // The callback overtakes the send it reports on: it is retried until the message exists.
    let updates = json!({"updates": [{"provider_message_id": "SM9", "status": "delivered"}]});
    assert_eq!(
        app.post("/businesses/1/sms/status", Some(PLATFORM_KEY), &updates)
            .await
            .status(),
        200
    );
    let m = record(&app, "SM9").await;
    wait_for(
        "the early report to apply",
        Duration::from_secs(20),
        || async { (history(&app, &m).await["status"] == "delivered").then_some(()) },
    )
    .await;
}
both_deployments!(early_reports, reports_wait_for_their_message);

async fn reports_about_no_message_are_dropped(d: Deployment) {
    // With the test schedule (3 attempts), a report whose message never appears is dropped
    // and counted once its attempts run out: never buried, so bogus reports cannot fill the
    // dead-letter store.
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    let updates = json!({"updates": [{"message_id": 999999, "status": "delivered"}]});
    assert_eq!(
        app.post("/businesses/1/email/status", Some(PLATFORM_KEY), &updates)
            .await
            .status(),
        200
    );
    wait_for(
        "the report to be dropped",
        Duration::from_secs(20),
        || async {
            let metrics = app.get("/metrics", None).await.text().await.unwrap();
            metrics
                .lines()
                .any(|l| l == "omega_status_reports_dropped_total 1")
                .then_some(())
        },
    )
    .await;
    let stats = app.queue.stats().await.unwrap();
    let status = stats
        .iter()
        .find(|s| s.job_type == jobs::JobType::UpdateStatus.as_str())
        .unwrap();
    assert_eq!((status.dead, status.done), (0, 1), "{status:?}");
}
both_deployments!(unknown_message, reports_about_no_message_are_dropped);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_requests_are_validated() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    app.onboard(1).await;
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"message_id": i + 1, "status": "sent"}))
        .collect();
    for (body, loc) in [
        (json!({"updates": []}), json!(["body", "updates"])),
        (json!({"updates": many}), json!(["body", "updates"])),
        (
            json!({"updates": [{"status": "sent"}]}),
            json!(["body", "updates", 0]),
        ),
        (
            json!({"updates": [{"message_id": 1, "provider_message_id": "SM1", "status": "sent"}]}),
            json!(["body", "updates", 0]),
        ),
        (
            json!({"updates": [{"message_id": 1, "status": "lost"}]}),
            json!(["body", "updates", 0, "status"]),
        ),
        (
            json!({"updates": [{"message_id": "x", "status": "sent"}]}),
            json!(["body", "updates", 0, "message_id"]),
        ),
        (
            json!({"updates": [{"message_id": 1, "status": "sent", "occurred_at": "soon"}]}),
            json!(["body", "updates", 0, "occurred_at"]),
        ),
    ] {
        for path in ["/businesses/1/sms/status", "/businesses/1/email/status"] {
            let resp = app.post(path, Some(PLATFORM_KEY), &body).await;
            assert_eq!(resp.status(), 422, "{path} {body}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["detail"][0]["loc"], loc, "{path} {body}: {v}");
        }
    }
    assert_eq!(
        app.post(
            "/businesses/9/sms/status",
            Some(PLATFORM_KEY),
            &json!({"updates": [{"message_id": 1, "status": "sent"}]})
        )
        .await
        .status(),
        404
    );
}
