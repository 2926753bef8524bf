//! Trust (issue 14): tenant boundaries, consent by address, bounded inputs. Each test holds
//! two onboarded businesses that share omega, with a key each, and tries what one business
//! (or one staff member) must not be able to do to another.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, TestApp, wait_for};
use serde_json::{Value, json};

/// Business `id` with locations `id*10` and `id*10+1` (numbers ending in the business id),
/// staff 901 and 902, and client 5.
fn business(id: i64) -> Value {
    json!({
        "business_id": id,
        "name": format!("Spa {id}"),
        "timezone": "America/New_York",
        "locations": [
            {"id": id * 10, "name": "Main", "phone_number": format!("+141555501{:02}", id * 10), "email": format!("front@spa{id}.example.com")},
            {"id": id * 10 + 1, "name": "Annex", "phone_number": format!("+141555501{:02}", id * 10 + 1)}
        ],
        "staff": [
            {"id": 901, "first_name": "Ann", "last_name": "One", "location_ids": [id * 10]},
            {"id": 902, "first_name": "Bob", "last_name": "Two", "location_ids": [id * 10]}
        ],
        "clients": [
            {"id": 5, "first_name": "Grace", "phone": "+14155550123", "email": "grace@example.com", "client_type": "client", "location_id": id * 10, "sms_opt_in": true, "email_opt_in": true}
        ]
    })
}

async fn onboard(app: &TestApp, body: &Value) -> Value {
    let resp = app
        .post("/business/onboard", Some(PLATFORM_KEY), body)
        .await;
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let path = format!("/business/{}/onboarding-status", body["business_id"]);
    wait_for("onboarding", Duration::from_secs(20), || async {
        let v: Value = app
            .get(&path, Some(PLATFORM_KEY))
            .await
            .json()
            .await
            .unwrap();
        matches!(v["status"].as_str(), Some("completed" | "failed")).then_some(v)
    })
    .await
}

/// Two businesses (1 and 2) and a key for each.
async fn two_businesses(d: Deployment) -> (TestApp, String, String) {
    let app = TestApp::spawn(d).await;
    onboard(&app, &business(1)).await;
    onboard(&app, &business(2)).await;
    let (k1, k2) = (app.business_key(1).await, app.business_key(2).await);
    (app, k1, k2)
}

async fn post_as_session(
    app: &TestApp,
    token: &str,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn sms(location_id: i64, text: &str) -> Value {
    json!({"category": "conversation", "location_id": location_id,
           "messages": [{"client_id": 5, "to_number": "+14155550123", "message": text}]})
}

/// Item 3: an Idempotency-Key names one request of one caller for one business and route.
async fn idempotency_keys_are_scoped(d: Deployment) {
    let (app, k1, _) = two_businesses(d).await;
    let first = app
        .post_keyed("/businesses/1/sms/send", PLATFORM_KEY, "k-1", &sms(10, "a"))
        .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    // The same key and body for another business is another request, not a replay of the
    // first business's answer (nor a 409).
    let other = app
        .post_keyed("/businesses/2/sms/send", PLATFORM_KEY, "k-1", &sms(20, "a"))
        .await;
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("idempotency-replayed").is_none());
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["request_id"], first["request_id"]);
    // Another route of the same business: another request too.
    let record = json!({"category": "conversation", "messages": [{"client_id": 5, "to_number": "+14155550123", "message": "a", "status": "sent"}]});
    let recorded = app
        .post_keyed("/businesses/1/sms/record", PLATFORM_KEY, "k-1", &record)
        .await;
    assert_eq!(recorded.status(), 200);
    // The same caller, business and route: replayed.
    let again = app
        .post_keyed("/businesses/1/sms/send", PLATFORM_KEY, "k-1", &sms(10, "a"))
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["request_id"], first["request_id"]);
    // Another caller (the business's own key) with the same key: its own request.
    let own = app
        .post_keyed("/businesses/1/sms/send", &k1, "k-1", &sms(10, "a"))
        .await;
    assert_eq!(own.status(), 200);
    let own: Value = own.json().await.unwrap();
    assert_ne!(own["request_id"], first["request_id"]);
}
both_deployments!(idempotency_keys_are_scoped, idempotency_keys_are_scoped);

/// Item 4: a staff session acts as its own staff member, never as a colleague.
async fn sessions_act_as_their_own_staff(d: Deployment) {
    let (app, _, _) = two_businesses(d).await;
    let opened: Value = app
        .post(
            "/businesses/1/conversations",
            Some(PLATFORM_KEY),
            &json!({"client_id": 5, "location_id": 10}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = opened["id"].as_i64().unwrap();
    let token = app.session(1, 901).await;
    let base = format!("/businesses/1/conversations/{id}");
    for (path, body) in [
        ("notes", json!({"staff_id": 902, "note": "as Bob"})),
        ("assign", json!({"staff_id": 901, "assigned_by": 902})),
        ("status", json!({"status": "resolved", "staff_id": 902})),
    ] {
        let resp = post_as_session(&app, &token, &format!("{base}/{path}"), &body).await;
        assert_eq!(resp.status(), 403, "{path}: {}", resp.text().await.unwrap());
    }
    // As themselves (named or not), they may.
    for (path, body, status) in [
        ("notes", json!({"staff_id": 901, "note": "as Ann"}), 201),
        ("assign", json!({"staff_id": 902}), 200),
        ("status", json!({"status": "pending"}), 200),
    ] {
        let resp = post_as_session(&app, &token, &format!("{base}/{path}"), &body).await;
        assert_eq!(
            resp.status(),
            status,
            "{path}: {}",
            resp.text().await.unwrap()
        );
    }
    // The conversation's history names the session's staff member as the actor.
    let v: Value = app
        .get(&format!("{base}/messages"), Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    let events = v["conversation"]["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{v}");
    for e in events {
        assert_eq!(e["staff_id"], 901, "{e}");
    }
    // With a key, the body's id stands.
    let resp = app
        .post(
            &format!("{base}/notes"),
            Some(PLATFORM_KEY),
            &json!({"staff_id": 902, "note": "by the platform for Bob"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let note: Value = resp.json().await.unwrap();
    assert_eq!(note["staff_id"], 902, "{note}");
}
both_deployments!(
    sessions_act_as_their_own_staff,
    sessions_act_as_their_own_staff
);

/// Item 12: page numbers are bounded; the largest answer 422, not 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_numbers_are_bounded() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    onboard(&app, &business(1)).await;
    for path in [
        "/businesses/1/clients",
        "/businesses/1/staffs",
        "/businesses/1/conversations",
        "/businesses/1/messages/search?q=x&",
        "/admin/queues/send_sms/dead",
    ] {
        let sep = if path.ends_with('&') { "" } else { "?" };
        for page in ["18446744073709551615", "18446744073709551616", "100001"] {
            let url = format!("{path}{sep}page={page}");
            let resp = app.get(&url, Some(PLATFORM_KEY)).await;
            assert_eq!(resp.status(), 422, "{url}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(
                v["detail"][0]["loc"],
                json!(["query", "page"]),
                "{url}: {v}"
            );
        }
        let url = format!("{path}{sep}page=100000");
        assert_eq!(
            app.get(&url, Some(PLATFORM_KEY)).await.status(),
            200,
            "{url}"
        );
    }
}

fn email(from: &str) -> Value {
    json!({"category": "transactional", "from_email": from,
           "messages": [{"client_id": 5, "to_email": "grace@example.com", "subject": "Hi", "content": {"text": "x"}}]})
}

async fn assert_refused_at(resp: reqwest::Response, field: &str) {
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body", field]), "{v}");
}

/// Item 1: a business sends only from its own numbers and addresses.
async fn senders_are_the_business_own(d: Deployment) {
    let (app, k1, _) = two_businesses(d).await;
    let mut theirs = sms(10, "from business 2's number");
    theirs["from_number"] = json!("+14155550120");
    assert_refused_at(
        app.post("/businesses/1/sms/send", Some(&k1), &theirs).await,
        "from_number",
    )
    .await;
    let mut nobodys = sms(10, "from a number no location holds");
    nobodys["from_number"] = json!("+14155550199");
    assert_refused_at(
        app.post("/businesses/1/sms/send", Some(&k1), &nobodys)
            .await,
        "from_number",
    )
    .await;
    for from in [
        "front@spa2.example.com",
        "desk@spa2.example.com",
        "front@spa1.example.com.evil.example",
    ] {
        assert_refused_at(
            app.post("/businesses/1/email/send", Some(&k1), &email(from))
                .await,
            "from_email",
        )
        .await;
    }
    // Its own: the other location's number, a location's address, any address on an owned
    // domain.
    let mut own = sms(10, "from the annex");
    own["from_number"] = json!("+14155550111");
    let ok: Value = app
        .post("/businesses/1/sms/send", Some(&k1), &own)
        .await
        .json()
        .await
        .unwrap();
    let rid = ok["request_id"].as_str().expect("accepted").to_owned();
    let sent = app.request_messages(1, &rid, 1).await;
    wait_for("the SMS to be sent", Duration::from_secs(20), || async {
        let v = app.request_messages(1, &rid, 1).await;
        (v["messages"][0]["status"] == "delivered").then_some(())
    })
    .await;
    assert_eq!(sent["messages"][0]["from"], "+14155550111", "{sent}");
    let ok = app
        .post(
            "/businesses/1/email/send",
            Some(&k1),
            &email("Front@Spa1.example.com"),
        )
        .await;
    assert_eq!(ok.status(), 200);
    // Nothing refused was queued: only the two accepted messages exist.
    wait_for(
        "both accepted messages",
        Duration::from_secs(20),
        || async { (app.count("SELECT COUNT(*) FROM messages").await == 2).then_some(()) },
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages WHERE business_id = 1")
            .await,
        2
    );
}
both_deployments!(senders_are_the_business_own, senders_are_the_business_own);

/// Item 1, at send time: a From that was the business's when the request was accepted but is
/// not any more when the worker sends is refused by the worker.
async fn workers_check_the_sender_again(d: Deployment) {
    let (app, k1, _) = two_businesses(d).await;
    let sandbox = app.stop().await;
    let ingress = TestApp::spawn_in(sandbox, omega::Role::Ingress).await;
    let mut annex = sms(10, "from the annex");
    annex["from_number"] = json!("+14155550111");
    let ok: Value = ingress
        .post("/businesses/1/sms/send", Some(&k1), &annex)
        .await
        .json()
        .await
        .unwrap();
    let rid = ok["request_id"].as_str().expect("accepted").to_owned();
    // Meanwhile the annex's number moves to business 2.
    let mut one = business(1);
    one["locations"][1]["phone_number"] = Value::Null;
    let mut two = business(2);
    two["locations"][1]["phone_number"] = json!("+14155550111");
    for body in [one, two] {
        let data: entities::onboard::Onboarding = serde_json::from_value(body).unwrap();
        let run = format!("direct-{}", data.business_id);
        entities::onboard::start_run(&ingress.db, &run, data.business_id)
            .await
            .unwrap();
        entities::onboard::apply(&ingress.db, &run, &data)
            .await
            .unwrap();
    }
    let sandbox = ingress.stop().await;
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    let v = wait_for("the send to settle", Duration::from_secs(20), || async {
        let v = app.request_messages(1, &rid, 1).await;
        (v["messages"][0]["status"] == "failed").then_some(v)
    })
    .await;
    assert_eq!(v["messages"][0]["error_code"], "sender_not_allowed", "{v}");
}
both_deployments!(
    workers_check_the_sender_again,
    workers_check_the_sender_again
);

/// Item 2: a phone number belongs to one business, also when two onboard it at once.
async fn one_number_one_business(d: Deployment) {
    let (app, _, _) = two_businesses(d).await;
    // Business 2 claims business 1's main number for a new location.
    let mut two = business(2);
    two["locations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": 29, "name": "Copy", "phone_number": "+14155550110"}));
    let run = onboard(&app, &two).await;
    assert_eq!(run["status"], "completed", "{run}");
    let errors = run["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{run}");
    assert_eq!(errors[0]["section"], "locations");
    assert_eq!(errors[0]["id"], 29);
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .contains("+14155550110"),
        "{run}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM locations WHERE phone_number = '+14155550110'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM locations WHERE business_id = 2 AND id = 29")
            .await,
        0
    );
    // Two businesses onboard the same new number at the same moment: one gets it.
    let (mut three, mut four) = (business(3), business(4));
    three["locations"][0]["phone_number"] = json!("+14155550177");
    four["locations"][0]["phone_number"] = json!("+14155550177");
    let (a, b) = tokio::join!(onboard(&app, &three), onboard(&app, &four));
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("completed"), Some("completed"))
    );
    let reported = a["errors"].as_array().unwrap().len() + b["errors"].as_array().unwrap().len();
    assert_eq!(reported, 1, "{a} {b}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM locations WHERE phone_number = '+14155550177'")
            .await,
        1
    );
    // Numbers may move between one business's own locations in one onboarding.
    let mut swapped = business(1);
    swapped["locations"][0]["phone_number"] = json!("+14155550111");
    swapped["locations"][1]["phone_number"] = json!("+14155550110");
    let run = onboard(&app, &swapped).await;
    assert_eq!(run["errors"], json!([]), "{run}");
    assert_eq!(
        app.count("SELECT id FROM locations WHERE phone_number = '+14155550110'")
            .await,
        11
    );
}
both_deployments!(one_number_one_business, one_number_one_business);

/// Item 6: a STOP holds for the number, under any client row; a bounce for the address.
async fn consent_follows_the_address(d: Deployment) {
    const ACCOUNT: &str = "AC00000000000000000000000000000001";
    const TOKEN: &str = "global-auth-token-0123456789";
    let mut sandbox = common::Sandbox::new(d).await;
    sandbox.set("OMEGA_TWILIO_ACCOUNT_SID", ACCOUNT);
    sandbox.set("OMEGA_TWILIO_AUTH_TOKEN", TOKEN);
    sandbox.set("OMEGA_DEFAULT_SMS_PROVIDER", "sandbox");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    onboard(&app, &business(1)).await;
    onboard(&app, &business(2)).await;
    let grace = "+14155550123";
    let params = [
        ("AccountSid", ACCOUNT),
        ("MessageSid", "SM900"),
        ("From", grace),
        ("To", "+14155550110"),
        ("Body", "stop"),
    ];
    let path = "/twilio/sms/incoming";
    let resp = common::post_as_twilio(&app, TOKEN, path, &params).await;
    assert_eq!(resp.status(), 200);
    wait_for(
        "the STOP to be recorded",
        Duration::from_secs(20),
        || async {
            (app.count("SELECT COUNT(*) FROM address_consents WHERE opted_out = true")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    // The same number under another client id (created on the fly): not sent.
    let send = |business: i64, location: i64, client: i64| {
        let app = &app;
        async move {
            let body = json!({"category": "conversation", "location_id": location,
                "messages": [{"client_id": client, "to_number": grace, "message": "hello again"}]});
            let ok: Value = app
                .post(
                    &format!("/businesses/{business}/sms/send"),
                    Some(PLATFORM_KEY),
                    &body,
                )
                .await
                .json()
                .await
                .unwrap();
            let rid = ok["request_id"].as_str().unwrap().to_owned();
            wait_for("the send to settle", Duration::from_secs(20), || async {
                let v = app.request_messages(business, &rid, 1).await;
                let m = v["messages"][0].clone();
                matches!(m["status"].as_str(), Some("failed" | "delivered")).then_some(m)
            })
            .await
        }
    };
    let m = send(1, 10, 77).await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["error_code"], "opted_out", "{m}");
    assert!(
        m["error_message"]
            .as_str()
            .unwrap()
            .contains("replied STOP"),
        "{m}"
    );
    // It said STOP to business 1, not to business 2.
    let m = send(2, 20, 5).await;
    assert_eq!(m["status"], "delivered", "{m}");
    // The client's details report the number's consent.
    let v: Value = app
        .get("/businesses/1/clients/5", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    let consent = &v["address_consent"];
    assert_eq!(consent.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(consent[0]["channel"], "sms");
    assert_eq!(consent[0]["address"], grace);
    assert_eq!(consent[0]["opted_in"], false);
    // An email address that bounced, as the status step records it, refuses every client.
    entities::clients::set_consent(
        &app.db,
        1,
        5,
        entities::types::Channel::Email,
        Some("Grace@Example.com"),
        false,
        chrono::Utc::now(),
        "bounce",
    )
    .await
    .unwrap();
    let body = json!({"category": "transactional", "from_email": "front@spa1.example.com",
        "messages": [{"client_id": 78, "to_email": "grace@example.com", "subject": "Hi", "content": {"text": "x"}}]});
    let ok: Value = app
        .post("/businesses/1/email/send", Some(PLATFORM_KEY), &body)
        .await
        .json()
        .await
        .unwrap();
    let rid = ok["request_id"].as_str().unwrap().to_owned();
    let m = wait_for("the email to settle", Duration::from_secs(20), || async {
        let v = app.request_messages(1, &rid, 1).await;
        let m = v["messages"][0].clone();
        matches!(m["status"].as_str(), Some("failed" | "delivered")).then_some(m)
    })
    .await;
    assert_eq!(m["error_code"], "opted_out", "{m}");
}
both_deployments!(consent_follows_the_address, consent_follows_the_address);
