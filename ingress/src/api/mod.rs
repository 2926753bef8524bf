//! The HTTP operations, one module per area of API.md. Handlers extract, authorise and call
//! a function; the work lives in `entities` and the queue.
pub mod admin;
pub mod business;
pub mod conversations;
pub mod directory;
pub mod email_hooks;
mod enqueue;
pub mod events;
pub mod health;
mod idempotency;
pub mod inbound_email;
pub mod inbox;
pub mod keys;
mod message_fields;
pub mod messages;
mod paging;
pub mod privacy;
pub mod process;
pub mod records;
pub mod retry;
pub mod schedule;
pub mod schemas;
pub mod search;
pub mod send;
pub mod session;
pub mod settings;
pub mod status;
pub mod twilio_hooks;
pub mod unsubscribe;
pub mod voice;
pub mod webhooks;

use std::sync::Arc;

use poem_openapi::{OpenApiService, Tags};

use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// Liveness and dependencies.
    Health,
    /// Queue SMS for sending or recording.
    Sms,
    /// Queue email for sending or recording.
    Email,
    /// Messages by request, retries and search.
    Messages,
    /// Onboarding businesses.
    Business,
    /// Queues and dead jobs, for operators (platform key).
    Operators,
    /// Staff sessions.
    Session,
    /// The inbox: locations and conversations.
    #[oai(rename = "businesses")]
    Businesses,
    /// A business's clients.
    #[oai(rename = "business-clients")]
    BusinessClients,
    /// A business's staff.
    #[oai(rename = "business-staffs")]
    BusinessStaffs,
    /// Browser calling (Twilio Voice).
    VoiceCalls,
    /// Twilio's webhooks (signed with `X-Twilio-Signature`).
    #[oai(rename = "twilio")]
    Twilio,
}

pub type Apis = (
    health::HealthApi,
    records::RecordApi,
    messages::MessagesApi,
    business::BusinessApi,
    admin::AdminApi,
    session::SessionApi,
    keys::KeysApi,
    voice::VoiceApi,
    voice::TwimlApi,
    status::StatusApi,
    send::SendApi,
    // poem-openapi implements OpenApi for tuples of up to 16: the rest are nested.
    (
        retry::RetryApi,
        directory::DirectoryApi,
        conversations::ConversationsApi,
        inbox::InboxApi,
        twilio_hooks::TwilioHooksApi,
        email_hooks::EmailHooksApi,
        inbound_email::InboundEmailApi,
        process::ProcessApi,
        search::SearchApi,
        privacy::PrivacyApi,
        schedule::ScheduleApi,
        settings::SettingsApi,
        unsubscribe::UnsubscribeApi,
        events::EventsApi,
        webhooks::WebhooksApi,
    ),
);

pub fn service(state: Arc<AppState>, public_url: &str) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            health::HealthApi {
                state: state.clone(),
            },
            records::RecordApi {
                state: state.clone(),
            },
            messages::MessagesApi {
                state: state.clone(),
            },
            business::BusinessApi {
                state: state.clone(),
            },
            admin::AdminApi {
                state: state.clone(),
            },
            session::SessionApi {
                state: state.clone(),
            },
            keys::KeysApi {
                state: state.clone(),
            },
            voice::VoiceApi {
                state: state.clone(),
            },
            voice::TwimlApi {
                state: state.clone(),
            },
            status::StatusApi {
                state: state.clone(),
            },
            send::SendApi {
                state: state.clone(),
            },
            (
                retry::RetryApi {
                    state: state.clone(),
                },
                directory::DirectoryApi {
                    state: state.clone(),
                },
                conversations::ConversationsApi {
                    state: state.clone(),
                },
                inbox::InboxApi {
                    state: state.clone(),
                },
                twilio_hooks::TwilioHooksApi {
                    state: state.clone(),
                },
                email_hooks::EmailHooksApi {
                    state: state.clone(),
                },
                inbound_email::InboundEmailApi {
                    state: state.clone(),
                },
                process::ProcessApi {
                    state: state.clone(),
                },
                search::SearchApi {
                    state: state.clone(),
                },
                privacy::PrivacyApi {
                    state: state.clone(),
                },
                schedule::ScheduleApi {
                    state: state.clone(),
                },
                settings::SettingsApi {
                    state: state.clone(),
                },
                unsubscribe::UnsubscribeApi {
                    state: state.clone(),
                },
                events::EventsApi {
                    state: state.clone(),
                },
                webhooks::WebhooksApi { state },
            ),
        ),
        "omega",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Messaging backend: queue-first SMS and email, delivery status, inbound webhooks and a \
         shared inbox per business. Validation errors answer 422 (HTTPValidationError); other \
         errors `{\"detail\": …}`. Write endpoints that enqueue accept an `Idempotency-Key`.",
    )
    .server(public_url)
}
