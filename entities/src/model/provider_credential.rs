//! A business's own provider credentials, sealed with the service's secret key. The plain
//! text is never stored, returned by the API, or logged.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "provider_credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub business_id: i64,
    /// `twilio` or `email`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// base64(nonce ‖ ciphertext) of the credentials' JSON (XChaCha20-Poly1305).
    #[sea_orm(column_type = "Text")]
    pub sealed: String,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCredential")
            .field("business_id", &self.business_id)
            .field("kind", &self.kind)
            .field("sealed", &"<sealed>")
            .finish()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
