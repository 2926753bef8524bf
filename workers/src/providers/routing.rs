//! Provider choice: which provider and account one message goes through. The one
//! requested, else the business's default, else the configured default, else the real
//! provider when credentials exist, else the sandbox; a business's own account before the
//! global one.
use std::sync::Arc;

use entities::cache::{LOOKUP_MAX, LOOKUP_TTL, TtlCache};
use entities::credentials::{CredentialStore, EmailCredentials};
use entities::types::{Channel, MessageStatus, Provider};
use sea_orm::DatabaseConnection;

use super::{
    Accepted, Clients, EmailOut, MailgunAccount, SendError, SesAccount, SmsOut, mailgun_send,
    postmark_send, sendgrid_send, ses_send, smtp_send,
};

/// Where and how messages are sent.
#[derive(Clone)]
pub struct ProviderSettings {
    pub clients: Clients,
    /// Status callbacks point here (`OMEGA_PUBLIC_URL`).
    pub public_url: String,
    /// The global accounts; a business's own (from onboarding) takes precedence.
    pub twilio: Option<entities::credentials::TwilioCredentials>,
    pub sendgrid_api_key: Option<String>,
    pub mailgun: Option<MailgunAccount>,
    pub postmark_server_token: Option<String>,
    pub ses: Option<SesAccount>,
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
    /// Message-IDs and reply addresses that lead replies back to their conversation.
    pub threading: entities::threading::Threading,
    /// `OMEGA_INBOUND_EMAIL_DOMAIN`: replies go to `reply+…@` it when set.
    pub inbound_email_domain: Option<String>,
}

/// Per-business lookups of the send path, each read from the database at most once per
/// [`LOOKUP_TTL`]: default providers and location numbers (credentials are cached by the
/// [`CredentialStore`]).
pub struct Lookups {
    defaults: TtlCache<i64, (Option<String>, Option<String>)>,
    /// A location's phone number and email address.
    locations: TtlCache<(i64, i64), (Option<String>, Option<String>)>,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups {
            defaults: TtlCache::new(LOOKUP_TTL, LOOKUP_MAX),
            locations: TtlCache::new(LOOKUP_TTL, LOOKUP_MAX),
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

    /// A location's phone number and email address (cached for [`LOOKUP_TTL`]).
    pub async fn location_contact(
        &self,
        db: &DatabaseConnection,
        business_id: i64,
        location_id: i64,
    ) -> Result<(Option<String>, Option<String>), entities::Error> {
        use sea_orm::EntityTrait;
        self.lookups
            .locations
            .get_or_load(&(business_id, location_id), async {
                Ok::<_, entities::Error>(
                    entities::location::Entity::find_by_id((business_id, location_id))
                        .one(db)
                        .await?
                        .map(|l| (l.phone_number, l.email))
                        .unwrap_or_default(),
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
                let p = requested
                    .or(self.default_email)
                    .unwrap_or_else(|| self.default_email_provider(own.as_ref()));
                self.email_account(p, own)
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

impl ProviderSettings {
    /// With no provider requested or configured as the default: the business's own account,
    /// else the first global account configured, else the sandbox.
    fn default_email_provider(&self, own: Option<&EmailCredentials>) -> Provider {
        if let Some(own) = own {
            return own.provider;
        }
        [
            (self.sendgrid_api_key.is_some(), Provider::Sendgrid),
            (self.mailgun.is_some(), Provider::Mailgun),
            (self.postmark_server_token.is_some(), Provider::Postmark),
            (self.ses.is_some(), Provider::Ses),
            (self.smtp_url.is_some(), Provider::Smtp),
        ]
        .into_iter()
        .find_map(|(configured, p)| configured.then_some(p))
        .unwrap_or(Provider::Sandbox)
    }

    /// The account email goes through with provider `p`: the business's own when it is
    /// with `p`, else the global one. Err: why `p` cannot be used.
    fn email_account(
        &self,
        p: Provider,
        own: Option<EmailCredentials>,
    ) -> Result<Chosen, (Provider, String)> {
        let not_configured = || (p, format!("{p} is not configured for this business"));
        if p == Provider::Sandbox {
            return Ok(Chosen::Sandbox);
        }
        if let Some(own) = own.filter(|o| o.provider == p) {
            let from_email = Some(own.from_email.clone());
            return EmailAccount::own(own)
                .map(|account| Chosen::Email {
                    account,
                    from_email,
                })
                .ok_or_else(not_configured);
        }
        let account = match p {
            Provider::Sendgrid => self
                .sendgrid_api_key
                .clone()
                .map(|api_key| EmailAccount::Sendgrid { api_key }),
            Provider::Mailgun => self.mailgun.clone().map(EmailAccount::Mailgun),
            Provider::Postmark => self
                .postmark_server_token
                .clone()
                .map(|server_token| EmailAccount::Postmark { server_token }),
            Provider::Ses => self.ses.clone().map(EmailAccount::Ses),
            Provider::Smtp => self.smtp_url.clone().map(|url| EmailAccount::Smtp { url }),
            other => {
                return Err((other, format!("{other} does not send email")));
            }
        };
        account
            .map(|account| Chosen::Email {
                account,
                from_email: None,
            })
            .ok_or_else(not_configured)
    }
}

/// An email provider's account, ready to send with.
pub enum EmailAccount {
    Sendgrid { api_key: String },
    Mailgun(MailgunAccount),
    Postmark { server_token: String },
    Ses(SesAccount),
    Smtp { url: String },
}

impl EmailAccount {
    /// A business's own account as onboarding stored it; None when it lacks what its
    /// provider needs (onboarding checks, so only data from before that check).
    fn own(c: EmailCredentials) -> Option<EmailAccount> {
        let key = c.api_key.filter(|k| !k.is_empty());
        Some(match c.provider {
            Provider::Sendgrid => EmailAccount::Sendgrid { api_key: key? },
            Provider::Mailgun => EmailAccount::Mailgun(MailgunAccount {
                api_key: key?,
                domain: c.domain?,
                region: c.region,
            }),
            Provider::Postmark => EmailAccount::Postmark { server_token: key? },
            Provider::Ses => EmailAccount::Ses(SesAccount {
                region: c.region?,
                access_key_id: key?,
                secret_access_key: c.secret_key?,
            }),
            Provider::Smtp => EmailAccount::Smtp { url: c.smtp_url? },
            _ => return None,
        })
    }

    fn kind(&self) -> Provider {
        match self {
            EmailAccount::Sendgrid { .. } => Provider::Sendgrid,
            EmailAccount::Mailgun(_) => Provider::Mailgun,
            EmailAccount::Postmark { .. } => Provider::Postmark,
            EmailAccount::Ses(_) => Provider::Ses,
            EmailAccount::Smtp { .. } => Provider::Smtp,
        }
    }

    async fn send(&self, clients: &Clients, email: &EmailOut<'_>) -> Result<Accepted, SendError> {
        match self {
            EmailAccount::Sendgrid { api_key } => sendgrid_send(clients, api_key, email).await,
            EmailAccount::Mailgun(account) => mailgun_send(clients, account, email).await,
            EmailAccount::Postmark { server_token } => {
                postmark_send(clients, server_token, email).await
            }
            EmailAccount::Ses(account) => ses_send(clients, account, email).await,
            EmailAccount::Smtp { url } => smtp_send(url, email).await,
        }
    }
}

/// A resolved provider for one message, with its credentials.
pub enum Chosen {
    Sandbox,
    Twilio(entities::credentials::TwilioCredentials),
    Email {
        account: EmailAccount,
        /// The sender address of the business's own account, when it is that.
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
            Chosen::Email { account, .. } => account.kind(),
        }
    }

    /// The sender address of the business's own email account, if it has one.
    pub fn sender_address(&self) -> Option<String> {
        match self {
            Chosen::Email { from_email, .. } => from_email.clone(),
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
            Chosen::Email { .. } => Err(SendError::Permanent {
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
            Chosen::Email { account, .. } => account.send(clients, email).await.map(|a| (a, None)),
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
