//! Authentication: `X-API-KEY` (platform or business keys) and the `omega_session` cookie
//! (staff sessions). Credentials are cached for one second: the hot path reads no database,
//! and a revoked key or session stops working within a second on every ingress process.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use entities::keys::{self, KeyKind};
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::ApiKey;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, AuthUnavailable, Forbidden};
use crate::guard::{Via, admitted};
use entities::cache::TtlCache;

/// A credential lookup that failed: logged, and answered 503 (not 401: the credential may
/// be good).
fn unavailable(e: impl std::fmt::Display) -> AuthUnavailable {
    tracing::error!(error = %e, "credential lookup failed");
    AuthUnavailable
}
use crate::state::AppState;

/// How long a credential lookup is trusted; bounds how late a revocation takes effect.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// How often a key's last-used time is written.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Entries kept before the cache is cleared (bounds memory under a flood of bogus keys).
const CACHE_MAX: usize = 100_000;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Platform {
        key_id: i64,
    },
    Business {
        key_id: i64,
        business_id: i64,
    },
    Staff {
        session_id: i64,
        business_id: i64,
        staff_id: i64,
    },
}

impl Principal {
    /// The namespace of this caller's Idempotency-Keys.
    pub fn scope(&self) -> String {
        match self {
            Principal::Platform { key_id } | Principal::Business { key_id, .. } => {
                format!("key:{key_id}")
            }
            Principal::Staff { session_id, .. } => format!("session:{session_id}"),
        }
    }

    /// May read the business's data: an API key for it (platform, or the business's own), or a
    /// staff session of that business.
    pub fn can_read(&self, business_id: i64) -> Result<(), ApiError> {
        match self {
            Principal::Staff {
                business_id: own, ..
            } if *own == business_id => Ok(()),
            Principal::Staff { .. } => {
                Err(ApiError::forbidden("This session is not for this business"))
            }
            key => key.can_write(business_id),
        }
    }

    /// May work the business's inbox as staff do (open conversations, notes, assignment,
    /// status, read state, browser calls): whoever may read it.
    pub fn can_work_inbox(&self, business_id: i64) -> Result<(), ApiError> {
        self.can_read(business_id)
    }

    /// May queue work for the business (send, record, status reports, retries) and manage its
    /// sessions: API keys only (platform, or the business's own); staff sessions may not.
    pub fn can_write(&self, business_id: i64) -> Result<(), ApiError> {
        match self {
            Principal::Platform { .. } => Ok(()),
            Principal::Business {
                business_id: own, ..
            } if *own == business_id => Ok(()),
            Principal::Business { .. } => Err(ApiError::forbidden(
                "This API key is not allowed for this business",
            )),
            Principal::Staff { .. } => Err(ApiError::forbidden(
                "Staff sessions cannot use this endpoint; use an API key",
            )),
        }
    }

    /// May read out or erase a client's personal data (access and erasure requests): API
    /// keys only, as for queueing work; staff sessions may not.
    pub fn can_handle_client_data(&self, business_id: i64) -> Result<(), ApiError> {
        self.can_write(business_id)
    }

    /// How the audit log names this caller.
    pub fn audit_name(&self) -> String {
        match self {
            Principal::Platform { key_id } => format!("platform_key:{key_id}"),
            Principal::Business { key_id, .. } => format!("business_key:{key_id}"),
            Principal::Staff { session_id, .. } => format!("staff_session:{session_id}"),
        }
    }

    /// The staff member a command is done as. With a staff session, the session's own: a body
    /// that names another (`claimed`) is refused, so no one acts as a colleague. With an API
    /// key, the body's id stands (the platform acts for its staff).
    pub fn acting_staff(&self, claimed: Option<i64>) -> Result<Option<i64>, ApiError> {
        match (self, claimed) {
            (Principal::Staff { staff_id, .. }, Some(c)) if c != *staff_id => {
                Err(ApiError::forbidden(format!(
                    "This session acts as staff member {staff_id}, not {c}"
                )))
            }
            (Principal::Staff { staff_id, .. }, _) => Ok(Some(*staff_id)),
            (_, claimed) => Ok(claimed),
        }
    }

    /// The staff member behind a staff session (API keys have none).
    pub fn staff_id(&self) -> Option<i64> {
        match self {
            Principal::Staff { staff_id, .. } => Some(*staff_id),
            _ => None,
        }
    }

    /// May operate omega itself (onboarding, keys, queues, every business at once): the
    /// platform key only.
    pub fn can_administer(&self) -> Result<(), ApiError> {
        match self {
            Principal::Platform { .. } => Ok(()),
            _ => Err(ApiError::forbidden(
                "This endpoint needs a platform API key",
            )),
        }
    }
}

#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-API-KEY",
    key_in = "header",
    checker = "check_api_key"
)]
pub struct ApiKeyAuth(Principal);

#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "omega_session",
    key_in = "cookie",
    checker = "check_session"
)]
pub struct SessionAuth(Principal);

/// A session token as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_bearer")]
pub struct BearerAuth(Principal);

/// Any credential.
#[derive(SecurityScheme)]
pub enum Auth {
    ApiKey(ApiKeyAuth),
    Session(SessionAuth),
    Bearer(BearerAuth),
}

impl Auth {
    pub fn principal(&self) -> &Principal {
        match self {
            Auth::ApiKey(ApiKeyAuth(p))
            | Auth::Session(SessionAuth(p))
            | Auth::Bearer(BearerAuth(p)) => p,
        }
    }
}

fn state(req: &Request) -> poem::Result<&Arc<AppState>> {
    req.data::<Arc<AppState>>()
        .ok_or_else(|| poem::Error::from(AuthUnavailable))
}

// Each checker takes the principal the guard already admitted the request with (the same
// credential, looked up once), else looks the credential up itself.

async fn check_api_key(req: &Request, key: ApiKey) -> poem::Result<Principal> {
    if let Some(p) = admitted(req, Via::ApiKey) {
        return Ok(p);
    }
    state(req)?.credentials.api_key(&key.key).await
}

async fn check_session(req: &Request, token: ApiKey) -> poem::Result<Principal> {
    if let Some(p) = admitted(req, Via::Cookie) {
        return Ok(p);
    }
    state(req)?.credentials.session(&token.key).await
}

async fn check_bearer(
    req: &Request,
    bearer: poem_openapi::auth::Bearer,
) -> poem::Result<Principal> {
    if let Some(p) = admitted(req, Via::Bearer) {
        return Ok(p);
    }
    state(req)?.credentials.session(&bearer.token).await
}

/// What a key lookup needs to check a presented key.
#[derive(Clone)]
struct StoredKey {
    hash: String,
    kind: KeyKind,
    id: i64,
    revoked: bool,
}

#[derive(Clone)]
struct StoredSession {
    principal: Principal,
    expires_at: chrono::DateTime<Utc>,
}

pub struct Credentials {
    db: DatabaseConnection,
    keys: TtlCache<String, Option<StoredKey>>,
    sessions: TtlCache<String, Option<StoredSession>>,
    touched: RwLock<HashMap<i64, Instant>>,
}

impl Credentials {
    pub fn new(db: DatabaseConnection) -> Self {
        Credentials {
            db,
            keys: TtlCache::new(CACHE_TTL, CACHE_MAX),
            sessions: TtlCache::new(CACHE_TTL, CACHE_MAX),
            touched: Default::default(),
        }
    }

    pub async fn api_key(&self, presented: &str) -> poem::Result<Principal> {
        let prefix = keys::prefix_of(presented).ok_or(poem_openapi::error::AuthorizationError)?;
        let stored = self
            .keys
            .get_or_load(prefix, async {
                let Some(row) = keys::find_by_prefix(&self.db, prefix).await? else {
                    return Ok(None);
                };
                let kind = KeyKind::of(&row)?;
                Ok::<_, entities::Error>(Some(StoredKey {
                    hash: row.key_hash,
                    kind,
                    id: row.id,
                    revoked: row.revoked_at.is_some(),
                }))
            })
            .await
            .map_err(unavailable)?;
        let Some(key) = stored else {
            return Err(poem_openapi::error::AuthorizationError.into());
        };
        let presented_hash = keys::hash_secret(presented);
        if key.revoked || !bool::from(presented_hash.as_bytes().ct_eq(key.hash.as_bytes())) {
            return Err(poem_openapi::error::AuthorizationError.into());
        }
        self.touch(key.id);
        Ok(match key.kind {
            KeyKind::Platform => Principal::Platform { key_id: key.id },
            KeyKind::Business(business_id) => Principal::Business {
                key_id: key.id,
                business_id,
            },
        })
    }

    /// Records a key's use at most once a minute, off the request path.
    fn touch(&self, key_id: i64) {
        let due = self
            .touched
            .read()
            .expect("touch map poisoned")
            .get(&key_id)
            .is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
        if !due {
            return;
        }
        self.touched
            .write()
            .expect("touch map poisoned")
            .insert(key_id, Instant::now());
        let db = self.db.clone();
        tokio::spawn(async move {
            if let Err(e) = keys::touch(&db, key_id).await {
                tracing::warn!(error = %e, key_id, "could not record an API key's use");
            }
        });
    }

    pub async fn session(&self, token: &str) -> poem::Result<Principal> {
        use entities::session;
        let hash = keys::hash_secret(token);
        let stored = self
            .sessions
            .get_or_load(&hash, async {
                let row = session::Entity::find()
                    .filter(session::Column::TokenHash.eq(hash.as_str()))
                    .one(&self.db)
                    .await?;
                Ok::<_, sea_orm::DbErr>(row.filter(|r| r.revoked_at.is_none()).map(|r| {
                    StoredSession {
                        principal: Principal::Staff {
                            session_id: r.id,
                            business_id: r.business_id,
                            staff_id: r.staff_id,
                        },
                        expires_at: r.expires_at,
                    }
                }))
            })
            .await
            .map_err(unavailable)?;
        match stored {
            Some(s) if s.expires_at > Utc::now() => Ok(s.principal),
            _ => Err(poem_openapi::error::AuthorizationError.into()),
        }
    }
}

impl From<Forbidden> for ApiError {
    fn from(f: Forbidden) -> Self {
        ApiError::forbidden(f.0)
    }
}
