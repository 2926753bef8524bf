//! The live event stream (issue 16): Server-Sent Events of a business's log, resumed after
//! `Last-Event-ID` (or `?after=`) with the missed events first and no gap or repeat at the
//! seam; heartbeats; keys and staff sessions of the business only; and, scaled, events
//! recorded by a separate worker reaching a stream held by an ingress-only process.
mod common;

use std::time::Duration;

use common::{Deployment, PLATFORM_KEY, Sandbox, TestApp};
use common::{TWILIO_ACCOUNT as ACCOUNT, TWILIO_TOKEN as TOKEN};
use omega::Role;
use serde_json::{Value, json};

/// One Server-Sent Events frame.
#[derive(Debug, Default, Clone)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: String,
    comment: bool,
}

/// Reads frames off a streaming response.
struct Frames {
    body: reqwest::Response,
    buffer: String,
}

impl Frames {
    async fn open(app: &TestApp, path: &str, auth: &str, last_id: Option<&str>) -> Frames {
        let mut req = authed(app.http.get(app.url(path)), auth);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Frames {
            body: resp,
            buffer: String::new(),
        }
    }

    /// The next frame (comments included), failing the test after `within`.
    async fn next(&mut self, within: Duration) -> Frame {
        let read = async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let text: String = self.buffer.drain(..end + 2).collect();
                    let mut frame = Frame::default();
                    for line in text.lines() {
                        if line.starts_with(':') {
                            frame.comment = true;
                        } else if let Some(v) = line.strip_prefix("id: ") {
                            frame.id = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            frame.event = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            frame.data.push_str(v);
                        }
                    }
                    return frame;
                }
                let chunk = self
                    .body
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream stays open");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        };
        tokio::time::timeout(within, read)
            .await
            .expect("a frame in time")
    }

    /// The next event frame, skipping heartbeats.
    async fn event(&mut self) -> Frame {
        loop {
            let f = self.next(Duration::from_secs(20)).await;
            if !f.comment {
                return f;
            }
        }
    }
}

/// An API key goes in `X-API-KEY`, a staff session's token as a bearer.
fn authed(req: reqwest::RequestBuilder, auth: &str) -> reqwest::RequestBuilder {
    if auth.starts_with("omk_") {
        req.header("X-API-KEY", auth)
    } else {
        req.bearer_auth(auth)
    }
}

fn twilio_env(sandbox: &mut Sandbox) {
    sandbox.set("OMEGA_DEFAULT_SMS_PROVIDER", "sandbox");
    sandbox.set("OMEGA_TWILIO_ACCOUNT_SID", ACCOUNT);
    sandbox.set("OMEGA_TWILIO_AUTH_TOKEN", TOKEN);
    sandbox.set("OMEGA_EVENT_STREAM_HEARTBEAT_SECS", "1");
}

fn payload(f: &Frame) -> Value {
    serde_json::from_str(&f.data).unwrap()
}

async fn streams_resume_without_gap_or_repeat(d: Deployment) {
    let mut sandbox = Sandbox::new(d).await;
    twilio_env(&mut sandbox);
    let app = TestApp::spawn_in(sandbox, Role::Serve).await;
    app.onboard(1).await;
    app.onboard_directly(2).await;
    let staff = app.session(1, 789).await;
    let path = "/businesses/1/events/stream";

    // A staff session of the business streams; another business's key or session does not.
    let other_key = app.business_key(2).await;
    for (p, auth) in [
        (path, other_key.as_str()),
        ("/businesses/2/events/stream", &staff),
    ] {
        let resp = authed(app.http.get(app.url(p)), auth).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{p}");
    }
    let resp = app
        .http
        .get(app.url(path))
        .bearer_auth(&staff)
        .header("Last-Event-ID", "evt_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let resp = app
        .get(&format!("{path}?types=message.sent"), Some(PLATFORM_KEY))
        .await;
    assert_eq!(resp.status(), 422);

    // Live: from now on, one frame per event, the webhook body as data.
    let mut live = Frames::open(&app, path, &staff, None).await;
    // The heartbeat (1 s here) keeps an idle stream open.
    assert!(live.next(Duration::from_secs(5)).await.comment);
    common::client_texts(&app, "SMs1", "First").await;
    let first = live.event().await;
    assert_eq!(first.event.as_deref(), Some("message.received"));
    let body = payload(&first);
    assert_eq!(body["type"], "message.received");
    assert_eq!(body["data"]["body"], "First");
    assert_eq!(body["data"]["business_id"], 1);
    assert_eq!(body["data"]["event_id"].as_str(), first.id.as_deref());
    drop(live);

    // Missed while disconnected: three events, then resume after the first.
    for (sid, words) in [("SMs2", "Second"), ("SMs3", "Third"), ("SMs4", "Fourth")] {
        common::client_texts(&app, sid, words).await;
    }
    common::wait_for(
        "the missed events logged",
        Duration::from_secs(20),
        || async {
            let v: Value = app
                .get(
                    "/businesses/1/events?types=message.received",
                    Some(PLATFORM_KEY),
                )
                .await
                .json()
                .await
                .unwrap();
            (v["events"].as_array().unwrap().len() >= 4).then_some(())
        },
    )
    .await;
    let mut resumed = Frames::open(&app, path, &staff, first.id.as_deref()).await;
    let mut seen = vec![];
    for _ in 0..3 {
        seen.push(resumed.event().await);
    }
    common::client_texts(&app, "SMs5", "Fifth").await;
    seen.push(resumed.event().await);
    let bodies: Vec<String> = seen
        .iter()
        .filter(|f| f.event.as_deref() == Some("message.received"))
        .map(|f| payload(f)["data"]["body"].as_str().unwrap().to_owned())
        .collect();
    // The three missed ones (in the order workers committed them), then the live one.
    let mut missed = bodies[..3].to_vec();
    missed.sort();
    assert_eq!(missed, ["Fourth", "Second", "Third"], "{seen:?}");
    assert_eq!(bodies[3], "Fifth", "{seen:?}");
    let ids: Vec<&str> = seen.iter().map(|f| f.id.as_deref().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "ascending, no repeat");
    assert!(ids[0] > first.id.as_deref().unwrap());

    // `?after=` resumes the same way (for clients that cannot set the header), filtered.
    let query = format!("{path}?after={}&types=message.received", first.id.unwrap());
    let mut again = Frames::open(&app, &query, PLATFORM_KEY, None).await;
    assert_eq!(payload(&again.event().await)["data"]["body"], bodies[0]);
}
both_deployments!(
    streams_resume_without_gap_or_repeat,
    streams_resume_without_gap_or_repeat
);

/// Scaled: the stream is held by an ingress-only process; events are recorded by a worker
/// process of its own, and reach the stream through Redis and the log, live and on resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_another_process_reaches_the_stream() {
    let mut sandbox = Sandbox::new(Deployment::Scaled).await;
    twilio_env(&mut sandbox);
    let config = sandbox.config();
    let ingress = TestApp::spawn_in(sandbox, Role::Ingress).await;
    let worker = omega::start(config, Role::Worker)
        .await
        .expect("a worker starts");
    ingress.onboard(1).await;
    let key = ingress.business_key(1).await;
    let mut stream = Frames::open(&ingress, "/businesses/1/events/stream", &key, None).await;
    common::client_texts(&ingress, "SMx1", "From afar").await;
    let frame = stream.event().await;
    assert_eq!(payload(&frame)["data"]["body"], "From afar");
    assert_eq!(frame.event.as_deref(), Some("message.received"));
    // Inbox commands are written by the ingress process itself.
    let conversation = payload(&frame)["data"]["conversation_id"].as_i64().unwrap();
    let resp = ingress
        .post(
            &format!("/businesses/1/conversations/{conversation}/notes"),
            Some(&key),
            &json!({"staff_id": 789, "note": "Called back"}),
        )
        .await;
    assert!(resp.status().is_success());
    let note = stream.event().await;
    assert_eq!(note.event.as_deref(), Some("conversation.note_added"));

    // Disconnected, the worker records two more; resuming after the note gives both.
    drop(stream);
    common::client_texts(&ingress, "SMx2", "Still there?").await;
    common::client_texts(&ingress, "SMx3", "Hello?").await;
    let mut resumed = Frames::open(
        &ingress,
        "/businesses/1/events/stream?types=message.received",
        &key,
        note.id.as_deref(),
    )
    .await;
    let mut bodies = vec![];
    for _ in 0..2 {
        let f = resumed.event().await;
        assert!(f.id.as_deref() > note.id.as_deref());
        bodies.push(payload(&f)["data"]["body"].as_str().unwrap().to_owned());
    }
    bodies.sort();
    assert_eq!(bodies, ["Hello?", "Still there?"]);
    worker.shutdown().await.unwrap();
}
