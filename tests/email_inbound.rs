//! Email from clients: each provider's inbound format (SendGrid Inbound Parse, a Mailgun
//! route, Postmark's inbound webhook) authenticated and recorded once in the right
//! conversation; threading by reply address and by headers; and staff answering from the
//! inbox with a session, threaded under the client's email.
mod common;
mod email_support;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, TestApp, wait_for};
use email_support::{app_with_providers, provider_mocks, send, settled};
use hmac::Mac;
use serde_json::{Value, json};

const TOKEN: &str = "parse-secret-token";
const INBOUND_DOMAIN: &str = "in.omega.example";

async fn inbound_app(d: Deployment, base: &str) -> TestApp {
    app_with_providers(
        d,
        base,
        &[
            ("OMEGA_INBOUND_EMAIL_TOKEN", TOKEN),
            ("OMEGA_INBOUND_EMAIL_DOMAIN", INBOUND_DOMAIN),
            ("OMEGA_DEFAULT_EMAIL_PROVIDER", "postmark"),
        ],
    )
    .await
}

/// A SendGrid Inbound Parse post (multipart/form-data), as Parse sends it.
fn parse_form(
    from: &str,
    to: &str,
    subject: &str,
    text: &str,
    headers: &str,
) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("from", from.to_owned())
        .text("to", to.to_owned())
        .text("subject", subject.to_owned())
        .text("text", text.to_owned())
        .text("headers", headers.to_owned())
        .text("envelope", json!({"to": [to], "from": from}).to_string())
        .text("attachments", "1")
        .text(
            "attachment-info",
            json!({"attachment1": {"filename": "photo.jpg", "type": "image/jpeg"}}).to_string(),
        )
        .part(
            "attachment1",
            reqwest::multipart::Part::bytes(b"JPEGDATA".to_vec())
                .file_name("photo.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        )
}

async fn post_parse(
    app: &TestApp,
    token: Option<&str>,
    form: reqwest::multipart::Form,
) -> reqwest::Response {
    let url = match token {
        Some(t) => app.url(&format!("/email/inbound/sendgrid?token={t}")),
        None => app.url("/email/inbound/sendgrid"),
    };
    app.http.post(url).multipart(form).send().await.unwrap()
}

fn mailgun_form(token: &str, key: &str, fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{ts}{token}").as_bytes());
    let mut form = reqwest::multipart::Form::new()
        .text("timestamp", ts)
        .text("token", token.to_owned())
        .text("signature", hex::encode(mac.finalize().into_bytes()));
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    form
}

/// Postmark's inbound webhook post, with the Basic password given.
async fn post_postmark(app: &TestApp, password: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/email/inbound/postmark"))
        .basic_auth("postmark", Some(password))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POST as a staff session (its bearer token).
async fn post_as(app: &TestApp, session: &str, path: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(session)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The conversation of a client at a location, once it exists.
async fn conversation_of(app: &TestApp, client_id: i64, location_id: i64) -> Value {
    wait_for("the conversation", Duration::from_secs(20), || async {
        let v: Value = app
            .get(
                "/businesses/1/conversations?page_size=100",
                Some(PLATFORM_KEY),
            )
            .await
            .json()
            .await
            .unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client"]["id"] == client_id && c["location_id"] == location_id)
            .cloned()
    })
    .await
}

/// The conversation's messages (newest first) once `n` of them are email.
async fn emails_in(app: &TestApp, conversation_id: i64, n: usize) -> Vec<Value> {
    wait_for("the emails", Duration::from_secs(20), || async {
        let v: Value = app
            .get(
                &format!("/businesses/1/conversations/{conversation_id}/messages?filter=email&page_size=100"),
                Some(PLATFORM_KEY),
            )
            .await
            .json()
            .await
            .unwrap();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        (items.len() == n).then_some(items)
    })
    .await
}

async fn inbound_formats_are_authenticated_and_recorded_once(d: Deployment) {
    let (base, _) = provider_mocks().await;
    let app = inbound_app(d, &base).await;
    let headers = "Message-ID: <c1@mail.example.com>\nDate: Mon, 7 Dec 2026 10:00:00 +0000\n";
    let grace = "\"Grace Hopper\" <Grace@Example.com>";
    let form = || {
        parse_form(
            grace,
            "Downtown <downtown@example.com>",
            "Moving my visit",
            "Can we do Friday?\n\nOn Mon, Serenity wrote:\n> See you Thursday",
            headers,
        )
    };

    // SendGrid: no token, a wrong one: 403 and nothing recorded.
    assert_eq!(post_parse(&app, None, form()).await.status(), 403);
    assert_eq!(post_parse(&app, Some("wrong"), form()).await.status(), 403);
    // Malformed: 422, never 5xx.
    let resp = app
        .http
        .post(app.url(&format!("/email/inbound/sendgrid?token={TOKEN}")))
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("--xyz\r\nbroken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422, "{}", resp.text().await.unwrap());
    let resp = app
        .http
        .post(app.url(&format!("/email/inbound/sendgrid?token={TOKEN}")))
        .multipart(reqwest::multipart::Form::new().text("subject", "no sender"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    // Over 25 MB: 413.
    assert_eq!(
        common::oversized(
            &app,
            &format!("/email/inbound/sendgrid?token={TOKEN}"),
            "multipart/form-data; boundary=x",
            30 << 20,
            26 << 20
        )
        .await,
        413
    );

    // Accepted twice (a Parse retry): recorded once.
    for _ in 0..2 {
        let resp = post_parse(&app, Some(TOKEN), form()).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["updated"], 1);
    }
    let conversation = conversation_of(&app, 5, 10).await;
    let c = conversation["id"].as_i64().unwrap();
    let emails = emails_in(&app, c, 1).await;
    let m = &emails[0];
    assert_eq!(
        (
            m["direction"].as_str(),
            m["status"].as_str(),
            m["channel"].as_str()
        ),
        (Some("inbound"), Some("received"), Some("email"))
    );
    assert_eq!(m["subject"], "Moving my visit");
    assert_eq!(m["from"], "grace@example.com");
    assert!(
        m["body"].as_str().unwrap().contains("> See you Thursday"),
        "the history is kept"
    );
    assert_eq!(
        m["attachments"],
        json!([{"filename": "photo.jpg", "content_type": "image/jpeg", "size": 8, "index": 0}])
    );
    let conversation = conversation_of(&app, 5, 10).await;
    assert_eq!(
        conversation["last_message"]["preview"], "Can we do Friday?",
        "the quote is trimmed from the preview"
    );
    assert!(conversation["unread_count"].as_i64().unwrap() >= 1);
    // The attachment downloads; not for another business's key.
    let id = m["id"].as_i64().unwrap();
    let resp = app
        .get(
            &format!("/businesses/1/messages/{id}/attachments/0"),
            Some(PLATFORM_KEY),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("photo.jpg")
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"JPEGDATA");
    app.onboard_directly(2).await;
    let other = app.business_key(2).await;
    let resp = app
        .get(
            &format!("/businesses/1/messages/{id}/attachments/0"),
            Some(&other),
        )
        .await;
    assert_eq!(resp.status(), 403);
    let resp = app
        .get(
            &format!("/businesses/2/messages/{id}/attachments/0"),
            Some(&other),
        )
        .await;
    assert_eq!(resp.status(), 404);

    // A stranger writing to the location becomes a lead.
    let resp = post_parse(
        &app,
        Some(TOKEN),
        parse_form(
            "new.person@example.org",
            "downtown@example.com",
            "Prices?",
            "How much is a massage?",
            "Message-ID: <s1@example.org>\n",
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    wait_for("the lead", Duration::from_secs(20), || async {
        let v: Value = app
            .get("/businesses/1/clients?q=new.person", Some(PLATFORM_KEY))
            .await
            .json()
            .await
            .unwrap();
        (v["items"].as_array().map(|a| a.len()) == Some(1)
            && v["items"][0]["client_type"] == "lead")
            .then_some(())
    })
    .await;

    // Mail for no business here: answered, not recorded.
    let resp = post_parse(
        &app,
        Some(TOKEN),
        parse_form(
            "a@example.org",
            "nobody@elsewhere.example",
            "x",
            "y",
            "Message-ID: <n1@example.org>\n",
        ),
    )
    .await;
    assert_eq!(resp.json::<Value>().await.unwrap()["updated"], 0);

    // Mailgun: signed form; a forged signature and a replayed token are refused.
    let fields = [
        ("from", "Grace Hopper <grace@example.com>"),
        ("recipient", "downtown@example.com"),
        ("subject", "Mailgun says hi"),
        ("body-plain", "Hello from Mailgun"),
        ("Message-Id", "<mg-in-1@mail.example.com>"),
    ];
    let post_mailgun = |form: reqwest::multipart::Form| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/email/inbound/mailgun"))
                .multipart(form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post_mailgun(mailgun_form("tok-1", "not-the-key", &fields)).await,
        403
    );
    assert_eq!(
        post_mailgun(mailgun_form("tok-2", "mailgun-signing-key", &fields)).await,
        200
    );
    assert_eq!(
        post_mailgun(mailgun_form("tok-2", "mailgun-signing-key", &fields)).await,
        403,
        "a replayed token"
    );

    // Postmark: JSON with Basic credentials.
    let postmark = json!({"FromFull": {"Email": "grace@example.com", "Name": "Grace Hopper"}, "ToFull": [{"Email": "downtown@example.com"}],
        "Subject": "Postmark says hi", "TextBody": "Hello from Postmark", "HtmlBody": "<p>Hello from Postmark</p>", "MessageID": "pm-uuid",
        "Headers": [{"Name": "Message-ID", "Value": "<pm-in-1@mail.example.com>"}],
        "Attachments": [{"Name": "note.txt", "Content": "bm90ZQ==", "ContentType": "text/plain", "ContentLength": 4}]});
    let resp = post_postmark(&app, "wrong", &postmark).await;
    assert_eq!(resp.status(), 403);
    let resp = post_postmark(&app, "hook-secret", &postmark).await;
    assert_eq!(resp.status(), 200);
    let emails = emails_in(&app, c, 3).await;
    let subjects: Vec<&str> = emails
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&"Mailgun says hi") && subjects.contains(&"Postmark says hi"),
        "{subjects:?}"
    );
    let pm = emails
        .iter()
        .find(|m| m["subject"] == "Postmark says hi")
        .unwrap();
    assert_eq!(pm["attachments"][0]["size"], 4);
    assert_eq!(pm["provider"], "postmark");
}
both_deployments!(
    inbound_formats,
    inbound_formats_are_authenticated_and_recorded_once
);

async fn a_conversation_by_email_threads_both_ways(d: Deployment) {
    let (base, calls) = provider_mocks().await;
    let app = inbound_app(d, &base).await;
    // The business writes to Grace through Postmark.
    let request = send(&app, json!({"category": "conversation", "provider": "postmark", "location_id": 10, "from_email": "downtown@example.com",
        "messages": [{"client_id": 5, "to_email": "grace@example.com", "subject": "Your visit", "content": {"text": "See you Thursday"}}]})).await;
    let sent = settled(&app, &request, 1, |m| {
        m[0]["provider_message_id"].is_string()
    })
    .await;
    let c = sent[0]["conversation_id"].as_i64().unwrap();
    let out = calls.all().pop().unwrap().body;
    let reply_to = out["ReplyTo"].as_str().unwrap().to_owned();
    assert!(
        reply_to.starts_with("reply+1.") && reply_to.ends_with(&format!("@{INBOUND_DOMAIN}")),
        "{reply_to}"
    );
    let our_id = out["Headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["Name"] == "Message-ID")
        .unwrap()["Value"]
        .as_str()
        .unwrap()
        .to_owned();

    // Her reply to the reply address lands in the conversation.
    let reply = json!({"FromFull": {"Email": "grace@example.com", "Name": "Grace"}, "ToFull": [{"Email": reply_to}],
        "Subject": "Re: Your visit", "TextBody": "Could it be Friday?",
        "Headers": [{"Name": "Message-ID", "Value": "<g1@mail.example.com>"}, {"Name": "In-Reply-To", "Value": our_id}]});
    let resp = post_postmark(&app, "hook-secret", &reply).await;
    assert_eq!(resp.status(), 200);
    // A forged reply address names nothing: not recorded there.
    let forged = reply_to.replacen("reply+1.", "reply+2.", 1);
    let mut stray = reply.clone();
    stray["ToFull"] = json!([{"Email": forged}]);
    stray["Headers"] = json!([{"Name": "Message-ID", "Value": "<g-forged@mail.example.com>"}]);
    let resp = post_postmark(&app, "hook-secret", &stray).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["updated"], 0);
    // A reply from another mail program that kept only the headers threads by them.
    let by_headers = parse_form(
        "grace@example.com",
        "someone.else@example.net",
        "Re: Your visit",
        "Or Saturday.",
        &format!(
            "Message-ID: <g2@mail.example.com>\nIn-Reply-To: {our_id}\nReferences: {our_id}\n"
        ),
    );
    let resp = post_parse(&app, Some(TOKEN), by_headers).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["updated"], 1);
    let emails = emails_in(&app, c, 3).await;
    assert_eq!(
        emails
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count(),
        2
    );

    // A staff member answers from the inbox with a session; it threads under her last email.
    let session = app.session(1, 789).await;
    let path = format!("/businesses/1/conversations/{c}/reply");
    let resp = app
        .post(
            &path,
            Some(PLATFORM_KEY),
            &json!({"channel": "email", "message": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 422, "a key must name the staff member");
    let resp = post_as(
        &app,
        &session,
        &path,
        &json!({"channel": "email", "message": "x", "staff_id": 790}),
    )
    .await;
    assert_eq!(resp.status(), 403, "a session cannot reply as a colleague");
    let resp = post_as(
        &app,
        &session,
        &path,
        &json!({"channel": "fax", "message": "x"}),
    )
    .await;
    assert_eq!(resp.status(), 422);
    let resp = post_as(
        &app,
        &session,
        &path,
        &json!({"channel": "email", "message": "Saturday at 10 works."}),
    )
    .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let answer: Value = resp.json().await.unwrap();
    let answered = settled(&app, &answer, 1, |m| {
        m[0]["provider_message_id"].is_string()
    })
    .await;
    assert_eq!(answered[0]["conversation_id"], c);
    assert_eq!(answered[0]["staff_id"], 789);
    assert_eq!(answered[0]["sender_type"], "staff");
    assert_eq!(answered[0]["subject"], "Re: Your visit");
    let out = calls.all().pop().unwrap().body;
    assert_eq!(out["To"], "grace@example.com");
    assert_eq!(out["From"], "downtown@example.com");
    let header = |name: &str| {
        out["Headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["Name"] == name)
            .map(|h| h["Value"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        header("In-Reply-To").as_deref(),
        Some("<g2@mail.example.com>")
    );
    assert_eq!(
        header("References"),
        Some(format!("{our_id} <g2@mail.example.com>"))
    );
    // And by SMS from the same conversation.
    let resp = post_as(
        &app,
        &session,
        &path,
        &json!({"channel": "sms", "message": "See you then!"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // Another business's key, and another business's conversation: refused.
    app.onboard_directly(2).await;
    let other = app.business_key(2).await;
    let resp = app
        .post(
            &path,
            Some(&other),
            &json!({"channel": "email", "message": "x", "staff_id": 789}),
        )
        .await;
    assert_eq!(resp.status(), 403);
    let resp = app
        .post(
            &format!("/businesses/2/conversations/{c}/reply"),
            Some(&other),
            &json!({"channel": "email", "message": "x", "staff_id": 789}),
        )
        .await;
    assert!(
        matches!(resp.status().as_u16(), 404 | 422),
        "{}",
        resp.status()
    );
}
both_deployments!(email_threads, a_conversation_by_email_threads_both_ways);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_posts_also_need_basic_credentials_when_configured() {
    let (base, _) = provider_mocks().await;
    let app = app_with_providers(
        Deployment::Embedded,
        &base,
        &[
            ("OMEGA_INBOUND_EMAIL_TOKEN", TOKEN),
            ("OMEGA_INBOUND_EMAIL_USER", "parse"),
            ("OMEGA_INBOUND_EMAIL_PASSWORD", "parse-password"),
        ],
    )
    .await;
    let form = || {
        parse_form(
            "grace@example.com",
            "downtown@example.com",
            "Hello",
            "Hi there",
            "Message-ID: <b1@mail.example.com>\n",
        )
    };
    let url = app.url(&format!("/email/inbound/sendgrid?token={TOKEN}"));
    let resp = app.http.post(&url).multipart(form()).send().await.unwrap();
    assert_eq!(resp.status(), 403, "the token alone is not enough");
    let resp = app
        .http
        .post(&url)
        .basic_auth("parse", Some("wrong"))
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .http
        .post(&url)
        .basic_auth("parse", Some("parse-password"))
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let conversation = conversation_of(&app, 5, 10).await;
    emails_in(&app, conversation["id"].as_i64().unwrap(), 1).await;
}
