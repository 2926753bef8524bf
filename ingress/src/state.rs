//! What every handler shares.
use std::collections::HashSet;
use std::sync::RwLock;

use jobs::Producer;
use sea_orm::DatabaseConnection;

use crate::auth::Credentials;
use crate::error::ApiError;

/// Settings of the ingress that come from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The URL clients and providers use (cookies are Secure when it is https).
    pub public_url: String,
    /// Seals provider credentials with the service's secret key.
    pub sealer: entities::secrets::Sealer,
    /// The global Twilio account, if configured.
    pub twilio: Option<entities::credentials::TwilioCredentials>,
}

pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Settings,
    pub producer: Producer,
    pub credentials: Credentials,
    /// Businesses known to exist. They are never deleted, so a hit needs no database read.
    known_businesses: RwLock<HashSet<i64>>,
}

impl AppState {
    pub fn new(db: DatabaseConnection, producer: Producer, settings: Settings) -> Self {
        AppState {
            settings,
            credentials: Credentials::new(db.clone()),
            db,
            producer,
            known_businesses: RwLock::new(HashSet::new()),
        }
    }

    /// The Twilio account for a business: its own (from onboarding), else the global one.
    pub async fn twilio_for(
        &self,
        business_id: i64,
    ) -> Result<Option<entities::credentials::TwilioCredentials>, ApiError> {
        use sea_orm::EntityTrait;
        let own =
            entities::provider_credential::Entity::find_by_id((business_id, "twilio".to_owned()))
                .one(&self.db)
                .await
                .map_err(entities::Error::from)?;
        match own {
            Some(row) => {
                let plain = self
                    .settings
                    .sealer
                    .open(&row.sealed)
                    .map_err(|e| ApiError::internal("opening credentials", e))?;
                let creds = serde_json::from_slice(&plain)
                    .map_err(|e| ApiError::internal("reading credentials", e))?;
                Ok(Some(creds))
            }
            None => Ok(self.settings.twilio.clone()),
        }
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
