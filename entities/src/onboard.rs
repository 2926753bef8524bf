//! Onboarding: an upsert of a business with its locations, staff and clients. Running it
//! again updates rows in place and never duplicates them.
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};

use crate::db::INSERT_CHUNK;
use crate::types::ClientType;
use crate::{
    Error, Result, business, client, location, onboarding_run as run, provider_credential, staff,
    staff_location,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Onboarding {
    pub business_id: i64,
    pub name: String,
    pub timezone: String,
    pub locations: Vec<OnboardLocation>,
    pub staff: Vec<OnboardStaff>,
    pub clients: Vec<OnboardClient>,
    /// The email domains the business owns, lower-case; `None` keeps those it had.
    #[serde(default)]
    pub email_domains: Option<Vec<String>>,
    /// Provider credentials, already sealed by the ingress (the queue never sees them plain).
    #[serde(default)]
    pub credentials: Vec<SealedCredential>,
    /// Rows the ingress refused; reported in the run's status, the rest is imported.
    #[serde(default)]
    pub row_errors: Vec<RowError>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct SealedCredential {
    /// `twilio` or `email`.
    pub kind: String,
    pub sealed: String,
    /// The provider these credentials are for (not secret): it becomes the business's
    /// default for the channel.
    #[serde(default)]
    pub provider: Option<crate::types::Provider>,
}

impl std::fmt::Debug for SealedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedCredential({}, <sealed>)", self.kind)
    }
}

/// A row of an onboarding request that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct RowError {
    /// `locations`, `staff` or `clients`.
    pub section: String,
    /// Position in the request's list.
    pub index: u32,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub id: Option<i64>,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct OnboardLocation {
    pub id: i64,
    pub name: String,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub phone_number: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub email: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub timezone: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct OnboardStaff {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub email: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub phone: Option<String>,
    #[serde(default)]
    pub location_ids: Vec<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct OnboardClient {
    pub id: i64,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub first_name: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub last_name: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub email: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub phone: Option<String>,
    #[serde(default = "default_client_type")]
    pub client_type: ClientType,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub location_id: Option<i64>,
    #[serde(default)]
    pub sms_opt_in: bool,
    #[serde(default)]
    pub email_opt_in: bool,
}

fn default_client_type() -> ClientType {
    ClientType::Client
}

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";

/// Records that an onboarding request was accepted (before its job is queued).
pub async fn start_run(
    db: &impl ConnectionTrait,
    request_id: &str,
    business_id: i64,
) -> Result<run::Model> {
    let now = Utc::now();
    Ok(run::ActiveModel {
        request_id: Set(request_id.into()),
        business_id: Set(business_id),
        status: Set(QUEUED.into()),
        locations: Set(0),
        staff: Set(0),
        clients: Set(0),
        error: Set(None),
        row_errors: Set(serde_json::json!([])),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?)
}

pub async fn set_run_status(
    db: &impl ConnectionTrait,
    request_id: &str,
    status: &str,
    error: Option<String>,
) -> Result<()> {
    run::Entity::update_many()
        .col_expr(run::Column::Status, status.into())
        .col_expr(run::Column::Error, error.into())
        .col_expr(run::Column::UpdatedAt, Utc::now().into())
        .filter(run::Column::RequestId.eq(request_id))
        .exec(db)
        .await?;
    Ok(())
}

/// The latest onboarding run of a business.
pub async fn latest_run(db: &impl ConnectionTrait, business_id: i64) -> Result<Option<run::Model>> {
    Ok(run::Entity::find()
        .filter(run::Column::BusinessId.eq(business_id))
        .order_by_desc(run::Column::CreatedAt)
        .one(db)
        .await?)
}

/// Runs the whole import in one transaction and marks the run completed with its counts.
/// A location number another business's onboarding takes in the same moment fails the
/// unique index; the import then runs again and reports the number as taken.
pub async fn apply(db: &DatabaseConnection, request_id: &str, data: &Onboarding) -> Result<()> {
    set_run_status(db, request_id, RUNNING, None).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match apply_once(db, request_id, data).await {
            Err(Error::Db(e)) if attempt < 3 && is_unique_violation(&e) => {
                tracing::info!(
                    request_id,
                    "a location number was taken meanwhile; importing again"
                );
            }
            other => return other,
        }
    }
}

fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

async fn apply_once(db: &DatabaseConnection, request_id: &str, data: &Onboarding) -> Result<()> {
    let txn = crate::db::begin_write(db).await?;
    let (locations, taken) = unclaimed_locations(&txn, data).await?;
    upsert(&txn, data, &locations).await?;
    let mut row_errors = data.row_errors.clone();
    row_errors.extend(taken);
    run::Entity::update_many()
        .col_expr(run::Column::Status, COMPLETED.into())
        .col_expr(run::Column::Locations, (locations.len() as i32).into())
        .col_expr(run::Column::Staff, (data.staff.len() as i32).into())
        .col_expr(run::Column::Clients, (data.clients.len() as i32).into())
        .col_expr(
            run::Column::RowErrors,
            serde_json::to_value(&row_errors).unwrap_or_default().into(),
        )
        .col_expr(run::Column::UpdatedAt, Utc::now().into())
        .filter(run::Column::RequestId.eq(request_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// The onboarding's locations whose phone numbers are free to take, and a row error for each
/// one whose number another location holds (another business's, or one of this business's
/// that this onboarding does not update) or an earlier row of this onboarding claimed. A
/// number belongs to one location, so inbound messages and calls reach one business.
async fn unclaimed_locations<'a>(
    db: &impl ConnectionTrait,
    data: &'a Onboarding,
) -> Result<(Vec<&'a OnboardLocation>, Vec<RowError>)> {
    use std::collections::HashSet;
    let numbers: Vec<&str> = data
        .locations
        .iter()
        .filter_map(|l| l.phone_number.as_deref())
        .collect();
    let mut held: HashSet<String> = HashSet::new();
    let ours: HashSet<i64> = data.locations.iter().map(|l| l.id).collect();
    for chunk in numbers.chunks(crate::db::IN_LIST_CHUNK) {
        let holders = location::Entity::find()
            .filter(location::Column::PhoneNumber.is_in(chunk.iter().copied()))
            .all(db)
            .await?;
        held.extend(
            holders
                .into_iter()
                .filter(|h| !(h.business_id == data.business_id && ours.contains(&h.id)))
                .filter_map(|h| h.phone_number),
        );
    }
    let (mut free, mut taken, mut claimed) = (Vec::new(), Vec::new(), HashSet::new());
    for (index, l) in data.locations.iter().enumerate() {
        match l.phone_number.as_deref() {
            Some(n) if held.contains(n) || !claimed.insert(n) => taken.push(RowError {
                section: "locations".into(),
                index: index as u32,
                id: Some(l.id),
                reason: format!("phone number {n} belongs to another location"),
            }),
            _ => free.push(l),
        }
    }
    Ok((free, taken))
}

async fn upsert(
    db: &impl ConnectionTrait,
    data: &Onboarding,
    locations: &[&OnboardLocation],
) -> Result<()> {
    let now = Utc::now();
    let b = data.business_id;
    // The providers of the business's own accounts are its defaults; onboarding again
    // without an account keeps the earlier default.
    let default_for = |kind: &str| {
        data.credentials
            .iter()
            .find(|c| c.kind == kind)
            .and_then(|c| c.provider)
            .map(|p| p.as_str().to_owned())
    };
    let (sms_default, email_default) = (default_for("twilio"), default_for("email"));
    let mut update = vec![
        business::Column::Name,
        business::Column::Timezone,
        business::Column::UpdatedAt,
    ];
    if sms_default.is_some() {
        update.push(business::Column::DefaultSmsProvider);
    }
    if email_default.is_some() {
        update.push(business::Column::DefaultEmailProvider);
    }
    if data.email_domains.is_some() {
        update.push(business::Column::EmailDomains);
    }
    business::Entity::insert(business::ActiveModel {
        id: Set(b),
        name: Set(data.name.clone()),
        timezone: Set(data.timezone.clone()),
        default_sms_provider: Set(sms_default),
        default_email_provider: Set(email_default),
        email_domains: Set(serde_json::json!(
            data.email_domains.clone().unwrap_or_default()
        )),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(business::Column::Id)
            .update_columns(update)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;

    // Numbers may move between the locations this onboarding updates: free theirs first,
    // so that the unique index never sees one number twice in between.
    for ids in locations.chunks(crate::db::IN_LIST_CHUNK) {
        location::Entity::update_many()
            .col_expr(
                location::Column::PhoneNumber,
                sea_orm::sea_query::Expr::value(Option::<String>::None),
            )
            .filter(location::Column::BusinessId.eq(b))
            .filter(location::Column::Id.is_in(ids.iter().map(|l| l.id)))
            .exec(db)
            .await?;
    }
    for chunk in locations.chunks(INSERT_CHUNK) {
        location::Entity::insert_many(chunk.iter().map(|l| location::ActiveModel {
            business_id: Set(b),
            id: Set(l.id),
            name: Set(l.name.clone()),
            phone_number: Set(l.phone_number.clone()),
            email: Set(l.email.clone()),
            timezone: Set(l.timezone.clone()),
            updated_at: Set(now),
        }))
        .on_conflict(
            OnConflict::columns([location::Column::BusinessId, location::Column::Id])
                .update_columns([
                    location::Column::Name,
                    location::Column::PhoneNumber,
                    location::Column::Email,
                    location::Column::Timezone,
                    location::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }

    for chunk in data.staff.chunks(INSERT_CHUNK) {
        staff::Entity::insert_many(chunk.iter().map(|s| staff::ActiveModel {
            business_id: Set(b),
            id: Set(s.id),
            first_name: Set(s.first_name.clone()),
            last_name: Set(s.last_name.clone()),
            email: Set(s.email.clone()),
            phone: Set(s.phone.clone()),
            updated_at: Set(now),
        }))
        .on_conflict(
            OnConflict::columns([staff::Column::BusinessId, staff::Column::Id])
                .update_columns([
                    staff::Column::FirstName,
                    staff::Column::LastName,
                    staff::Column::Email,
                    staff::Column::Phone,
                    staff::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
        // A staff member's locations are replaced by the ones this request lists.
        staff_location::Entity::delete_many()
            .filter(staff_location::Column::BusinessId.eq(b))
            .filter(staff_location::Column::StaffId.is_in(chunk.iter().map(|s| s.id)))
            .exec(db)
            .await?;
        let links: Vec<_> = chunk
            .iter()
            .flat_map(|s| {
                let mut ids = s.location_ids.clone();
                ids.sort_unstable();
                ids.dedup();
                ids.into_iter()
                    .map(move |location_id| staff_location::ActiveModel {
                        business_id: Set(b),
                        staff_id: Set(s.id),
                        location_id: Set(location_id),
                    })
            })
            .collect();
        for links in links.chunks(INSERT_CHUNK) {
            staff_location::Entity::insert_many(links.to_vec())
                .on_conflict_do_nothing()
                .exec_without_returning(db)
                .await?;
        }
    }

    for c in &data.credentials {
        provider_credential::Entity::insert(provider_credential::ActiveModel {
            business_id: Set(b),
            kind: Set(c.kind.clone()),
            sealed: Set(c.sealed.clone()),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                provider_credential::Column::BusinessId,
                provider_credential::Column::Kind,
            ])
            .update_columns([
                provider_credential::Column::Sealed,
                provider_credential::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }

    for chunk in data.clients.chunks(INSERT_CHUNK) {
        client::Entity::insert_many(chunk.iter().map(|c| client::ActiveModel {
            business_id: Set(b),
            id: Set(c.id),
            first_name: Set(c.first_name.clone()),
            last_name: Set(c.last_name.clone()),
            email: Set(c.email.clone()),
            phone: Set(c.phone.clone()),
            client_type: Set(c.client_type.as_str().into()),
            location_id: Set(c.location_id),
            sms_opt_in: Set(c.sms_opt_in),
            sms_opted_out_at: Set(None),
            sms_opt_out_reason: Set(None),
            email_opt_in: Set(c.email_opt_in),
            email_opted_out_at: Set(None),
            email_opt_out_reason: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }))
        .on_conflict(
            OnConflict::columns([client::Column::BusinessId, client::Column::Id])
                .update_columns([
                    client::Column::FirstName,
                    client::Column::LastName,
                    client::Column::Email,
                    client::Column::Phone,
                    client::Column::ClientType,
                    client::Column::LocationId,
                    client::Column::SmsOptIn,
                    client::Column::EmailOptIn,
                    client::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

pub async fn business_exists(db: &impl ConnectionTrait, business_id: i64) -> Result<bool> {
    Ok(business::Entity::find_by_id(business_id)
        .one(db)
        .await?
        .is_some())
}
