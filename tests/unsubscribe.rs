//! One-click unsubscribe (issue 15, RFC 8058) end to end through a SendGrid mock: campaign
//! and automated email carry `List-Unsubscribe` and `List-Unsubscribe-Post`, transactional
//! email does not; the link's page changes nothing; its POST opts the address out for the
//! business, and later sends to it (under any client row) are refused.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, handler, http::StatusCode};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Mails(Arc<Mutex<Vec<Value>>>);

#[handler]
async fn sendgrid(body: String, mails: Data<&Mails>) -> Response {
    let n = {
        let mut m = mails.0.0.lock().unwrap();
        m.push(serde_json::from_str(&body).unwrap());
        m.len()
    };
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("X-Message-Id", format!("sg-{n}"))
        .body("")
}

async fn app(d: Deployment, mails: &Mails) -> TestApp {
    let base = common::serve_mock(
        Route::new()
            .at("/v3/mail/send", poem::post(sendgrid))
            .data(mails.clone()),
    )
    .await;
    let mut sandbox = Sandbox::new(d).await;
    sandbox.set("OMEGA_SENDGRID_API_KEY", "SG.test-key");
    sandbox.set("OMEGA_SENDGRID_API_BASE", &base);
    sandbox.set("OMEGA_PUBLIC_URL", "https://omega.example.com");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    app.onboard(2).await;
    app
}

/// Sends one email and waits until the provider has it or it failed; the message.
async fn send(app: &TestApp, business: i64, category: &str, client: i64, to: &str) -> Value {
    let body = json!({"category": category, "from_email": "desk@spa.example", "provider": "sendgrid",
        "messages": [{"client_id": client, "to_email": to, "subject": "News", "content": {"text": "Spring offers"}}]});
    let ok: Value = app
        .post(
            &format!("/businesses/{business}/email/send"),
            Some(PLATFORM_KEY),
            &body,
        )
        .await
        .json()
        .await
        .unwrap();
    let rid = ok["request_id"].as_str().expect("a request id").to_owned();
    wait_for("the email to settle", Duration::from_secs(20), || async {
        let v = app.request_messages(business, &rid, 1).await;
        let m = v["messages"][0].clone();
        (m["provider_message_id"].is_string() || m["status"] == "failed").then_some(m)
    })
    .await
}

fn mail_to(mails: &Mails, index: usize) -> Value {
    mails.0.lock().unwrap()[index].clone()
}

async fn one_click_unsubscribe_end_to_end(d: Deployment) {
    let mails = Mails::default();
    let app = app(d, &mails).await;
    let grace = "grace@example.com";

    // Transactional mail: no unsubscribe header. Campaign mail: both, with an https link.
    let m = send(&app, 1, "transactional", 5, grace).await;
    assert_eq!(m["status"], "queued", "{m}");
    let headers = mail_to(&mails, 0)["headers"].clone();
    assert!(headers.get("List-Unsubscribe").is_none(), "{headers}");
    assert!(
        headers["Message-ID"].is_string(),
        "every email has omega's Message-ID"
    );
    send(&app, 1, "campaign", 5, grace).await;
    let headers = mail_to(&mails, 1)["headers"].clone();
    assert_eq!(
        headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click",
        "{headers}"
    );
    let link = headers["List-Unsubscribe"].as_str().unwrap();
    let url = link
        .strip_prefix("<https://omega.example.com")
        .and_then(|l| l.strip_suffix('>'))
        .unwrap_or_else(|| panic!("a link on OMEGA_PUBLIC_URL: {link}"));
    let token = url.strip_prefix("/unsubscribe/").unwrap().to_owned();
    assert!(!token.contains("grace"), "the address is not in the link");
    // Automated mail carries one too, each its own.
    send(&app, 1, "automated", 5, grace).await;
    let other = mail_to(&mails, 2)["headers"]["List-Unsubscribe"].clone();
    assert!(other.as_str().unwrap().contains("/unsubscribe/"));
    assert_ne!(other.as_str(), Some(link));

    // The page names the business and hides the mailbox; it changes nothing.
    let page = app.http.get(app.url(url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Serenity Spa") && html.contains("g***@example.com"),
        "{html}"
    );
    assert!(html.contains("<form method=\"post\""), "{html}");
    assert!(!html.contains(grace), "{html}");
    let opted_out = "SELECT COUNT(*) FROM address_consents WHERE opted_out = true";
    assert_eq!(app.count(opted_out).await, 0, "a GET unsubscribes no one");

    // The mailbox provider's one-click POST (RFC 8058's body), with no key: 200, twice.
    for _ in 0..2 {
        let resp = app
            .http
            .post(app.url(url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.text().await.unwrap().contains("Unsubscribed"));
    }
    assert_eq!(app.count(opted_out).await, 1);
    let page = app.http.get(app.url(url)).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("is unsubscribed"));

    // Recorded like a bounce: the client's consent and the address's, with the reason.
    let v: Value = app
        .get("/businesses/1/clients/5", Some(PLATFORM_KEY))
        .await
        .json()
        .await
        .unwrap();
    let email = &v["consent"]["email"];
    assert_eq!(email["opted_in"], false, "{v}");
    assert_eq!(
        email["opt_out_reason"], "unsubscribed (one-click link)",
        "{v}"
    );
    let consent = v["address_consent"].as_array().unwrap();
    assert_eq!(consent.len(), 1, "{v}");
    assert_eq!(consent[0]["channel"], "email");
    assert_eq!(consent[0]["opted_in"], false);

    // Later sends to the address are refused, under another client row too; another business
    // still reaches it (the link named business 1).
    let sent_before = mails.0.lock().unwrap().len();
    for client in [5, 77] {
        let m = send(&app, 1, "campaign", client, grace).await;
        assert_eq!(m["status"], "failed", "{m}");
        assert_eq!(m["error_code"], "opted_out", "{m}");
    }
    assert_eq!(mails.0.lock().unwrap().len(), sent_before, "nothing sent");
    let m = send(&app, 2, "campaign", 5, grace).await;
    assert_eq!(m["status"], "queued", "{m}");

    // Links omega did not issue: 404, with no key and with one.
    let mut forged = token.clone().into_bytes();
    forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    // A path that is not even text is malformed input: 422.
    for (bad, expected) in [(forged.as_str(), 404), ("nope", 404), ("%00%ff", 422)] {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let resp = app
                .http
                .request(method.clone(), app.url(&format!("/unsubscribe/{bad}")))
                .header("X-API-KEY", PLATFORM_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), expected, "{method} {bad}");
        }
    }
    assert_eq!(app.count(opted_out).await, 1);
}
both_deployments!(one_click_unsubscribe, one_click_unsubscribe_end_to_end);
