//! Send later (issue 15): `send_at` records a message `scheduled` at once and sends it at its
//! time through the normal send path (consent checked then); cancel by id or by request.
mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use serde_json::{Value, json};

const GRACE: &str = "+14155550123";

async fn app_in(sandbox: Sandbox) -> TestApp {
    TestApp::spawn_in(sandbox, omega::Role::Serve).await
}

async fn sandbox(d: Deployment) -> Sandbox {
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set("OMEGA_DEFAULT_SMS_PROVIDER", "sandbox");
    sandbox
}

fn sms(send_at: Option<DateTime<Utc>>, texts: &[&str]) -> Value {
    let messages: Vec<Value> = texts
        .iter()
        .map(|t| json!({"client_id": 5, "to_number": GRACE, "message": t}))
        .collect();
    json!({"category": "reminder", "location_id": 10, "send_at": send_at.map(|t| t.to_rfc3339()),
           "messages": messages})
}

/// Sends, and answers the request id.
async fn send(app: &TestApp, key: &str, body: &Value) -> String {
    let resp = app.post("/businesses/1/sms/send", Some(key), body).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let v: Value = resp.json().await.unwrap();
    v["request_id"].as_str().unwrap().to_owned()
}

/// The request's messages once every one of them is in one of `statuses`.
async fn messages_in(app: &TestApp, rid: &str, n: usize, statuses: &[&str]) -> Vec<Value> {
    wait_for(
        &format!("{statuses:?}"),
        Duration::from_secs(20),
        || async {
            let v = app.request_messages(1, rid, n).await;
            let all = v["messages"].as_array().unwrap().clone();
            all.iter()
                .all(|m| statuses.contains(&m["status"].as_str().unwrap()))
                .then_some(all)
        },
    )
    .await
}

fn event_time(m: &Value, status: &str) -> DateTime<Utc> {
    let e = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == status)
        .unwrap_or_else(|| panic!("no {status} event: {m}"));
    e["occurred_at"].as_str().unwrap().parse().unwrap()
}

async fn sent_at_its_time_and_not_before(d: Deployment) {
    let app = app_in(sandbox(d).await).await;
    app.onboard(1).await;
    let due = Utc::now() + chrono::Duration::seconds(3);
    let rid = send(
        &app,
        PLATFORM_KEY,
        &sms(Some(due), &["See you tomorrow at 3"]),
    )
    .await;
    // Recorded at once, scheduled, with its time; nothing sent.
    let m = messages_in(&app, &rid, 1, &["scheduled"]).await;
    let scheduled_at: DateTime<Utc> = m[0]["scheduled_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(scheduled_at.timestamp(), due.timestamp(), "{}", m[0]);
    assert!(m[0]["provider_message_id"].is_null());
    // Sent at its time, through the normal path.
    let m = messages_in(&app, &rid, 1, &["delivered"]).await;
    let released = event_time(&m[0], "queued");
    let first_queued = m[0]["events"][0]["status"].clone();
    assert_eq!(first_queued, "scheduled", "{}", m[0]);
    assert!(
        released >= due - chrono::Duration::milliseconds(5),
        "released at {released}, due {due}"
    );
    assert!(
        released < due + chrono::Duration::seconds(2),
        "released at {released}, due {due}: late"
    );
    // A send_at in the past is sent at once.
    let rid = send(
        &app,
        PLATFORM_KEY,
        &sms(Some(Utc::now() - chrono::Duration::hours(1)), &["Now"]),
    )
    .await;
    let m = messages_in(&app, &rid, 1, &["delivered"]).await;
    assert!(m[0]["scheduled_at"].is_null(), "{}", m[0]);
}
both_deployments!(sent_at_its_time, sent_at_its_time_and_not_before);

async fn canceled_before_and_not_after(d: Deployment) {
    let app = app_in(sandbox(d).await).await;
    app.onboard(1).await;
    app.onboard_directly(2).await;
    let (own, other) = (app.business_key(1).await, app.business_key(2).await);
    let later = Utc::now() + chrono::Duration::hours(1);
    let rid = send(&app, &own, &sms(Some(later), &["One", "Two", "Three"])).await;
    let m = messages_in(&app, &rid, 3, &["scheduled"]).await;
    let first = m[0]["id"].as_i64().unwrap();
    let cancel = |business: i64, id: i64| format!("/businesses/{business}/messages/{id}/cancel");

    // Another business cannot see it; a session cannot cancel; a bad id is 422.
    let resp = app.post(&cancel(2, first), Some(&other), &json!({})).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        app.post(&cancel(1, first), Some(&other), &json!({}))
            .await
            .status(),
        403
    );
    let session = app.session(1, 789).await;
    let resp = app
        .http
        .post(app.url(&cancel(1, first)))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .post("/businesses/1/messages/abc/cancel", Some(&own), &json!({}))
        .await;
    assert_eq!(resp.status(), 422);

    // Canceled while scheduled, then too late.
    let resp = app.post(&cancel(1, first), Some(&own), &json!({})).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "canceled", "{v}");
    assert_eq!(
        app.post(&cancel(1, first), Some(&own), &json!({}))
            .await
            .status(),
        409
    );

    // The rest of the request at once.
    let by_request = "/businesses/1/messages/cancel";
    for (body, status) in [
        (json!({"request_id": "not-a-uuid"}), 422),
        (json!({}), 422),
        (json!({"request_id": uuid::Uuid::new_v4().to_string()}), 404),
    ] {
        assert_eq!(
            app.post(by_request, Some(&own), &body).await.status(),
            status,
            "{body}"
        );
    }
    assert_eq!(
        app.post(by_request, Some(&other), &json!({"request_id": rid}))
            .await
            .status(),
        403
    );
    let v: Value = app
        .post(by_request, Some(&own), &json!({"request_id": rid}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["canceled"], 2, "{v}");
    assert_eq!(v["not_cancelable"], 1, "{v}");
    messages_in(&app, &rid, 3, &["canceled"]).await;

    // A message already sent cannot be canceled.
    let rid = send(&app, &own, &sms(None, &["Right now"])).await;
    let m = messages_in(&app, &rid, 1, &["delivered"]).await;
    let id = m[0]["id"].as_i64().unwrap();
    assert_eq!(
        app.post(&cancel(1, id), Some(&own), &json!({}))
            .await
            .status(),
        409
    );
}
both_deployments!(cancel, canceled_before_and_not_after);

async fn too_far_ahead_is_refused(d: Deployment) {
    let app = app_in(sandbox(d).await).await;
    app.onboard(1).await;
    let far = Utc::now() + chrono::Duration::days(36);
    let mut body = sms(Some(far), &["Far"]);
    let resp = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["detail"][0]["loc"], json!(["body", "send_at"]), "{v}");
    body["send_at"] = Value::Null;
    body["messages"][0]["send_at"] = json!(far.to_rfc3339());
    let resp = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["detail"][0]["loc"],
        json!(["body", "messages", 0, "send_at"]),
        "{v}"
    );
    body["messages"][0]["send_at"] = json!("tomorrow at noon");
    let resp = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &body)
        .await;
    assert_eq!(resp.status(), 422);
    let email = json!({"category": "campaign", "send_at": far.to_rfc3339(), "messages": [
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Hi", "content": {"text": "x"}}]});
    let resp = app
        .post("/businesses/1/email/send", Some(PLATFORM_KEY), &email)
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 0);
}
both_deployments!(too_far, too_far_ahead_is_refused);

/// The schedule lives in the queue: it survives a restart, and consent is checked at the
/// send's time, not the request's.
async fn survives_a_restart_and_checks_consent_at_its_time(d: Deployment) {
    let app = app_in(sandbox(d).await).await;
    app.onboard(1).await;
    let due = Utc::now() + chrono::Duration::seconds(2);
    let rid = send(&app, PLATFORM_KEY, &sms(Some(due), &["Kept"])).await;
    messages_in(&app, &rid, 1, &["scheduled"]).await;
    let alan = json!({"category": "reminder", "location_id": 10, "send_at": due.to_rfc3339(),
        "messages": [{"client_id": 6, "to_number": "+14155550124", "message": "Refused"}]});
    let refused = send(&app, PLATFORM_KEY, &alan).await;
    messages_in(&app, &refused, 1, &["scheduled"]).await;
    // Alan says no after the request and before its time.
    entities::consent::record(
        &app.db,
        1,
        6,
        entities::types::Channel::Sms,
        "+14155550124",
        false,
        Utc::now(),
        "replied STOP",
    )
    .await
    .unwrap();
    let sandbox = app.stop().await;
    let app = app_in(sandbox).await;
    let m = messages_in(&app, &rid, 1, &["delivered"]).await;
    assert!(event_time(&m[0], "queued") >= due - chrono::Duration::milliseconds(5));
    let m = messages_in(&app, &refused, 1, &["failed"]).await;
    assert_eq!(m[0]["error_code"], "opted_out", "{}", m[0]);
}
both_deployments!(restart, survives_a_restart_and_checks_consent_at_its_time);
