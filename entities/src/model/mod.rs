//! sea-orm entities: one module per table.
pub mod address_consent;
pub mod api_key;
pub mod audit_entry;
pub mod business;
pub mod client;
pub mod conversation;
pub mod conversation_event;
pub mod idempotency_record;
pub mod location;
pub mod message;
pub mod message_event;
pub mod onboarding_run;
pub mod provider_credential;
pub mod session;
pub mod staff;
pub mod staff_location;
pub mod webhook_receipt;
