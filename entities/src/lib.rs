//! omega's data layer: sea-orm entities and the queries and commands that the ingress,
//! the workers and the CLI share. Every function takes a connection or transaction.
pub mod audit;
pub mod cache;
pub mod calls;
pub mod clients;
pub mod consent;
pub mod conversations;
pub mod credentials;
pub mod db;
pub mod directory;
mod error;
pub mod events;
pub mod help;
pub mod idempotency;
pub mod inbound;
pub mod inbox;
pub mod keys;
pub mod messages;
pub mod model;
pub mod onboard;
pub mod outbound;
pub mod privacy;
pub mod query;
pub mod quiet;
pub mod receipts;
pub mod record;
pub mod retention;
pub mod schedule;
pub mod search;
pub mod secrets;
pub mod senders;
pub mod sessions;
pub mod settings;
pub mod status;
pub mod types;

pub use error::{Error, Result};
pub use model::*;
