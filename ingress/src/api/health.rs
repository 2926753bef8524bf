//! `GET /health` and `GET /health/db`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::ApiTags;
use crate::state::AppState;

/// A dependency check gives up after this long (and reports the dependency down): well
/// inside the request deadline, so a hung dependency is reported, not timed out.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ServiceStatus {
    Ok,
    Down,
}

#[derive(Debug, Object)]
pub struct HealthService {
    /// `database` or `queue`.
    pub name: String,
    pub status: ServiceStatus,
    pub latency_ms: f64,
    /// Why the service is down (omitted when it is up).
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
}

#[derive(Debug, Object)]
pub struct Health {
    pub status: HealthStatus,
    pub version: String,
    pub services: Vec<HealthService>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// A dependency is down.
    #[oai(status = 503)]
    Degraded(Json<Health>),
}

#[derive(ApiResponse)]
pub enum DbHealthResponse {
    #[oai(status = 200)]
    Ok(Json<HealthService>),
    #[oai(status = 503)]
    Down(Json<HealthService>),
}

async fn check<E: std::fmt::Display>(
    name: &str,
    probe: impl std::future::Future<Output = Result<(), E>>,
) -> HealthService {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let (status, detail) = match outcome {
        Ok(Ok(())) => (ServiceStatus::Ok, None),
        Ok(Err(e)) => {
            tracing::warn!(service = name, error = %e, "health check failed");
            (ServiceStatus::Down, Some("unreachable".to_owned()))
        }
        Err(_) => (
            ServiceStatus::Down,
            Some(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
        ),
    };
    HealthService {
        name: name.to_owned(),
        status,
        latency_ms,
        detail,
    }
}

pub struct HealthApi {
    pub state: Arc<AppState>,
}

#[OpenApi]
impl HealthApi {
    /// Health
    ///
    /// The service and its dependencies (database, queue). 503 when one is down.
    #[oai(path = "/health", method = "get", tag = "ApiTags::Health")]
    async fn health(&self) -> HealthResponse {
        let (db, queue) = tokio::join!(
            check("database", entities::db::ping(&self.state.db)),
            check("queue", self.state.producer.queue().ping()),
        );
        let up = db.status == ServiceStatus::Ok && queue.status == ServiceStatus::Ok;
        let health = Health {
            status: if up {
                HealthStatus::Ok
            } else {
                HealthStatus::Degraded
            },
            version: env!("CARGO_PKG_VERSION").to_owned(),
            services: vec![db, queue],
        };
        if up {
            HealthResponse::Ok(Json(health))
        } else {
            HealthResponse::Degraded(Json(health))
        }
    }

    /// Check Db Connection
    #[oai(path = "/health/db", method = "get", tag = "ApiTags::Health")]
    async fn health_db(&self) -> DbHealthResponse {
        let db = check("database", entities::db::ping(&self.state.db)).await;
        if db.status == ServiceStatus::Ok {
            DbHealthResponse::Ok(Json(db))
        } else {
            DbHealthResponse::Down(Json(db))
        }
    }
}
