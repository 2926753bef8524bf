//! A business's own provider credentials, as the onboarding request carries them and as the
//! workers use them once unsealed. `Debug` never shows a secret.
use serde::{Deserialize, Serialize};

use crate::types::Provider;

#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct TwilioCredentials {
    /// `AC…`
    pub account_sid: String,
    pub auth_token: String,
    /// `SK…`, for Voice access tokens.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub api_key_sid: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub api_key_secret: Option<String>,
    /// `AP…`, the TwiML app browser calls use.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub twiml_app_sid: Option<String>,
}

impl std::fmt::Debug for TwilioCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioCredentials")
            .field("account_sid", &self.account_sid)
            .field("api_key_sid", &self.api_key_sid)
            .field("twiml_app_sid", &self.twiml_app_sid)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct EmailCredentials {
    /// `sendgrid`, `mailgun`, `ses`, `postmark` or `smtp`.
    pub provider: Provider,
    pub from_email: String,
    /// The provider's API key (not for `smtp`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub api_key: Option<String>,
    /// For `smtp`: `smtp://user:pass@host:587`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub smtp_url: Option<String>,
    /// For `mailgun`: the sending domain (required).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub domain: Option<String>,
    /// For `mailgun`: `us` (default) or `eu`. For `ses`: the AWS region (required), e.g.
    /// `us-east-1`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub region: Option<String>,
    /// For `ses`: the secret access key (required; `api_key` is the access key id).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub secret_key: Option<String>,
}

impl std::fmt::Debug for EmailCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailCredentials")
            .field("provider", &self.provider)
            .field("from_email", &self.from_email)
            .field("domain", &self.domain)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The `providers` of an onboarding request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ProviderCredentials {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub twilio: Option<TwilioCredentials>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub email: Option<EmailCredentials>,
}

/// Which of a business's stored credentials: the key of its `provider_credentials` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    Twilio,
    Email,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Twilio => "twilio",
            CredentialKind::Email => "email",
        }
    }
}

/// Reads and opens businesses' own provider credentials, each at most once per
/// [`LOOKUP_TTL`](crate::cache::LOOKUP_TTL): the one loader the ingress and the workers use.
pub struct CredentialStore {
    sealer: crate::secrets::Sealer,
    opened: crate::cache::TtlCache<(i64, CredentialKind), Option<Vec<u8>>>,
}

impl CredentialStore {
    pub fn new(sealer: crate::secrets::Sealer) -> Self {
        CredentialStore {
            sealer,
            opened: crate::cache::TtlCache::new(crate::cache::LOOKUP_TTL, crate::cache::LOOKUP_MAX),
        }
    }

    /// The business's own Twilio account, if onboarding gave one.
    pub async fn twilio(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        business_id: i64,
    ) -> crate::Result<Option<TwilioCredentials>> {
        self.load(db, business_id, CredentialKind::Twilio).await
    }

    /// The business's own email provider, if onboarding gave one.
    pub async fn email(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        business_id: i64,
    ) -> crate::Result<Option<EmailCredentials>> {
        self.load(db, business_id, CredentialKind::Email).await
    }

    async fn load<T: serde::de::DeserializeOwned>(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        business_id: i64,
        kind: CredentialKind,
    ) -> crate::Result<Option<T>> {
        use sea_orm::EntityTrait;
        let plain = self
            .opened
            .get_or_load(&(business_id, kind), async {
                let Some(row) = crate::provider_credential::Entity::find_by_id((
                    business_id,
                    kind.as_str().to_owned(),
                ))
                .one(db)
                .await?
                else {
                    return Ok(None);
                };
                let plain = self.sealer.open(&row.sealed).map_err(|e| {
                    crate::Error::Corrupt(format!("stored {} credentials: {e}", kind.as_str()))
                })?;
                Ok::<_, crate::Error>(Some(plain))
            })
            .await?;
        plain
            .map(|p| serde_json::from_slice(&p))
            .transpose()
            .map_err(|e| {
                crate::Error::Corrupt(format!(
                    "stored {} credentials of business {business_id}: {e}",
                    kind.as_str()
                ))
            })
    }
}
