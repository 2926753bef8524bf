//! Contract tests: omega's Twilio and SendGrid clients against mock servers that Prism
//! generates from the providers' own OpenAPI descriptions (`../shared/provider-specs`). Prism
//! answers 422 for any request the description does not allow, which omega would record as a
//! failed message, so a sent message proves the request matched the real API's shape.
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp, wait_for};
use serde_json::{Value, json};

fn spec(name: &str) -> String {
    // Ours (tests/contract/specs), else the shared ones.
    let own = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/contract/specs")
        .join(name);
    if own.exists() {
        return own.display().to_string();
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/provider-specs")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: the provider specs live in ../shared beside the checkout",
        path.display()
    );
    path.display().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `prism mock --errors` for a spec and waits until it listens.
async fn prism(spec_file: &str) -> (tokio::process::Child, String) {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/contract/node_modules/.bin/prism");
    assert!(
        bin.exists(),
        "Prism is not installed: run `npm ci` in tests/contract (scripts/test does)"
    );
    let port = free_port();
    let child = tokio::process::Command::new(bin)
        // Dynamic answers: each accepted message gets its own id, as from the real API.
        .args([
            "mock",
            "--errors",
            "--dynamic",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            &spec(spec_file),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prism starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_for("Prism to listen", Duration::from_secs(120), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_requests_match_the_providers_api_descriptions() {
    let ((_twilio, twilio_base), (_sendgrid, sendgrid_base)) = tokio::join!(
        prism("twilio_api_v2010.json"),
        prism("sendgrid_mail_v3.json")
    );
    let mut sandbox = Sandbox::new(Deployment::Embedded).await;
    sandbox.set(
        "OMEGA_TWILIO_ACCOUNT_SID",
        "AC00000000000000000000000000000001",
    );
    sandbox.set("OMEGA_TWILIO_AUTH_TOKEN", "auth-token-0123456789");
    sandbox.set("OMEGA_TWILIO_API_BASE", &twilio_base);
    sandbox.set("OMEGA_SENDGRID_API_KEY", "SG.contract-test");
    sandbox.set("OMEGA_SENDGRID_API_BASE", &sendgrid_base);
    sandbox.set("OMEGA_PUBLIC_URL", "https://omega.example.com");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;

    let sms = json!({"category": "reminder", "location_id": 10, "messages": [
        {"client_id": 5, "to_number": "+14155550123", "message": "Your appointment is at 3pm"},
        // No media here: Prism reads no form field as the array `MediaUrl` is described as (one
        // value or repeated), though Twilio accepts both; tests/send.rs checks MediaUrl.
        {"client_id": 6, "to_number": "+14155550124", "message": "See you soon"}
    ]});
    let ok: Value = app
        .post("/businesses/1/sms/send", Some(PLATFORM_KEY), &sms)
        .await
        .json()
        .await
        .unwrap();
    let email = json!({"category": "campaign", "from_email": "desk@spa.example.com", "from_name": "Serenity", "reply_to": "help@spa.example.com", "messages": [
        {"client_id": 5, "to_email": "grace@example.com", "subject": "Your visit", "content": {"text": "Thanks", "html": "<p>Thanks</p>"},
         "cc_email": ["cc@example.com"], "bcc_email": ["bcc@example.com"],
         "attachments": [{"content": "aGVsbG8=", "content_type": "text/plain", "filename": "a.txt"}]}
    ]});
    let ok_email: Value = app
        .post("/businesses/1/email/send", Some(PLATFORM_KEY), &email)
        .await
        .json()
        .await
        .unwrap();

    for (request, n, provider) in [(&ok, 2, "twilio"), (&ok_email, 1, "sendgrid")] {
        let rid = request["request_id"].as_str().unwrap();
        let messages = wait_for(
            "the messages to be sent",
            Duration::from_secs(60),
            || async {
                let v: Value = app
                    .get(
                        &format!("/businesses/1/messages/requests/{rid}"),
                        Some(PLATFORM_KEY),
                    )
                    .await
                    .json()
                    .await
                    .unwrap();
                if v["total"].as_u64() != Some(n as u64) {
                    return None;
                }
                let m = v["messages"].as_array().unwrap().clone();
                m.iter()
                    .all(|m| m["status"] != "queued" || m["provider_message_id"].is_string())
                    .then_some(m)
            },
        )
        .await;
        for m in messages {
            assert_eq!(m["provider"], provider);
            assert_ne!(
                m["status"], "failed",
                "{provider} refused omega's request: {} {}",
                m["error_code"], m["error_message"]
            );
            assert!(m["provider_message_id"].is_string(), "{m}");
        }
    }
}

/// Postmark's and Amazon SES's descriptions (tests/contract/specs): an email sent through
/// each, attachments and omega's headers included, is accepted by the mock of its API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_and_ses_requests_match_their_api_descriptions() {
    let ((_postmark, postmark_base), (_ses, ses_base)) =
        tokio::join!(prism("postmark_server.json"), prism("aws_sesv2.json"));
    let mut sandbox = Sandbox::new(Deployment::Embedded).await;
    sandbox.set("OMEGA_POSTMARK_SERVER_TOKEN", "postmark-contract-test");
    sandbox.set("OMEGA_POSTMARK_API_BASE", &postmark_base);
    sandbox.set("OMEGA_SES_REGION", "us-east-1");
    sandbox.set("OMEGA_SES_ACCESS_KEY_ID", "AKIDEXAMPLE");
    sandbox.set(
        "OMEGA_SES_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    sandbox.set("OMEGA_SES_ENDPOINT", &ses_base);
    sandbox.set("OMEGA_INBOUND_EMAIL_DOMAIN", "in.omega.example");
    let app = TestApp::spawn_in(sandbox, omega::Role::Serve).await;
    app.onboard(1).await;
    for provider in ["postmark", "ses"] {
        let email = json!({"category": "campaign", "provider": provider, "location_id": 10, "from_email": "desk@spa.example.com", "from_name": "Serenity", "messages": [
            {"client_id": 5, "to_email": "grace@example.com", "subject": "Your visit", "content": {"text": "Thanks", "html": "<p>Thanks</p>"},
             "cc_email": ["cc@example.com"], "bcc_email": ["bcc@example.com"],
             "attachments": [{"content": "aGVsbG8=", "content_type": "text/plain", "filename": "a.txt"}]}
        ]});
        let ok: Value = app
            .post("/businesses/1/email/send", Some(PLATFORM_KEY), &email)
            .await
            .json()
            .await
            .unwrap();
        let rid = ok["request_id"].as_str().unwrap().to_owned();
        let m = wait_for("the email to be sent", Duration::from_secs(60), || async {
            let v = app.request_messages(1, &rid, 1).await;
            let m = v["messages"][0].clone();
            (m["status"] != "queued" || m["provider_message_id"].is_string()).then_some(m)
        })
        .await;
        assert_eq!(m["provider"], provider);
        assert_ne!(
            m["status"], "failed",
            "{provider} refused omega's request: {} {}",
            m["error_code"], m["error_message"]
        );
    }
}

/// Fields that may be absent and are never sent as null: omitted when empty (poem-openapi's
/// `skip_serializing_if_is_none`), or request fields with a default.
const OMITTED_WHEN_EMPTY: &[&str] = &[
    "ClientExport.client",
    "EmailAttachment.content",
    "EmailAttachment.content_type",
    "EmailAttachment.filename",
    "EmailAttachment.url",
    "HealthService.detail",
    "MessageItem.events",
    "MessagingSettingsBody.help_keywords",
    "MessagingSettingsBody.opt_in_keywords",
    "MessagingSettingsBody.opt_out_keywords",
    "MessagingSettingsBody.quiet_hours_categories",
    "PaginatedMessages.conversation",
    "RecordEmailRequest.sender_type",
    "RecordSmsRequest.sender_type",
    "SendEmailRequest.sender_type",
    "SendSmsRequest.sender_type",
];

/// Issue 14: omega's own OpenAPI document is valid OpenAPI (checked by swagger-parser, not by
/// the library that wrote it), and every optional field is either declared nullable or
/// omitted when empty, so a client generated from it accepts every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_openapi_document_validates() {
    let app = TestApp::spawn(Deployment::Embedded).await;
    let text = app.get("/openapi.json", None).await.text().await.unwrap();
    let file = app.sandbox.dir().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let parser = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/contract/node_modules/@apidevtools/swagger-parser");
    assert!(
        parser.exists(),
        "swagger-parser is not installed: run `npm ci` in tests/contract (scripts/test does)"
    );
    let out = tokio::process::Command::new("node")
        .arg("-e")
        .arg(
            "require(process.argv[1]).validate(process.argv[2])\
             .then(() => process.exit(0), e => { console.error(e.message); process.exit(1); })",
        )
        .arg(&parser)
        .arg(&file)
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "the OpenAPI document is not valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let spec: Value = serde_json::from_str(&text).unwrap();
    let mut neither = vec![];
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        for (field, p) in properties {
            if !required.contains(&field.as_str()) && p["nullable"] != true {
                neither.push(format!("{name}.{field}"));
            }
        }
    }
    neither.sort();
    assert_eq!(
        neither, OMITTED_WHEN_EMPTY,
        "optional fields neither nullable nor known to be omitted when empty"
    );
}
