use thiserror::Error;

/// Errors of the data layer and the domain commands built on it.
#[derive(Debug, Error)]
pub enum Error {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl Error {
    /// Whether retrying the same work later may succeed (a database outage) or not
    /// (the input itself is wrong).
    /// A constraint violation is the data's fault and will fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Db(e) => e.sql_err().is_none(),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
