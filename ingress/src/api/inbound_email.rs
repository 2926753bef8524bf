//! `POST /email/inbound/{provider}`: a client's email, as SendGrid Inbound Parse, a Mailgun
//! route or Postmark's inbound webhook posts it. Authenticated first (SendGrid: the secret
//! `?token=` and, when configured, Basic credentials, since Parse is not signed; Mailgun: its
//! signature over timestamp + token, each token once; Postmark: Basic credentials), then
//! read, routed to its business and conversation (`entities::inbound_email::destination`)
//! and queued for a worker to record.
use std::sync::Arc;

use chrono::Utc;
use entities::inbound_email::{Destination, InboundEmail, ReceivedEmail, thread_destination};
use jobs::{Inbound, Job};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, OpenApi};
use subtle::ConstantTimeEq;

use super::ApiTags;
use super::email_hooks::{
    BodyLimit, RawBody, give_back_mailgun_token, invalid, json_body, take_mailgun_token,
};
use super::status::UpdateSuccessResponse;
use crate::RequestId;
use crate::email_events::{basic_matches, mailgun_verify};
use crate::error::ApiError;
use crate::inbound_email::{self as read, Form, Unreadable};
use crate::state::AppState;

/// A whole email with its attachments: 25 MB, the outbound limit of a message.
pub struct WholeEmail;

impl BodyLimit for WholeEmail {
    const MAX: usize = 25 << 20;
}

/// The providers whose inbound email omega reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum InboundEmailProvider {
    Sendgrid,
    Mailgun,
    Postmark,
}

pub struct InboundEmailApi {
    pub state: Arc<AppState>,
}

impl InboundEmailApi {
    /// Its business and conversation: the thread it continues, else the location it was
    /// sent to.
    async fn destination(
        &self,
        email: &ReceivedEmail,
    ) -> Result<Option<(i64, Destination)>, ApiError> {
        let state = &self.state;
        if let Some(found) = thread_destination(&state.db, &state.settings.threading, email).await?
        {
            return Ok(Some(found));
        }
        for to in &email.to {
            if let Some((business_id, location_id)) = state.location_by_address(to).await? {
                return Ok(Some((business_id, Destination::Location { location_id })));
            }
        }
        Ok(None)
    }
}

fn forbidden(provider: InboundEmailProvider, why: &str) -> ApiError {
    tracing::warn!(?provider, why, "inbound email refused");
    ApiError::forbidden("Invalid inbound email credentials or signature")
}

fn unreadable(e: Unreadable) -> ApiError {
    match e {
        Unreadable::Invalid(why) => invalid(why),
        Unreadable::TooLarge(why) => {
            ApiError::TooLarge(Json(crate::error::ErrorDetail { detail: why }))
        }
    }
}

#[OpenApi]
impl InboundEmailApi {
    /// Receive an email from a client
    ///
    /// `sendgrid`: Inbound Parse (multipart/form-data: `from`, `to`, `cc`, `subject`, `text`,
    /// `html`, `headers`, `envelope`, attachments), authenticated by `?token=` (the secret
    /// `OMEGA_INBOUND_EMAIL_TOKEN`) and, when `OMEGA_INBOUND_EMAIL_USER`/`…_PASSWORD` are set,
    /// HTTP Basic. `mailgun`: a route's forward (form fields `from`, `recipient`,
    /// `subject`, `body-plain`, `body-html`, `Message-Id`, `In-Reply-To`, `References`,
    /// `message-headers`, attachments), signed like Mailgun's events with
    /// `OMEGA_MAILGUN_SIGNING_KEY`. `postmark`: the inbound webhook JSON, with the Basic
    /// credentials of Postmark's webhooks. Not configured, or wrong: 403 and nothing
    /// recorded. Over 25 MB, or an attachment over 10 MB: 413.
    ///
    /// The email is recorded `received` on channel `email` in its conversation: the one its
    /// `reply+…@OMEGA_INBOUND_EMAIL_DOMAIN` recipient names, else the one of the email of
    /// omega's it answers (`In-Reply-To`/`References`), else the client with the sender's
    /// address at the location whose address it was sent to (an unknown sender becomes a
    /// `lead`). The same Message-ID is recorded once. `updated`: 1 when queued, 0 when no
    /// business here is its recipient.
    #[oai(
        path = "/email/inbound/:provider",
        method = "post",
        tag = "ApiTags::Email"
    )]
    async fn inbound(
        &self,
        provider: Path<InboundEmailProvider>,
        token: Query<Option<String>>,
        #[oai(name = "Authorization")] authorization: Header<Option<String>>,
        body: RawBody<WholeEmail>,
        trace: Data<&RequestId>,
    ) -> Result<Json<UpdateSuccessResponse>, ApiError> {
        let provider = provider.0;
        let hooks = &self.state.settings.email_webhooks;
        let now = Utc::now();
        let basic = authorization.0.as_deref();
        // A Mailgun token taken for this post, given back if it cannot be queued.
        let mut taken_token: Option<String> = None;
        let email = match provider {
            InboundEmailProvider::Sendgrid => {
                let Some(expected) = &hooks.inbound_token else {
                    return Err(forbidden(provider, "OMEGA_INBOUND_EMAIL_TOKEN is not set"));
                };
                let given = token.0.unwrap_or_default();
                if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                    return Err(forbidden(provider, "token wrong or missing"));
                }
                if let Some((user, password)) = &hooks.inbound_basic
                    && !basic_matches(basic, user, password)
                {
                    return Err(forbidden(provider, "Basic credentials wrong or missing"));
                }
                let form = Form::read(body.content_type.as_deref(), &body.bytes)
                    .await
                    .map_err(unreadable)?;
                read::sendgrid(&form, now).map_err(unreadable)?
            }
            InboundEmailProvider::Mailgun => {
                let Some(key) = &hooks.mailgun_signing_key else {
                    return Err(forbidden(provider, "no signing key configured"));
                };
                // The signature is in the form: read it, verify, then trust the rest.
                let form = Form::read(body.content_type.as_deref(), &body.bytes)
                    .await
                    .map_err(|_| forbidden(provider, "no signed form"))?;
                let (Some(ts), Some(tok), Some(sig)) = (
                    form.field("timestamp"),
                    form.field("token"),
                    form.field("signature"),
                ) else {
                    return Err(forbidden(provider, "signature missing"));
                };
                if !mailgun_verify(key, ts, tok, sig, now) {
                    return Err(forbidden(provider, "signature wrong or stale"));
                }
                let email = read::mailgun(&form, now).map_err(unreadable)?;
                // A token is used once: a replay within the time window is refused.
                let Some(token) = take_mailgun_token(&self.state, "inbound-token", tok).await?
                else {
                    return Err(forbidden(provider, "token seen before"));
                };
                taken_token = Some(token);
                email
            }
            InboundEmailProvider::Postmark => {
                let Some((user, password)) = &hooks.postmark_basic else {
                    return Err(forbidden(provider, "no credentials configured"));
                };
                if !basic_matches(basic, user, password) {
                    return Err(forbidden(provider, "credentials wrong or missing"));
                }
                read::postmark(&json_body(&body)?, now).map_err(unreadable)?
            }
        };
        let Some((business_id, destination)) = self.destination(&email).await? else {
            tracing::warn!(
                ?provider,
                to = ?email.to,
                "inbound email for no business here; not recorded"
            );
            metrics::counter!("omega_inbound_email_unrouted_total").increment(1);
            return Ok(Json(UpdateSuccessResponse {
                success: true,
                updated: 0,
            }));
        };
        let job = Job::ProcessInbound(Inbound::Email(InboundEmail {
            business_id,
            destination,
            email,
        }));
        let request_id = uuid::Uuid::new_v4().to_string();
        let queued = self
            .state
            .producer
            .enqueue(&[job], &request_id, Some(&trace.0.0))
            .await;
        if let Err(e) = queued {
            if let Some(token) = taken_token {
                give_back_mailgun_token(&self.state, &token).await;
            }
            return Err(e.into());
        }
        Ok(Json(UpdateSuccessResponse {
            success: true,
            updated: 1,
        }))
    }
}
