//! What every handler shares.
use std::collections::HashSet;
use std::sync::RwLock;

use jobs::Producer;
use sea_orm::DatabaseConnection;

use crate::auth::Credentials;
use crate::error::ApiError;
use entities::cache::{LOOKUP_MAX, LOOKUP_TTL, TtlCache};
use entities::credentials::{CredentialStore, TwilioCredentials};

/// Settings of the ingress that come from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The URL clients and providers use (cookies are Secure when it is https).
    pub public_url: String,
    /// Seals provider credentials with the service's secret key.
    pub sealer: entities::secrets::Sealer,
    /// Opens the one-click unsubscribe tokens that workers put in bulk email.
    pub unsubscribe: entities::unsubscribe::Tokens,
    /// The global Twilio account, if configured.
    pub twilio: Option<entities::credentials::TwilioCredentials>,
    /// How each email provider's webhooks are authenticated (unset: refused).
    pub email_webhooks: EmailWebhookSettings,
    /// How long a request may take to send its body, and to be answered.
    pub deadlines: crate::guard::Deadlines,
    /// Requests per caller and route class.
    pub rates: crate::rate_limit::RateLimits,
    /// Seals webhook endpoints' signing secrets (a key of their own).
    pub webhook_sealer: entities::secrets::Sealer,
    /// Which URLs users may give omega to call.
    pub urls: entities::urls::UrlPolicy,
    /// How often an event stream sends a comment to keep idle connections open.
    pub stream_heartbeat: std::time::Duration,
    /// Reads the reply addresses and Message-IDs of omega's email in replies.
    pub threading: entities::threading::Threading,
}

/// The email providers' webhook credentials.
#[derive(Clone, Default)]
pub struct EmailWebhookSettings {
    pub sendgrid_key: Option<p256::ecdsa::VerifyingKey>,
    pub mailgun_signing_key: Option<String>,
    /// Postmark's Basic credentials (user, password).
    pub postmark_basic: Option<(String, String)>,
    /// SNS topics whose SES events are accepted.
    pub ses_topic_arns: Vec<String>,
    /// A certificate URL prefix trusted besides SNS's own hosts (tests).
    pub sns_trusted_cert_prefix: Option<String>,
    /// The secret `?token=` of SendGrid Inbound Parse posts.
    pub inbound_token: Option<String>,
    /// Basic credentials SendGrid Inbound Parse posts must carry too, when set.
    pub inbound_basic: Option<(String, String)>,
}

impl std::fmt::Debug for EmailWebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailWebhookSettings")
            .field("sendgrid_key", &self.sendgrid_key.is_some())
            .field(
                "mailgun_signing_key",
                &self.mailgun_signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "postmark_basic",
                &self.postmark_basic.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field("ses_topic_arns", &self.ses_topic_arns)
            .field("sns_trusted_cert_prefix", &self.sns_trusted_cert_prefix)
            .field(
                "inbound_token",
                &self.inbound_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "inbound_basic",
                &self.inbound_basic.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .finish()
    }
}

pub struct AppState {
    pub db: DatabaseConnection,
    /// Where the rate limits' buckets are kept.
    pub rate_limiter: crate::rate_limit::RateLimiter,
    pub settings: Settings,
    pub producer: Producer,
    /// The live event streams' shared reads of the log.
    pub streams: crate::streams::Hub,
    pub credentials: Credentials,
    /// Verifies SNS deliveries (SES events) and caches SNS certificates.
    pub sns: crate::sns::SnsVerifier,
    /// Which location owns a phone number (webhooks name businesses by their numbers).
    numbers: TtlCache<String, Option<entities::location::Model>>,
    /// Which location an email address is (inbound email names businesses by addresses).
    addresses: TtlCache<String, Option<(i64, i64)>>,
    /// Businesses' own provider accounts, opened.
    provider_credentials: CredentialStore,
    /// Businesses known to exist. They are never deleted, so a hit needs no database read.
    known_businesses: RwLock<HashSet<i64>>,
}

impl AppState {
    pub fn new(
        db: DatabaseConnection,
        producer: Producer,
        settings: Settings,
        rate_limiter: crate::rate_limit::RateLimiter,
        wakeup: jobs::wakeup::Wakeup,
    ) -> Self {
        AppState {
            rate_limiter,
            sns: crate::sns::SnsVerifier::new(
                settings.email_webhooks.ses_topic_arns.clone(),
                settings.email_webhooks.sns_trusted_cert_prefix.clone(),
            ),
            provider_credentials: CredentialStore::new(settings.sealer.clone()),
            settings,
            numbers: TtlCache::new(LOOKUP_TTL, LOOKUP_MAX),
            addresses: TtlCache::new(LOOKUP_TTL, LOOKUP_MAX),
            credentials: Credentials::new(db.clone()),
            streams: crate::streams::Hub::new(db.clone(), wakeup),
            db,
            producer,
            known_businesses: RwLock::new(HashSet::new()),
        }
    }

    /// The location a phone number (E.164) belongs to.
    pub async fn location_by_number(
        &self,
        number: &str,
    ) -> Result<Option<entities::location::Model>, ApiError> {
        self.numbers
            .get_or_load(number, async {
                entities::calls::location_by_number(&self.db, number)
                    .await
                    .map_err(ApiError::from)
            })
            .await
    }

    /// The (business, location) whose address this is (lower-case), cached for a few seconds.
    pub async fn location_by_address(&self, address: &str) -> Result<Option<(i64, i64)>, ApiError> {
        self.addresses
            .get_or_load(address, async {
                entities::inbound_email::location_by_address(&self.db, address)
                    .await
                    .map_err(ApiError::from)
            })
            .await
    }

    /// The Twilio account for a business: its own (from onboarding), else the global one.
    pub async fn twilio_for(
        &self,
        business_id: i64,
    ) -> Result<Option<TwilioCredentials>, ApiError> {
        let own = self
            .provider_credentials
            .twilio(&self.db, business_id)
            .await?;
        Ok(own.or_else(|| self.settings.twilio.clone()))
    }

    /// Whether the business sends through a Twilio account of its own rather than the shared
    /// one (Twilio then refuses numbers that are not on that account).
    pub async fn has_own_twilio_account(&self, business_id: i64) -> Result<bool, ApiError> {
        let own = self
            .provider_credentials
            .twilio(&self.db, business_id)
            .await?;
        let shared = self
            .settings
            .twilio
            .as_ref()
            .map(|t| t.account_sid.as_str());
        Ok(own.is_some_and(|o| Some(o.account_sid.as_str()) != shared))
    }

    /// 422 at `field` unless the business may send SMS from `number`
    /// ([`entities::senders`]).
    pub async fn check_sender_number(
        &self,
        business_id: i64,
        number: &str,
        field: &str,
    ) -> Result<(), ApiError> {
        let holder = self.location_by_number(number).await?;
        let own_account = holder.is_none() && self.has_own_twilio_account(business_id).await?;
        entities::senders::number_verdict(business_id, holder.as_ref(), own_account)
            .map_err(|why| ApiError::invalid_at(&["body", field], why, "value_error.sender"))
    }

    /// 422 at `field` unless the business may send email from `address`.
    pub async fn check_sender_address(
        &self,
        business_id: i64,
        address: &str,
        field: &str,
    ) -> Result<(), ApiError> {
        let own = self
            .provider_credentials
            .email(&self.db, business_id)
            .await?;
        entities::senders::address_verdict(
            &self.db,
            business_id,
            address,
            own.as_ref().map(|e| e.from_email.as_str()),
        )
        .await?
        .map_err(|why| ApiError::invalid_at(&["body", field], why, "value_error.sender"))
    }

    /// 404 unless the business has been onboarded.
    pub async fn require_business_exists(&self, business_id: i64) -> Result<(), ApiError> {
        if self
            .known_businesses
            .read()
            .expect("business cache poisoned")
            .contains(&business_id)
        {
            return Ok(());
        }
        if entities::onboard::business_exists(&self.db, business_id).await? {
            self.known_businesses
                .write()
                .expect("business cache poisoned")
                .insert(business_id);
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "Business {business_id} not found"
            )))
        }
    }
}
