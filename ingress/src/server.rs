//! The HTTP server around the app, with the limits poem's own server does not set: a cap
//! on open connections, and a deadline for a request's headers (which is also how long an
//! idle keep-alive connection is kept). Bodies and answers have their deadlines in
//! [`crate::guard`].
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use poem::http::uri::Scheme;
use poem::{Endpoint, EndpointExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The connection limits of one ingress process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest a keep-alive connection idles.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(15),
        }
    }
}

/// Serves `app` until `shutdown` completes, then lets requests under way finish for up to
/// `grace`.
pub async fn serve<E>(
    listener: TcpListener,
    app: E,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    E: Endpoint + 'static,
{
    let app = Arc::new(app.map_to_response());
    let local = poem::Addr::SocketAddr(listener.local_addr()?);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, local) = (app.clone(), local.clone());
        let remote = poem::Addr::SocketAddr(remote);
        let service = hyper::service::service_fn(move |req: poem::http::Request<Incoming>| {
            let (app, local, remote) = (app.clone(), local.clone(), remote.clone());
            async move {
                let req = poem::Request::from((
                    req,
                    poem::web::LocalAddr(local),
                    poem::web::RemoteAddr(remote),
                    Scheme::HTTP,
                ));
                let resp: poem::http::Response<_> = app.get_response(req).await.into();
                Ok::<_, Infallible>(resp)
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("requests still under way after the shutdown grace period");
        }
    }
    Ok(())
}
