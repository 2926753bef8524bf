//! Webhooks (issue 16): endpoints per business and platform-wide, deliveries signed by the
//! Standard Webhooks spec (verified here with our own HMAC, not omega's code), retried with
//! the same `webhook-id`, recorded as attempts, dead-lettered and replayed, disabled after
//! failing too long; URLs checked against SSRF; one business never sees another's events.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use common::{TWILIO_ACCOUNT as ACCOUNT, TWILIO_TOKEN as TOKEN};
use hmac::Mac;
use omega::Role;
use poem::http::StatusCode;
use poem::{IntoResponse, handler, web::Data};
use serde_json::{Value, json};

/// What a receiver got: the three Standard Webhooks headers and the body.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// A webhook receiver that answers `failures` 503s, then 204s.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    failures: Arc<Mutex<usize>>,
}

impl Receiver {
    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn fail_next(&self, n: usize) {
        *self.failures.lock().unwrap() = n;
    }

    async fn serve(&self) -> String {
        #[handler]
        fn receive(req: &poem::Request, body: String, r: Data<&Receiver>) -> poem::Response {
            let header = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            r.got.lock().unwrap().push(Received {
                id: header("webhook-id"),
                timestamp: header("webhook-timestamp"),
                signature: header("webhook-signature"),
                body,
            });
            let mut failures = r.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            StatusCode::NO_CONTENT.into_response()
        }
        use poem::EndpointExt;
        let base = common::serve_mock(receive.data(self.clone())).await;
        format!("{base}/hooks/omega")
    }
}

/// Verifies a delivery as a receiver would: HMAC-SHA256 keyed with the secret's decoded bytes
/// over `{id}.{timestamp}.{body}`, compared with each `v1,` signature.
fn verify(secret: &str, r: &Received) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    r.signature.split(' ').any(|s| s == expected)
}

async fn app_with(d: Deployment, env: &[(&str, &str)]) -> TestApp {
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set("OMEGA_DEFAULT_SMS_PROVIDER", "sandbox");
    sandbox.set("OMEGA_TWILIO_ACCOUNT_SID", ACCOUNT);
    sandbox.set("OMEGA_TWILIO_AUTH_TOKEN", TOKEN);
    for (k, v) in env {
        sandbox.set(k, v);
    }
    let app = TestApp::spawn_in(sandbox, Role::Serve).await;
    app.onboard(1).await;
    app.onboard_directly(2).await;
    app
}

async fn create(app: &TestApp, path: &str, key: &str, body: Value) -> Value {
    let resp = app.post(path, Some(key), &body).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

/// Waits until the receiver has `n` requests for the event whose body says `sid`.
async fn deliveries_of(receiver: &Receiver, sid: &str, n: usize) -> Vec<Received> {
    wait_for("webhook deliveries", Duration::from_secs(20), || async {
        let got: Vec<Received> = receiver
            .got()
            .into_iter()
            .filter(|r| r.body.contains(sid))
            .collect();
        (got.len() >= n).then_some(got)
    })
    .await
}

async fn deliveries_are_signed_retried_and_recorded(d: Deployment) {
    let app = app_with(d, &[("OMEGA_ALLOW_PRIVATE_URLS", "true")]).await;
    let receiver = Receiver::default();
    let url = receiver.serve().await;
    let key = app.business_key(1).await;
    let created = create(
        &app,
        "/businesses/1/webhooks",
        &key,
        json!({"url": url, "description": "CRM sync"}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(STANDARD.decode(&secret[6..]).unwrap().len() >= 24);
    assert_eq!(created["url"], url);
    assert_eq!(created["event_types"], Value::Null);
    let id = created["id"].as_i64().unwrap();

    // Listed without the secret; not by a staff session or another business's key.
    let listed: Value = app
        .get("/businesses/1/webhooks", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["description"], "CRM sync");
    assert!(listed[0].get("secret").is_none(), "{listed}");
    let staff = app.session(1, 789).await;
    let other = app.business_key(2).await;
    let resp = app.get("/businesses/1/webhooks", Some(&other)).await;
    assert_eq!(resp.status(), 403);
    let resp = app
        .http
        .get(app.url("/businesses/1/webhooks"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        403,
        "a staff session does not manage webhooks"
    );

    // Two failures, then success: three attempts with one webhook-id, each signed.
    receiver.fail_next(2);
    common::client_texts(&app, "SMhook1", "Running ten minutes late").await;
    let got = deliveries_of(&receiver, "SMhook1", 3).await;
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "same webhook-id: {got:?}"
    );
    assert!(got[0].id.starts_with("evt_"));
    for r in &got {
        assert!(verify(&secret, r), "signature verifies: {r:?}");
        let ts: i64 = r.timestamp.parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    }
    let body: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(body["type"], "message.received");
    assert!(
        chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok(),
        "{body}"
    );
    assert_eq!(body["data"]["business_id"], 1);
    assert_eq!(body["data"]["event_id"], got[0].id);
    assert_eq!(body["data"]["body"], "Running ten minutes late");
    assert_eq!(body["data"]["direction"], "inbound");
    // A tampered body does not verify.
    let mut forged = got[2].clone();
    forged.body = forged.body.replace("ten", "five");
    assert!(!verify(&secret, &forged));

    // The attempts, newest first.
    let attempts: Value = wait_for("three attempts", Duration::from_secs(10), || async {
        let v: Value = app
            .get(&format!("/businesses/1/webhooks/{id}/attempts"), Some(&key))
            .await
            .json()
            .await
            .unwrap();
        (v["total"] == 3).then_some(v)
    })
    .await;
    let codes: Vec<i64> = attempts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [204, 503, 503]);
    assert_eq!(attempts["items"][0]["event_id"], got[0].id);
    assert_eq!(attempts["items"][0]["error"], Value::Null);
    assert!(
        attempts["items"][1]["error"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    let resp = app
        .get(
            &format!("/businesses/2/webhooks/{id}/attempts"),
            Some(&other),
        )
        .await;
    assert_eq!(
        resp.status(),
        404,
        "another business's endpoint is not found"
    );

    // Deleted: no more deliveries; a second delete is 404.
    let del = |key: String| {
        let app = &app;
        async move {
            app.http
                .delete(app.url(&format!("/businesses/1/webhooks/{id}")))
                .header("X-API-KEY", key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(del(other.clone()).await, 403);
    assert_eq!(del(key.clone()).await, 204);
    assert_eq!(del(key.clone()).await, 404);
}
both_deployments!(
    deliveries_are_signed_retried_and_recorded,
    deliveries_are_signed_retried_and_recorded
);

async fn each_endpoint_gets_only_what_it_asked_for(d: Deployment) {
    let app = app_with(d, &[("OMEGA_ALLOW_PRIVATE_URLS", "true")]).await;
    let (mine, theirs, platform, notes) = (
        Receiver::default(),
        Receiver::default(),
        Receiver::default(),
        Receiver::default(),
    );
    let key1 = app.business_key(1).await;
    let key2 = app.business_key(2).await;
    create(
        &app,
        "/businesses/1/webhooks",
        &key1,
        json!({"url": mine.serve().await}),
    )
    .await;
    create(
        &app,
        "/businesses/2/webhooks",
        &key2,
        json!({"url": theirs.serve().await}),
    )
    .await;
    let all = create(
        &app,
        "/admin/webhooks",
        PLATFORM_KEY,
        json!({"url": platform.serve().await}),
    )
    .await;
    create(
        &app,
        "/businesses/1/webhooks",
        PLATFORM_KEY,
        json!({"url": notes.serve().await, "event_types": ["conversation.note_added"]}),
    )
    .await;
    // Platform-wide endpoints are the platform key's alone.
    let resp = app.get("/admin/webhooks", Some(&key1)).await;
    assert_eq!(resp.status(), 403);
    let listed: Value = app
        .get("/admin/webhooks", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], all["id"]);
    assert_eq!(listed[0]["business_id"], Value::Null);

    common::client_texts(&app, "SMmine", "Is parking free?").await;
    deliveries_of(&mine, "SMmine", 1).await;
    let seen = deliveries_of(&platform, "SMmine", 1).await;
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["data"]["business_id"], 1);
    // By now the relay has handed the event to every endpoint that wanted it: business 2's
    // endpoint and the notes-only one got nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(theirs.got().is_empty(), "{:?}", theirs.got());
    assert!(notes.got().is_empty(), "{:?}", notes.got());
}
both_deployments!(
    each_endpoint_gets_only_what_it_asked_for,
    each_endpoint_gets_only_what_it_asked_for
);

async fn a_failing_endpoint_is_dead_lettered_replayed_and_disabled(d: Deployment) {
    let app = app_with(d, &[("OMEGA_ALLOW_PRIVATE_URLS", "true")]).await;
    let (receiver, witness) = (Receiver::default(), Receiver::default());
    let created = create(
        &app,
        "/businesses/1/webhooks",
        PLATFORM_KEY,
        json!({"url": receiver.serve().await}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    // Receives everything: shows when the relay has handed an event on.
    create(
        &app,
        "/admin/webhooks",
        PLATFORM_KEY,
        json!({"url": witness.serve().await}),
    )
    .await;

    // Every attempt fails (the test's limit is 3): the delivery goes dead, visible to operators.
    receiver.fail_next(usize::MAX);
    common::client_texts(&app, "SMdead", "Hello?").await;
    let dead: Value = wait_for("the delivery to die", Duration::from_secs(20), || async {
        let v: Value = app
            .get("/admin/queues/deliver_webhook/dead", Some(PLATFORM_KEY))
            .await
            .json()
            .await
            .unwrap();
        (v["total"] == 1).then_some(v)
    })
    .await;
    assert_eq!(dead["items"][0]["business_id"], 1);
    assert!(
        dead["items"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    assert_eq!(deliveries_of(&receiver, "SMdead", 3).await.len(), 3);

    // The endpoint recovers; a replay delivers the same event.
    receiver.fail_next(0);
    let resp = app
        .post(
            "/admin/queues/deliver_webhook/dead/replay",
            Some(PLATFORM_KEY),
            &json!({"business_id": 1}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let got = deliveries_of(&receiver, "SMdead", 4).await;
    assert_eq!(got[3].id, got[0].id);
    wait_for(
        "the replayed attempt recorded",
        Duration::from_secs(10),
        || async {
            let v: Value = app
                .get(
                    &format!("/businesses/1/webhooks/{id}/attempts"),
                    Some(PLATFORM_KEY),
                )
                .await
                .json()
                .await
                .unwrap();
            (v["items"][0]["status_code"] == 204).then_some(())
        },
    )
    .await;

    // Failing for longer than OMEGA_WEBHOOK_DISABLE_AFTER_HOURS (120) disables it.
    let since = chrono::Utc::now() - chrono::Duration::hours(121);
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    entities::webhook::Entity::update_many()
        .col_expr(entities::webhook::Column::FailingSince, Expr::value(since))
        .filter(entities::webhook::Column::Id.eq(id))
        .exec(&app.db)
        .await
        .unwrap();
    receiver.fail_next(usize::MAX);
    common::client_texts(&app, "SMoff", "Anyone?").await;
    let listed: Value = wait_for("the endpoint disabled", Duration::from_secs(20), || async {
        let v: Value = app
            .get("/businesses/1/webhooks", Some(PLATFORM_KEY))
            .await
            .json()
            .await
            .unwrap();
        v[0]["disabled_at"].is_string().then_some(v)
    })
    .await;
    assert!(
        listed[0]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{listed}"
    );
    assert_eq!(
        deliveries_of(&receiver, "SMoff", 1).await.len(),
        1,
        "no retries once disabled"
    );

    // Disabled: new events are not delivered. Re-enabled: they are.
    common::client_texts(&app, "SMquiet", "Still there?").await;
    deliveries_of(&witness, "SMquiet", 1).await;
    let resp = app
        .post(
            &format!("/businesses/1/webhooks/{id}/enable"),
            Some(PLATFORM_KEY),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let enabled: Value = resp.json().await.unwrap();
    assert_eq!(enabled["disabled_at"], Value::Null);
    assert_eq!(enabled["failing_since"], Value::Null);
    receiver.fail_next(0);
    common::client_texts(&app, "SMback", "Back?").await;
    deliveries_of(&receiver, "SMback", 1).await;
    assert!(
        receiver.got().iter().all(|r| !r.body.contains("SMquiet")),
        "nothing delivered while disabled"
    );
}
both_deployments!(
    a_failing_endpoint_is_dead_lettered_replayed_and_disabled,
    a_failing_endpoint_is_dead_lettered_replayed_and_disabled
);

/// Without `OMEGA_ALLOW_PRIVATE_URLS`, only https URLs of public addresses are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_inside_the_network_are_refused() {
    let app = app_with(Deployment::Embedded, &[]).await;
    for url in [
        "http://hooks.example.com/omega",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://user:pass@hooks.example.com/",
        "not a url",
    ] {
        let resp = app
            .post(
                "/businesses/1/webhooks",
                Some(PLATFORM_KEY),
                &json!({"url": url}),
            )
            .await;
        assert_eq!(resp.status(), 422, "{url}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["detail"][0]["loc"], json!(["body", "url"]), "{url}: {v}");
    }
    for (body, field) in [
        (
            json!({"url": "https://x.example", "event_types": ["message.sent"]}),
            "event_types",
        ),
        (
            json!({"url": "https://x.example", "event_types": []}),
            "event_types",
        ),
        (json!({"url": ""}), "url"),
        (json!({"uri": "https://x.example"}), "url"),
    ] {
        let resp = app
            .post("/businesses/1/webhooks", Some(PLATFORM_KEY), &body)
            .await;
        assert_eq!(resp.status(), 422, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert!(v.to_string().contains(field), "{v}");
    }
    let resp = app
        .post(
            "/businesses/999/webhooks",
            Some(PLATFORM_KEY),
            &json!({"url": "https://x.example"}),
        )
        .await;
    assert_eq!(resp.status(), 404);
}

/// An endpoint that hangs holds a few delivery workers, not all of them: another endpoint
/// gets every event while the slow one is still waiting on its first attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_hold_up_others() {
    let app = app_with(
        Deployment::Scaled,
        &[
            ("OMEGA_ALLOW_PRIVATE_URLS", "true"),
            ("OMEGA_WEBHOOK_TIMEOUT_SECS", "30"),
        ],
    )
    .await;
    #[handler]
    async fn hang() -> StatusCode {
        tokio::time::sleep(Duration::from_secs(60)).await;
        StatusCode::NO_CONTENT
    }
    let slow = common::serve_mock(hang).await;
    let fast = Receiver::default();
    create(&app, "/admin/webhooks", PLATFORM_KEY, json!({"url": slow})).await;
    create(
        &app,
        "/businesses/1/webhooks",
        PLATFORM_KEY,
        json!({"url": fast.serve().await}),
    )
    .await;
    // More events than the delivery workers of a process (64).
    let events = 100;
    for i in 0..events {
        common::client_texts(&app, &format!("SMburst{i:03}"), "burst").await;
    }
    wait_for(
        "every event at the fast endpoint",
        Duration::from_secs(15),
        || async {
            let got = fast.got().len();
            (got >= events).then_some(())
        },
    )
    .await;
    // Recorded too (the fast endpoint's attempts; the slow one's are still under way).
    wait_for("the attempts recorded", Duration::from_secs(5), || async {
        let ok = app
            .count("SELECT COUNT(*) FROM webhook_attempts WHERE status_code = 204")
            .await;
        (ok >= events as i64).then_some(())
    })
    .await;
}
