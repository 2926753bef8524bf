//! The receiving side of `scripts/bench events`: a webhook receiver and N Server-Sent Events
//! readers of one business, counting events from commit (the event's `timestamp`, taken in
//! the transaction that wrote it) to receipt.
//!
//!   event_fanout <omega base URL> <API key> <business id> <readers> <events> <event type>
//!
//! It creates a webhook endpoint pointing at itself (the omega under test needs
//! `OMEGA_ALLOW_PRIVATE_URLS=true`), opens the streams, prints `ready`, and waits until the
//! endpoint and every reader have `events` events (or 10 minutes), then prints one line of
//! results per side and exits.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::web::Data;
use poem::{EndpointExt, IntoResponse, handler};

/// When each event was committed and when it arrived (Unix milliseconds).
type Receipts = Arc<Mutex<Vec<(f64, f64)>>>;

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The event's `timestamp`, found in the body without parsing all of it (a hundred readers
/// parsing every body would make this process the bottleneck on a small machine).
fn committed_ms(body: &str) -> f64 {
    const KEY: &str = "\"timestamp\":\"";
    let Some(start) = body.find(KEY).map(|i| i + KEY.len()) else {
        return f64::NAN;
    };
    let end = body[start..].find('"').map_or(body.len(), |i| start + i);
    chrono::DateTime::parse_from_rfc3339(&body[start..end])
        .map(|t| t.timestamp_millis() as f64)
        .unwrap_or(f64::NAN)
}

#[handler]
fn receive(body: String, receipts: Data<&Receipts>) -> poem::Response {
    let at = now_ms();
    receipts.lock().unwrap().push((committed_ms(&body), at));
    StatusCode::NO_CONTENT.into_response()
}

/// Reads one stream, recording each event frame's receipt.
async fn read_stream(mut resp: reqwest::Response, receipts: Receipts) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let at = now_ms();
                receipts.lock().unwrap().push((committed_ms(data), at));
            }
        }
    }
}

fn report(side: &str, receipts: &[(f64, f64)], per_reader: usize) {
    if receipts.is_empty() {
        println!("{side}: nothing received");
        return;
    }
    let mut latency: Vec<f64> = receipts.iter().map(|(c, r)| r - c).collect();
    latency.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latency[((latency.len() as f64 - 1.0) * p).round() as usize];
    let first_commit = receipts.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let last_receipt = receipts.iter().map(|r| r.1).fold(0.0, f64::max);
    let rate = per_reader as f64 / ((last_receipt - first_commit) / 1000.0);
    println!(
        "{side}: {} receipts; {rate:.0} events/s (first commit to last receipt); \
         commit to receipt p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        receipts.len(),
        pct(0.5),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, key, business, readers, events, kind] = &args[..] else {
        eprintln!("usage: event_fanout <base> <key> <business id> <readers> <events> <event type>");
        std::process::exit(2);
    };
    let (readers, events): (usize, usize) = (readers.parse().unwrap(), events.parse().unwrap());
    let http = reqwest::Client::new();

    let hooks: Receipts = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    tokio::spawn(
        poem::Server::new(poem::listener::TcpListener::bind(addr.to_string()))
            .run(receive.data(hooks.clone())),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let created = http
        .post(format!("{base}/businesses/{business}/webhooks"))
        .header("X-API-KEY", key)
        .json(&serde_json::json!({"url": format!("http://{addr}/hook"), "event_types": [kind]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    let streams: Receipts = Default::default();
    for _ in 0..readers {
        let resp = http
            .get(format!(
                "{base}/businesses/{business}/events/stream?types={kind}"
            ))
            .header("X-API-KEY", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        tokio::spawn(read_stream(resp, streams.clone()));
    }
    println!("ready");

    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let (h, s) = (hooks.lock().unwrap().len(), streams.lock().unwrap().len());
        if (h >= events && s >= events * readers) || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report("webhook (1 endpoint)", &hooks.lock().unwrap(), events);
    report(
        &format!("streams ({readers} readers)"),
        &streams.lock().unwrap(),
        events,
    );
}
