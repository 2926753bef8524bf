//! The business directory for the inbox: locations, staff and clients (API keys of the
//! business, or its staff sessions).
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entities::directory;
use entities::types::{ClientConversationStatus, ClientType};
use entities::{client, conversation, location, staff};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::paging::{PageInfo, PageNumber, PageSize, page_info, paging};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Object)]
pub struct LocationResponse {
    pub id: i64,
    pub name: String,
    #[oai(nullable)]
    pub phone_number: Option<String>,
    #[oai(nullable)]
    pub email: Option<String>,
    #[oai(nullable)]
    pub timezone: Option<String>,
}

impl From<location::Model> for LocationResponse {
    fn from(l: location::Model) -> Self {
        LocationResponse {
            id: l.id,
            name: l.name,
            phone_number: l.phone_number,
            email: l.email,
            timezone: l.timezone,
        }
    }
}

#[derive(Debug, Object)]
pub struct StaffResponse {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    #[oai(nullable)]
    pub email: Option<String>,
    #[oai(nullable)]
    pub phone: Option<String>,
}

impl From<staff::Model> for StaffResponse {
    fn from(s: staff::Model) -> Self {
        StaffResponse {
            id: s.id,
            first_name: s.first_name,
            last_name: s.last_name,
            email: s.email,
            phone: s.phone,
        }
    }
}

#[derive(Debug, Object)]
pub struct PaginatedStaffResponse {
    pub items: Vec<StaffResponse>,
    #[oai(flatten)]
    pub page: PageInfo,
}

#[derive(Debug, Object)]
pub struct StaffDetailsResponse {
    #[oai(flatten)]
    pub profile: StaffResponse,
    pub location_ids: Vec<i64>,
    /// Open conversations assigned to this staff member.
    pub assigned_open_conversations: u64,
}

/// A client's consent on one channel.
#[derive(Debug, Object)]
pub struct ChannelConsent {
    pub opted_in: bool,
    #[oai(nullable)]
    pub opted_out_at: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub opt_out_reason: Option<String>,
}

#[derive(Debug, Object)]
pub struct ClientConsent {
    pub sms: ChannelConsent,
    pub email: ChannelConsent,
}

#[derive(Debug, Object)]
pub struct BusinessClientDetails {
    pub id: i64,
    #[oai(nullable)]
    pub first_name: Option<String>,
    #[oai(nullable)]
    pub last_name: Option<String>,
    #[oai(nullable)]
    pub email: Option<String>,
    #[oai(nullable)]
    pub phone: Option<String>,
    pub client_type: ClientType,
    #[oai(nullable)]
    pub location_id: Option<i64>,
    pub consent: ClientConsent,
}

impl TryFrom<client::Model> for BusinessClientDetails {
    type Error = entities::Error;

    fn try_from(c: client::Model) -> Result<Self, Self::Error> {
        Ok(BusinessClientDetails {
            id: c.id,
            client_type: c.client_type.parse()?,
            consent: ClientConsent {
                sms: ChannelConsent {
                    opted_in: c.sms_opt_in,
                    opted_out_at: c.sms_opted_out_at,
                    opt_out_reason: c.sms_opt_out_reason,
                },
                email: ChannelConsent {
                    opted_in: c.email_opt_in,
                    opted_out_at: c.email_opted_out_at,
                    opt_out_reason: c.email_opt_out_reason,
                },
            },
            first_name: c.first_name,
            last_name: c.last_name,
            email: c.email,
            phone: c.phone,
            location_id: c.location_id,
        })
    }
}

#[derive(Debug, Object)]
pub struct PaginatedBusinessClientDetails {
    pub items: Vec<BusinessClientDetails>,
    #[oai(flatten)]
    pub page: PageInfo,
}

#[derive(Debug, Object)]
pub struct ClientConversationSummary {
    pub id: i64,
    #[oai(nullable)]
    pub location_id: Option<i64>,
    pub status: ClientConversationStatus,
    #[oai(nullable)]
    pub assigned_staff_id: Option<i64>,
    pub unread_count: i32,
    pub last_activity_at: DateTime<Utc>,
}

impl TryFrom<conversation::Model> for ClientConversationSummary {
    type Error = entities::Error;

    fn try_from(c: conversation::Model) -> Result<Self, Self::Error> {
        Ok(ClientConversationSummary {
            id: c.id,
            location_id: (c.location_key != 0).then_some(c.location_key),
            status: c.status.parse()?,
            assigned_staff_id: c.assigned_staff_id,
            unread_count: c.unread_count,
            last_activity_at: c.last_activity_at,
        })
    }
}

#[derive(Debug, Object)]
pub struct ChannelMessageCount {
    pub channel: String,
    pub count: i64,
}

#[derive(Debug, Object)]
pub struct ClientDetailsResponse {
    #[oai(flatten)]
    pub profile: BusinessClientDetails,
    pub conversations: Vec<ClientConversationSummary>,
    pub message_counts: Vec<ChannelMessageCount>,
    #[oai(nullable)]
    pub last_contact_at: Option<DateTime<Utc>>,
    /// Consent kept for the client's phone number and email address themselves: an opt-out
    /// there holds for every client with that address, and is checked before every send.
    pub address_consent: Vec<AddressConsent>,
}

/// An address's consent on a channel (`sms`, which voice follows, or `email`).
#[derive(Debug, Object)]
pub struct AddressConsent {
    pub channel: String,
    pub address: String,
    pub opted_in: bool,
    /// When the current state began.
    pub changed_at: DateTime<Utc>,
    #[oai(nullable)]
    pub reason: Option<String>,
}

impl From<entities::address_consent::Model> for AddressConsent {
    fn from(a: entities::address_consent::Model) -> Self {
        AddressConsent {
            channel: a.channel,
            address: a.address,
            opted_in: !a.opted_out,
            changed_at: a.changed_at,
            reason: a.reason,
        }
    }
}

pub struct DirectoryApi {
    pub state: Arc<AppState>,
}

impl DirectoryApi {
    /// The caller may read the business, and it exists.
    async fn can_read(&self, auth: &Auth, business_id: i64) -> Result<(), ApiError> {
        auth.principal().can_read(business_id)?;
        self.state.require_business_exists(business_id).await
    }
}

#[OpenApi]
impl DirectoryApi {
    /// The business's locations
    #[oai(
        path = "/businesses/:business_id/locations",
        method = "get",
        tag = "ApiTags::Businesses"
    )]
    async fn locations(
        &self,
        auth: Auth,
        business_id: Path<i64>,
    ) -> Result<Json<Vec<LocationResponse>>, ApiError> {
        self.can_read(&auth, business_id.0).await?;
        let rows = directory::locations(&self.state.db, business_id.0).await?;
        Ok(Json(rows.into_iter().map(LocationResponse::from).collect()))
    }

    /// Staff of the business
    ///
    /// Paginated by id; `q` matches names and email, `location_id` their locations.
    #[oai(
        path = "/businesses/:business_id/staffs",
        method = "get",
        tag = "ApiTags::BusinessStaffs"
    )]
    async fn staffs(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        q: Query<Option<String>>,
        location_id: Query<Option<i64>>,
        page: Query<PageNumber>,
        page_size: Query<PageSize>,
    ) -> Result<Json<PaginatedStaffResponse>, ApiError> {
        self.can_read(&auth, business_id.0).await?;
        let paging = paging(page.0, page_size.0);
        let q = q.0.filter(|q| !q.trim().is_empty());
        let found = directory::staff_page(
            &self.state.db,
            business_id.0,
            q.as_deref().map(str::trim),
            location_id.0,
            paging,
        )
        .await?;
        Ok(Json(PaginatedStaffResponse {
            items: found.items.into_iter().map(StaffResponse::from).collect(),
            page: page_info(paging, found.total),
        }))
    }

    /// One staff member
    #[oai(
        path = "/businesses/:business_id/staffs/:staff_id",
        method = "get",
        tag = "ApiTags::BusinessStaffs"
    )]
    async fn staff(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        staff_id: Path<i64>,
    ) -> Result<Json<StaffDetailsResponse>, ApiError> {
        self.can_read(&auth, business_id.0).await?;
        let (member, location_ids, open) =
            directory::staff_details(&self.state.db, business_id.0, staff_id.0)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(format!("Staff member {} not found", staff_id.0))
                })?;
        Ok(Json(StaffDetailsResponse {
            profile: member.into(),
            location_ids,
            assigned_open_conversations: open,
        }))
    }

    /// Clients of the business
    ///
    /// Paginated by id; `q` matches names, phone and email.
    #[oai(
        path = "/businesses/:business_id/clients",
        method = "get",
        tag = "ApiTags::BusinessClients"
    )]
    #[allow(clippy::too_many_arguments)] // poem-openapi takes one argument per query parameter
    async fn clients(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        q: Query<Option<String>>,
        location_id: Query<Option<i64>>,
        client_type: Query<Option<ClientType>>,
        page: Query<PageNumber>,
        page_size: Query<PageSize>,
    ) -> Result<Json<PaginatedBusinessClientDetails>, ApiError> {
        self.can_read(&auth, business_id.0).await?;
        let paging = paging(page.0, page_size.0);
        let q = q.0.filter(|q| !q.trim().is_empty());
        let found = directory::client_page(
            &self.state.db,
            business_id.0,
            q.as_deref().map(str::trim),
            location_id.0,
            client_type.0,
            paging,
        )
        .await?;
        let items = found
            .items
            .into_iter()
            .map(BusinessClientDetails::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(PaginatedBusinessClientDetails {
            items,
            page: page_info(paging, found.total),
        }))
    }

    /// One client
    ///
    /// Profile, consent (per channel, with when and why they opted out), conversations with
    /// status and unread counts, message counts per channel, last contact.
    #[oai(
        path = "/businesses/:business_id/clients/:client_id",
        method = "get",
        tag = "ApiTags::BusinessClients"
    )]
    async fn client(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        client_id: Path<i64>,
    ) -> Result<Json<ClientDetailsResponse>, ApiError> {
        self.can_read(&auth, business_id.0).await?;
        let d = directory::client_details(&self.state.db, business_id.0, client_id.0)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Client {} not found", client_id.0)))?;
        Ok(Json(ClientDetailsResponse {
            profile: d.client.try_into()?,
            conversations: d
                .conversations
                .into_iter()
                .map(ClientConversationSummary::try_from)
                .collect::<Result<_, _>>()?,
            message_counts: d
                .counts
                .into_iter()
                .map(|c| ChannelMessageCount {
                    channel: c.channel,
                    count: c.n,
                })
                .collect(),
            last_contact_at: d.last_contact,
            address_consent: d
                .address_consents
                .into_iter()
                .map(AddressConsent::from)
                .collect(),
        }))
    }
}
