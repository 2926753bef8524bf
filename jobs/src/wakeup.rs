//! Wake-ups for event streams: "business B has new events". The event log is the truth; a
//! wake-up only tells a stream to read it now rather than at its next poll, so a lost one
//! costs latency, never an event.
//!
//! In one process (embedded) the relay and the streams share a broadcast channel. Scaled, the
//! relay (in a worker process) also publishes on a Redis channel, and each ingress process
//! forwards that channel into its own broadcast ([`Wakeup::listen_to_redis`]).
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;

use crate::QueueError;

/// Wake-ups a lagging stream may miss before it is told it lagged (and simply reads the log).
const CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct Wakeup {
    local: broadcast::Sender<i64>,
    redis: Option<(ConnectionManager, String)>,
}

impl std::fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeup")
            .field("redis", &self.redis.as_ref().map(|(_, channel)| channel))
            .finish()
    }
}

impl Default for Wakeup {
    fn default() -> Self {
        Wakeup::local()
    }
}

/// The Redis channel of a deployment (its key prefix).
fn channel(prefix: &str) -> String {
    format!("{prefix}:events:wakeup")
}

impl Wakeup {
    /// Within this process only.
    pub fn local() -> Self {
        Wakeup {
            local: broadcast::channel(CAPACITY).0,
            redis: None,
        }
    }

    /// Within this process and, through Redis, every process of the deployment.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let conn = crate::redis_client(url)?.get_connection_manager().await?;
        Ok(Wakeup {
            local: broadcast::channel(CAPACITY).0,
            redis: Some((conn, channel(prefix))),
        })
    }

    /// Wakes the streams of these businesses, here and (scaled) in every ingress process.
    pub async fn publish(&self, businesses: &[i64]) {
        for b in businesses {
            // No receiver is not an error: nobody is streaming.
            let _ = self.local.send(*b);
        }
        if let Some((conn, channel)) = &self.redis {
            let text = businesses
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let published: redis::RedisResult<i64> = conn.clone().publish(channel, text).await;
            if let Err(e) = published {
                tracing::warn!(error = %e, "could not publish an event wake-up; streams poll");
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.local.subscribe()
    }

    /// Forwards the deployment's Redis channel into this process's streams until `stop`,
    /// reconnecting after failures.
    pub async fn listen_to_redis(
        &self,
        url: &str,
        prefix: &str,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let listen = async {
            loop {
                if let Err(e) = self.forward(url, &channel(prefix)).await {
                    tracing::warn!(error = %e, "event wake-ups from Redis lost; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::select! { _ = listen => {}, _ = stop => {} }
    }

    async fn forward(&self, url: &str, channel: &str) -> Result<(), QueueError> {
        let mut pubsub = crate::redis_client(url)?.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let text: String = msg.get_payload()?;
            for b in text.split(',').filter_map(|b| b.parse::<i64>().ok()) {
                let _ = self.local.send(b);
            }
        }
        Err(QueueError::Protocol(
            "the wake-up subscription ended".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_wakeups_reach_subscribers() {
        let wakeup = Wakeup::local();
        let mut rx = wakeup.subscribe();
        wakeup.publish(&[7, 9]).await;
        assert_eq!(rx.recv().await.unwrap(), 7);
        assert_eq!(rx.recv().await.unwrap(), 9);
    }
}
