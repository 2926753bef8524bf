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
    pub api_key_sid: Option<String>,
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// `AP…`, the TwiML app browser calls use.
    #[serde(default)]
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
    pub api_key: Option<String>,
    /// For `smtp`: `smtp://user:pass@host:587`.
    #[serde(default)]
    pub smtp_url: Option<String>,
}

impl std::fmt::Debug for EmailCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailCredentials")
            .field("provider", &self.provider)
            .field("from_email", &self.from_email)
            .finish_non_exhaustive()
    }
}

/// The `providers` of an onboarding request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ProviderCredentials {
    #[serde(default)]
    pub twilio: Option<TwilioCredentials>,
    #[serde(default)]
    pub email: Option<EmailCredentials>,
}
