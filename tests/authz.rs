//! Every route of the OpenAPI document, enumerated from the document itself (so a route added
//! later is covered), is called with no credentials, a wrong key, another business's key, an
//! expired session and a revoked session: each answers 401 or 403 and no data. Plus the
//! session life cycle: issue, use (cookie and bearer), expire.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, TestApp};
use serde_json::{Value, json};

/// Routes that need no credentials (API.md: health, docs, OpenAPI, metrics).
const PUBLIC: &[&str] = &["/health", "/health/db"];
/// The operations a staff session (of the business named) may not use: queueing work,
/// keys, onboarding, operators' endpoints.
const STAFF_REFUSED: &[&str] = &[
    "delete /admin/api-keys/{id}",
    "delete /admin/webhooks/{webhook_id}",
    "delete /businesses/{business_id}/clients/{client_id}",
    "delete /businesses/{business_id}/webhooks/{webhook_id}",
    "get /admin/businesses/{business_id}/api-keys",
    "get /admin/queues",
    "get /admin/queues/{job_type}/dead",
    "get /admin/webhooks",
    "get /admin/webhooks/{webhook_id}/attempts",
    "get /business/{business_id}/onboarding-status",
    "get /businesses/{business_id}/clients/{client_id}/export",
    "get /businesses/{business_id}/settings/messaging",
    "get /businesses/{business_id}/webhooks",
    "get /businesses/{business_id}/webhooks/{webhook_id}/attempts",
    "get /messages/requests/{request_id}",
    "post /admin/businesses/{business_id}/api-keys",
    "post /admin/queues/{job_type}/dead/drain",
    "post /admin/queues/{job_type}/dead/replay",
    "post /admin/webhooks",
    "post /admin/webhooks/{webhook_id}/enable",
    "post /auth/token",
    "post /business/onboard",
    "post /businesses/{business_id}/email/record",
    "post /businesses/{business_id}/email/send",
    "post /businesses/{business_id}/email/status",
    "post /businesses/{business_id}/messages/cancel",
    "post /businesses/{business_id}/messages/retry-failed",
    "post /businesses/{business_id}/messages/{message_id}/cancel",
    "post /businesses/{business_id}/sms/record",
    "post /businesses/{business_id}/sms/send",
    "post /businesses/{business_id}/sms/status",
    "post /businesses/{business_id}/webhooks",
    "post /businesses/{business_id}/webhooks/{webhook_id}/enable",
    "post /messages/process",
    "post /messages/retry-failed",
    "put /businesses/{business_id}/settings/messaging",
];
/// Routes authenticated by the provider's signature instead: without a valid one, 403.
const SIGNED: &[&str] = &[
    "/voice-calls/twiml",
    "/twilio/sms/incoming",
    "/twilio/sms/status",
    "/twilio/voice/status",
    "/email/webhooks/{provider}",
    "/email/inbound/{provider}",
];

/// Routes whose credential is a token in the path (RFC 8058 unsubscribe links): whatever
/// key or session comes with it, a token omega did not issue is 404.
const TOKEN: &[&str] = &["/unsubscribe/{token}"];

/// A body the operation would accept from an authorised caller, so that what is tested is
/// the authorisation and not the validation.
fn body_for(path: &str) -> Value {
    match path {
        p if p.ends_with("/sms/send") => {
            json!({"category": "conversation", "location_id": 10, "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "x"}]})
        }
        p if p.ends_with("/email/send") => {
            json!({"category": "conversation", "messages": [{"client_id": 5, "to_email": "a@example.com", "subject": "s", "content": {"text": "x"}}]})
        }
        p if p.ends_with("/sms/record") => {
            json!({"category": "conversation", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "x", "status": "sent"}]})
        }
        p if p.ends_with("/email/record") => {
            json!({"category": "conversation", "messages": [{"client_id": 5, "to_email": "a@example.com", "message": "x", "status": "sent"}]})
        }
        "/business/onboard" => common::onboard_body(1, "Spa"),
        "/messages/process" => {
            json!({"business_id": 1, "channel": "sms", "direction": "inbound", "from": "+14155550123", "to": "+14155550100", "body": "x", "provider": "twilio", "sender_type": "client"})
        }
        "/auth/token" | "/session/expire" => json!({"business_id": 1, "staff_id": 789}),
        p if p.contains("/dead/") => json!({"dry_run": true}),
        p if p.ends_with("/api-keys") => json!({"name": "integration"}),
        p if p.ends_with("/webhooks") => json!({"url": "https://hooks.example.com/omega"}),
        p if p.ends_with("{conversation_id}/status") => json!({"status": "open"}),
        p if p.ends_with("/notes") => json!({"staff_id": 789, "note": "x"}),
        p if p.ends_with("/reply") => json!({"channel": "email", "message": "x", "staff_id": 789}),
        p if p.ends_with("/assign") => json!({"staff_id": 789}),
        p if p.ends_with("/read-status") => json!({"is_read": true, "client_id": 5}),
        p if p.ends_with("/conversations") => json!({"client_id": 5, "location_id": 10}),
        p if p.ends_with("/status") => json!({"updates": [{"message_id": 1, "status": "sent"}]}),
        p if p.ends_with("/messages/cancel") => {
            json!({"request_id": "6a0b8d2e-0d6f-4a55-9f3c-1d2f1f1f1f1f"})
        }
        _ => json!({}),
    }
}

fn concrete(path: &str) -> String {
    let query = match path {
        "/voice-calls/token" => "?business_id=1&staff_id=789",
        p if p.ends_with("/search") => "?q=gift",
        _ => "",
    };
    path.replace("{business_id}", "1")
        .replace("{request_id}", "6a0b8d2e-0d6f-4a55-9f3c-1d2f1f1f1f1f")
        .replace("{job_type}", "record_sms")
        .replace("{conversation_id}", "1")
        .replace("{client_id}", "5")
        .replace("{staff_id}", "789")
        .replace("{id}", "1")
        .replace("{message_id}", "1")
        .replace("{webhook_id}", "1")
        .replace("{index}", "0")
        .replace("{provider}", "sendgrid")
        .replace("{token}", "not-a-token")
        + query
}

#[derive(Clone, Copy, Debug)]
enum Cred<'a> {
    None,
    Key(&'a str),
    Cookie(&'a str),
    Bearer(&'a str),
}

async fn call(app: &TestApp, method: &str, path: &str, cred: Cred<'_>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = app.http.request(m.clone(), app.url(&concrete(path)));
    if SIGNED.contains(&path) {
        req = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("From=client%3Ab1_s789&To=%2B14155550123&CallSid=CA1");
    } else if m != reqwest::Method::GET && m != reqwest::Method::DELETE {
        req = req.json(&body_for(path));
    }
    req = match cred {
        Cred::None => req,
        Cred::Key(k) => req.header("X-API-KEY", k),
        Cred::Cookie(t) => req.header("Cookie", format!("omega_session={t}")),
        Cred::Bearer(t) => req.bearer_auth(t),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let streams = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streams {
        // An event stream stays open: its status is the answer.
        return (status, Value::Null);
    }
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn session(app: &TestApp, business_id: i64) -> String {
    let v: Value = app
        .post(
            "/auth/token",
            Some(PLATFORM_KEY),
            &json!({"business_id": business_id, "staff_id": 789, "ttl_seconds": 600}),
        )
        .await
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

async fn every_route_refuses_bad_credentials(d: Deployment) {
    let app = TestApp::spawn(d).await;
    app.onboard(1).await;
    app.onboard(2).await;
    let other_key = app.business_key(2).await;
    let (_, expired) = entities::sessions::create(&app.db, 1, 789, chrono::Duration::seconds(-5))
        .await
        .unwrap();
    let revoked = session(&app, 1).await;
    let resp = app
        .post(
            "/session/expire",
            Some(PLATFORM_KEY),
            &json!({"access_token": revoked}),
        )
        .await;
    assert_eq!(resp.status(), 200);

    let own_session = session(&app, 1).await;
    let other_session = session(&app, 2).await;
    let mut refused_to_staff = vec![];

    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let mut checked = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            if PUBLIC.contains(&path.as_str()) {
                assert!(!secured, "{path} is documented as public");
                continue;
            }
            if TOKEN.contains(&path.as_str()) {
                assert!(!secured, "{path} is authenticated by its token, not a key");
                for cred in [
                    Cred::None,
                    Cred::Key(PLATFORM_KEY),
                    Cred::Cookie(&own_session),
                ] {
                    let (status, _) = call(&app, method, path, cred).await;
                    assert_eq!(status, 404, "{method} {path} with a token not issued");
                }
                checked += 1;
                continue;
            }
            let signed = SIGNED.contains(&path.as_str());
            if signed {
                assert!(
                    !secured,
                    "{path} is authenticated by a signature, not a key"
                );
            }
            assert!(
                secured || signed,
                "{method} {path} declares no security: add it, or list it as public"
            );
            for (label, cred, expected) in [
                ("no credentials", Cred::None, 401),
                (
                    "a wrong key",
                    Cred::Key("omk_thisisnotakeyatall000000"),
                    401,
                ),
                ("another business's key", Cred::Key(&other_key), 403),
                ("an expired session", Cred::Cookie(&expired), 401),
                ("an expired bearer session", Cred::Bearer(&expired), 401),
                ("a revoked session", Cred::Cookie(&revoked), 401),
                ("a revoked bearer session", Cred::Bearer(&revoked), 401),
            ] {
                let (status, body) = call(&app, method, path, cred).await;
                let expected = if signed { 403 } else { expected };
                assert_eq!(status, expected, "{method} {path} with {label}: {body}");
                let fields: Vec<&String> = body
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                assert_eq!(
                    fields,
                    ["detail"],
                    "{method} {path} with {label} leaked {body}"
                );
            }
            if !signed {
                // A session of another business: refused wherever a business is named.
                let (status, body) = call(&app, method, path, Cred::Bearer(&other_session)).await;
                if path.contains("{business_id}") {
                    assert_eq!(
                        status, 403,
                        "{method} {path} with another business's session: {body}"
                    );
                }
                // This business's session: allowed (whatever the dummy body makes of it) or
                // refused as a staff session; the refusals must be exactly the key-only routes.
                let (status, body) = call(&app, method, path, Cred::Cookie(&own_session)).await;
                assert!(
                    status != 401 && status < 500,
                    "{method} {path} with a session: {status} {body}"
                );
                if status == 403 {
                    refused_to_staff.push(format!("{method} {path}"));
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} operations checked");
    refused_to_staff.sort();
    assert_eq!(
        refused_to_staff, STAFF_REFUSED,
        "the routes a staff session may not use"
    );
}
both_deployments!(every_route, every_route_refuses_bad_credentials);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_issued_used_and_expired() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    app.onboard(1).await;
    app.onboard(2).await;
    let key1 = app.business_key(1).await;

    // Issued to an API key allowed for the business, for a staff member of it.
    let resp = app
        .post(
            "/auth/token",
            Some(&key1),
            &json!({"business_id": 1, "staff_id": 789}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("omega_session="));
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "not https: {cookie}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert!(cookie.contains(&token));
    let expires: chrono::DateTime<chrono::Utc> = v["expires_at"].as_str().unwrap().parse().unwrap();
    let hours = (expires - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((7.9..=8.0).contains(&hours), "{hours}");
    // Not stored in plain text.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE token_hash = '{token}'"
        ))
        .await,
        0
    );

    // Bad requests.
    assert_eq!(
        app.post(
            "/auth/token",
            Some(&key1),
            &json!({"business_id": 2, "staff_id": 789})
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        app.post(
            "/auth/token",
            Some(&key1),
            &json!({"business_id": 1, "staff_id": 4242})
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        app.post(
            "/auth/token",
            Some(&key1),
            &json!({"business_id": 1, "staff_id": 789, "ttl_seconds": 90000})
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.post("/auth/token", Some(&key1), &json!({"business_id": 1}))
            .await
            .status(),
        422
    );

    // The session reads its business's inbox data, with the cookie or as a bearer token …
    let rid = uuid::Uuid::new_v4();
    let path = format!("/businesses/1/messages/requests/{rid}");
    let with_cookie = app
        .http
        .get(app.url(&path))
        .header("Cookie", format!("omega_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    assert_eq!(
        app.http
            .get(app.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // … but not another business's, nor write or admin endpoints, nor issue sessions.
    let other = app
        .http
        .get(app.url(&format!("/businesses/2/messages/requests/{rid}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    let record = app
        .http
        .post(app.url("/businesses/1/sms/record"))
        .bearer_auth(&token)
        .json(&body_for("/businesses/1/sms/record"))
        .send()
        .await
        .unwrap();
    assert_eq!(record.status(), 403);
    assert_eq!(
        app.http
            .get(app.url("/admin/queues"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let again = app
        .http
        .post(app.url("/auth/token"))
        .bearer_auth(&token)
        .json(&json!({"business_id": 1, "staff_id": 789}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 403);

    // A session can end itself; then it stops working within a second.
    let expire = app
        .http
        .post(app.url("/session/expire"))
        .bearer_auth(&token)
        .json(&json!({"access_token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(expire.status(), 200);
    let v: Value = expire.json().await.unwrap();
    assert_eq!(v["accepted"], 1);
    common::wait_for(
        "the session to stop working",
        Duration::from_millis(1500),
        || async {
            (app.http
                .get(app.url(&path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
                == 401)
                .then_some(())
        },
    )
    .await;

    // All of a staff member's sessions at once, by an API key of the business.
    let a = session(&app, 1).await;
    let b = session(&app, 1).await;
    let v: Value = app
        .post(
            "/session/expire",
            Some(&key1),
            &json!({"business_id": 1, "staff_id": 789}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["accepted"], 2);
    for t in [a, b] {
        common::wait_for(
            "the sessions to stop working",
            Duration::from_millis(1500),
            || async {
                (app.http
                    .get(app.url(&path))
                    .bearer_auth(&t)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    == 401)
                    .then_some(())
            },
        )
        .await;
    }
    // Another business's key cannot end them; a missing selector is a 422; an unknown token 404.
    assert_eq!(
        app.post(
            "/session/expire",
            Some(&app.business_key(2).await),
            &json!({"business_id": 1, "staff_id": 789})
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        app.post("/session/expire", Some(&key1), &json!({"business_id": 1}))
            .await
            .status(),
        422
    );
    assert_eq!(
        app.post(
            "/session/expire",
            Some(&key1),
            &json!({"access_token": "nope"})
        )
        .await
        .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_behind_https() {
    let mut sandbox = common::Sandbox::new(Deployment::Embedded).await;
    sandbox.set("OMEGA_PUBLIC_URL", "https://omega.example.com");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    let resp = app
        .post(
            "/auth/token",
            Some(PLATFORM_KEY),
            &json!({"business_id": 1, "staff_id": 789, "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("Max-Age=60"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_api_keys_are_created_listed_and_revoked() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    app.onboard(1).await;
    let resp = app
        .post(
            "/admin/businesses/1/api-keys",
            Some(PLATFORM_KEY),
            &json!({"name": "booking app"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("omk_") && key.len() > 40);
    assert_eq!(created["prefix"].as_str().unwrap(), &key[4..16]);
    // It works for its business only.
    let body = body_for("/businesses/1/sms/record");
    assert_eq!(
        app.post("/businesses/1/sms/record", Some(&key), &body)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post(
            "/admin/businesses/1/api-keys",
            Some(&key),
            &json!({"name": "x"})
        )
        .await
        .status(),
        403
    );
    // Listed without the key, with its last use.
    let list: Value = app
        .get("/admin/businesses/1/api-keys", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&key));
    assert_eq!(list[0]["name"], "booking app");
    common::wait_for(
        "the last use to be recorded",
        Duration::from_secs(5),
        || async {
            let list: Value = app
                .get("/admin/businesses/1/api-keys", Some(PLATFORM_KEY))
                .await
                .json()
                .await
                .unwrap();
            list[0]["last_used_at"].is_string().then_some(())
        },
    )
    .await;
    // Revoked: stops working within a second.
    let id = created["id"].as_i64().unwrap();
    let resp = app
        .http
        .delete(app.url(&format!("/admin/api-keys/{id}")))
        .header("X-API-KEY", PLATFORM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let revoked: Value = resp.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string());
    common::wait_for(
        "the key to stop working",
        Duration::from_millis(1500),
        || async {
            (app.post("/businesses/1/sms/record", Some(&key), &body)
                .await
                .status()
                == 401)
                .then_some(())
        },
    )
    .await;
    // Bad input.
    assert_eq!(
        app.post(
            "/admin/businesses/1/api-keys",
            Some(PLATFORM_KEY),
            &json!({"name": " "})
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.post(
            "/admin/businesses/999/api-keys",
            Some(PLATFORM_KEY),
            &json!({"name": "x"})
        )
        .await
        .status(),
        404
    );
    let missing = app
        .http
        .delete(app.url("/admin/api-keys/424242"))
        .header("X-API-KEY", PLATFORM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bad = app
        .http
        .delete(app.url("/admin/api-keys/abc"))
        .header("X-API-KEY", PLATFORM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
}
