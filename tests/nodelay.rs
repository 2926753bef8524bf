//! omega's connections to Postgres and Redis have TCP_NODELAY set. Without it, a statement or
//! pipeline larger than one TCP segment waits up to 40 ms for the server's delayed ACK before
//! its last segment leaves: sqlx 0.9.0 stopped setting it (vendor/README.md), and redis-rs
//! leaves it off unless asked.
#![cfg(target_os = "linux")]
mod common;

use std::os::fd::BorrowedFd;

use common::{Deployment, TestApp};
use redis::io::tcp::socket2::SockRef;

/// The peer port and TCP_NODELAY of every TCP socket this process holds.
fn tcp_sockets() -> Vec<(u16, bool)> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc/self/fd").expect("list fds") {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for two getsockopt calls; if it was closed
        // (and perhaps reused) since the listing, the calls fail or read another socket's
        // options, which the test tolerates.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = SockRef::from(&fd);
        let (Ok(peer), Ok(nodelay)) = (sock.peer_addr(), sock.tcp_nodelay()) else {
            continue;
        };
        if let Some(peer) = peer.as_socket() {
            found.push((peer.port(), nodelay));
        }
    }
    found
}

fn port_of(url: &str) -> u16 {
    let after_host = url.rsplit('@').next().unwrap_or(url);
    let after_scheme = after_host.rsplit("//").next().unwrap_or(after_host);
    after_scheme
        .split(['/', '?'])
        .next()
        .and_then(|host_port| host_port.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("url with an explicit port")
}

#[tokio::test]
async fn database_and_queue_connections_do_not_wait_for_delayed_acks() {
    let app = TestApp::spawn(Deployment::Scaled).await;
    // A request that reads the database and one that pushes a job: both pools are in use.
    app.onboard(1).await;
    let body = serde_json::json!({"category": "reminder", "location_id": 10, "messages": [
        {"client_id": 5, "to_number": "+14155550123", "message": "See you at 3"}
    ]});
    let sent = app
        .post("/businesses/1/sms/send", Some(common::PLATFORM_KEY), &body)
        .await;
    assert_eq!(sent.status(), 200);

    let (pg, redis) = (
        port_of(&common::pg_admin_url()),
        port_of(&common::redis_url()),
    );
    let sockets = tcp_sockets();
    for (port, name) in [(pg, "Postgres"), (redis, "Redis")] {
        let to: Vec<bool> = sockets
            .iter()
            .filter(|(p, _)| *p == port)
            .map(|(_, nodelay)| *nodelay)
            .collect();
        assert!(!to.is_empty(), "no connection to {name} found: {sockets:?}");
        assert!(
            to.iter().all(|&nodelay| nodelay),
            "a connection to {name} has TCP_NODELAY off: {to:?}"
        );
    }
}
