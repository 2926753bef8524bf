//! Provider choice: which provider and account one message goes through. The one
//! requested, else the business's default, else the configured default, else the real
//! provider when credentials exist, else the sandbox; a business's own account before the
//! global one.
use std::sync::Arc;

use entities::cache::{LOOKUP_MAX, LOOKUP_TTL, TtlCache};
use entities::credentials::CredentialStore;
use entities::types::{Channel, MessageStatus, Provider};
use sea_orm::DatabaseConnection;

use super::{Accepted, Clients, EmailOut, SendError, SmsOut};

/// Where and how messages are sent.
#[derive(Clone)]
pub struct ProviderSettings {
    pub clients: Clients,
    /// Status callbacks point here (`OMEGA_PUBLIC_URL`).
    pub public_url: String,
    /// The global accounts; a business's own (from onboarding) takes precedence.
    pub twilio: Option<entities::credentials::TwilioCredentials>,
    pub sendgrid_api_key: Option<String>,
    /// An SMTP relay (`OMEGA_SMTP_URL`).
    pub smtp_url: Option<String>,
    pub default_sms: Option<Provider>,
    pub default_email: Option<Provider>,
    /// Businesses' own accounts, opened and cached.
    pub credentials: Arc<CredentialStore>,
    /// What every send looks up about its business, cached.
    pub lookups: Arc<Lookups>,
    /// Issues the one-click unsubscribe links of campaign and automated email.
    pub unsubscribe: entities::unsubscribe::Tokens,
}

/// Per-business lookups of the send path, each read from the database at most once per
/// [`LOOKUP_TTL`]: default providers and location numbers (credentials are cached by the
/// [`CredentialStore`]).
pub struct Lookups {
    defaults: TtlCache<i64, (Option<String>, Option<String>)>,
    numbers: TtlCache<(i64, i64), Option<String>>,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups {
            defaults: TtlCache::new(LOOKUP_TTL, LOOKUP_MAX),
            numbers: TtlCache::new(LOOKUP_TTL, LOOKUP_MAX),
        }
    }
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("public_url", &self.public_url)
            .field("twilio", &self.twilio)
            .field(
                "sendgrid",
                &self.sendgrid_api_key.as_ref().map(|_| "<configured>"),
            )
            .finish_non_exhaustive()
    }
}

impl ProviderSettings {
    /// The business's default provider for a channel (set from its own accounts at
    /// onboarding), cached for [`LOOKUP_TTL`].
    async fn business_default(
        &self,
        db: &DatabaseConnection,
        business_id: i64,
        channel: Channel,
    ) -> Result<Option<Provider>, entities::Error> {
        use sea_orm::EntityTrait;
        let (sms, email) = self
            .lookups
            .defaults
            .get_or_load(&business_id, async {
                let b = entities::business::Entity::find_by_id(business_id)
                    .one(db)
                    .await?;
                Ok::<_, entities::Error>(
                    b.map(|b| (b.default_sms_provider, b.default_email_provider))
                        .unwrap_or_default(),
                )
            })
            .await?;
        let stored = match channel {
            Channel::Email => email,
            _ => sms,
        };
        Ok(stored.and_then(|p| p.parse().ok()))
    }

    /// A location's phone number (cached for [`LOOKUP_TTL`]).
    pub async fn location_number(
        &self,
        db: &DatabaseConnection,
        business_id: i64,
        location_id: i64,
    ) -> Result<Option<String>, entities::Error> {
        use sea_orm::EntityTrait;
        self.lookups
            .numbers
            .get_or_load(&(business_id, location_id), async {
                Ok::<_, entities::Error>(
                    entities::location::Entity::find_by_id((business_id, location_id))
                        .one(db)
                        .await?
                        .and_then(|l| l.phone_number),
                )
            })
            .await
    }

    /// The provider for a message: the one requested, else the business's default, else the
    /// configured default, else the real provider when credentials exist, else the sandbox.
    /// Err: why it cannot be used.
    pub async fn choose(
        &self,
        channel: Channel,
        requested: Option<Provider>,
        db: &DatabaseConnection,
        business_id: i64,
    ) -> Result<Result<Chosen, (Provider, String)>, entities::Error> {
        let requested = match requested {
            Some(p) => Some(p),
            None => self.business_default(db, business_id, channel).await?,
        };
        Ok(match channel {
            Channel::Email => {
                let own = self.credentials.email(db, business_id).await?;
                let own_smtp = own
                    .clone()
                    .filter(|e| e.provider == Provider::Smtp && e.smtp_url.is_some());
                let own_sendgrid = own.filter(|e| e.provider == Provider::Sendgrid);
                // A business's own provider first, then the global ones.
                let default = if own_sendgrid.is_some()
                    || (own_smtp.is_none() && self.sendgrid_api_key.is_some())
                {
                    Provider::Sendgrid
                } else if own_smtp.is_some() || self.smtp_url.is_some() {
                    Provider::Smtp
                } else {
                    Provider::Sandbox
                };
                let p = requested.or(self.default_email).unwrap_or(default);
                match p {
                    Provider::Smtp => match (own_smtp, &self.smtp_url) {
                        (Some(e), _) => Ok(Chosen::Smtp {
                            url: e.smtp_url.unwrap_or_default(),
                            from_email: Some(e.from_email),
                        }),
                        (None, Some(url)) => Ok(Chosen::Smtp {
                            url: url.clone(),
                            from_email: None,
                        }),
                        _ => Err((p, "SMTP is not configured for this business".into())),
                    },
                    Provider::Sandbox => Ok(Chosen::Sandbox),
                    Provider::Sendgrid => match (own_sendgrid, &self.sendgrid_api_key) {
                        (Some(e), _) if e.api_key.is_some() => Ok(Chosen::Sendgrid {
                            api_key: e.api_key.unwrap_or_default(),
                            from_email: Some(e.from_email),
                        }),
                        (_, Some(key)) => Ok(Chosen::Sendgrid {
                            api_key: key.clone(),
                            from_email: None,
                        }),
                        _ => Err((p, "SendGrid is not configured for this business".into())),
                    },
                    other => Err((
                        other,
                        format!("sending email through {other} is not supported by this version"),
                    )),
                }
            }
            _ => {
                let own = self.credentials.twilio(db, business_id).await?;
                let creds = own.or_else(|| self.twilio.clone());
                let p = requested
                    .or(self.default_sms)
                    .unwrap_or(if creds.is_some() {
                        Provider::Twilio
                    } else {
                        Provider::Sandbox
                    });
                match p {
                    Provider::Sandbox => Ok(Chosen::Sandbox),
                    Provider::Twilio => creds
                        .map(Chosen::Twilio)
                        .ok_or((p, "Twilio is not configured for this business".into())),
                    other => Err((
                        other,
                        format!("sending SMS through {other} is not supported"),
                    )),
                }
            }
        })
    }
}

/// A resolved provider for one message, with its credentials.
pub enum Chosen {
    Sandbox,
    Twilio(entities::credentials::TwilioCredentials),
    Sendgrid {
        api_key: String,
        from_email: Option<String>,
    },
    Smtp {
        url: String,
        from_email: Option<String>,
    },
}

/// What the sandbox reports after accepting: a status, error code and reason.
pub type FollowUp = Option<(MessageStatus, Option<String>, Option<String>)>;

impl Chosen {
    pub fn kind(&self) -> Provider {
        match self {
            Chosen::Sandbox => Provider::Sandbox,
            Chosen::Twilio(_) => Provider::Twilio,
            Chosen::Sendgrid { .. } => Provider::Sendgrid,
            Chosen::Smtp { .. } => Provider::Smtp,
        }
    }

    /// The sender address of the business's own email account, if it has one.
    pub fn sender_address(&self) -> Option<String> {
        match self {
            Chosen::Sendgrid { from_email, .. } | Chosen::Smtp { from_email, .. } => {
                from_email.clone()
            }
            _ => None,
        }
    }

    /// Sends one SMS; with the sandbox, also the report it will make.
    pub async fn send_sms(
        &self,
        clients: &Clients,
        sms: &SmsOut<'_>,
    ) -> Result<(Accepted, FollowUp), SendError> {
        match self {
            Chosen::Twilio(creds) => super::twilio_send(clients, creds, sms)
                .await
                .map(|a| (a, None)),
            Chosen::Sandbox => super::sandbox_sms(sms.to)
                .map(|a| (a, Some((MessageStatus::Delivered, None, None)))),
            Chosen::Sendgrid { .. } | Chosen::Smtp { .. } => Err(SendError::Permanent {
                code: "unsupported".into(),
                message: "an email provider does not send SMS".into(),
            }),
        }
    }

    /// Sends one email; with the sandbox, also the report it will make.
    pub async fn send_email(
        &self,
        clients: &Clients,
        email: &EmailOut<'_>,
    ) -> Result<(Accepted, FollowUp), SendError> {
        match self {
            Chosen::Sendgrid { api_key, .. } => super::sendgrid_send(clients, api_key, email)
                .await
                .map(|a| (a, None)),
            Chosen::Smtp { url, .. } => super::smtp_send(url, email).await.map(|a| (a, None)),
            Chosen::Sandbox => {
                let (accepted, bounces) = super::sandbox_email(email.to);
                let follow = if bounces {
                    (
                        MessageStatus::Failed,
                        Some("bounce".to_owned()),
                        Some(
                            "The recipient's server refused the message (sandbox bounce)."
                                .to_owned(),
                        ),
                    )
                } else {
                    (MessageStatus::Delivered, None, None)
                };
                Ok((accepted, Some(follow)))
            }
            Chosen::Twilio(_) => Err(SendError::Permanent {
                code: "unsupported".into(),
                message: "Twilio Messages does not send email".into(),
            }),
        }
    }
}
