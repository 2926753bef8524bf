//! The business directory read by the inbox: locations, staff and clients, each query scoped
//! to one business.
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};

use crate::query::{Page, Paging, contains, like};
use crate::types::ClientType;
use crate::{Result, client, conversation, location, message, staff, staff_location};

/// The business's locations, by id.
pub async fn locations(
    db: &impl ConnectionTrait,
    business_id: i64,
) -> Result<Vec<location::Model>> {
    Ok(location::Entity::find()
        .filter(location::Column::BusinessId.eq(business_id))
        .order_by_asc(location::Column::Id)
        .all(db)
        .await?)
}

/// Staff, by id; `q` matches the first or last name or the email (case-insensitive), `location_id` their locations.
pub async fn staff_page(
    db: &impl ConnectionTrait,
    business_id: i64,
    q: Option<&str>,
    location_id: Option<i64>,
    paging: Paging,
) -> Result<Page<staff::Model>> {
    let mut query = staff::Entity::find().filter(staff::Column::BusinessId.eq(business_id));
    if let Some(q) = q {
        let pattern = like(q);
        query = query.filter(
            Condition::any()
                .add(contains(staff::Column::FirstName, &pattern))
                .add(contains(staff::Column::LastName, &pattern))
                .add(contains(staff::Column::Email, &pattern)),
        );
    }
    if let Some(l) = location_id {
        let ids: Vec<i64> = staff_location::Entity::find()
            .filter(staff_location::Column::BusinessId.eq(business_id))
            .filter(staff_location::Column::LocationId.eq(l))
            .all(db)
            .await?
            .into_iter()
            .map(|s| s.staff_id)
            .collect();
        query = query.filter(staff::Column::Id.is_in(ids));
    }
    paging
        .fetch(db, query.order_by_asc(staff::Column::Id))
        .await
}

/// A staff member's locations and how many open conversations are assigned to them.
pub async fn staff_details(
    db: &impl ConnectionTrait,
    business_id: i64,
    staff_id: i64,
) -> Result<Option<(staff::Model, Vec<i64>, u64)>> {
    let Some(member) = staff::Entity::find_by_id((business_id, staff_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let locations = staff_location::Entity::find()
        .filter(staff_location::Column::BusinessId.eq(business_id))
        .filter(staff_location::Column::StaffId.eq(staff_id))
        .order_by_asc(staff_location::Column::LocationId)
        .all(db)
        .await?
        .into_iter()
        .map(|l| l.location_id)
        .collect();
    let open = conversation::Entity::find()
        .filter(conversation::Column::BusinessId.eq(business_id))
        .filter(conversation::Column::AssignedStaffId.eq(staff_id))
        .filter(conversation::Column::Status.eq("open"))
        .count(db)
        .await?;
    Ok(Some((member, locations, open)))
}

/// Clients, by id; `q` matches the first or last name, phone or email (case-insensitive).
pub async fn client_page(
    db: &impl ConnectionTrait,
    business_id: i64,
    q: Option<&str>,
    location_id: Option<i64>,
    client_type: Option<ClientType>,
    paging: Paging,
) -> Result<Page<client::Model>> {
    let mut query = client::Entity::find().filter(client::Column::BusinessId.eq(business_id));
    if let Some(q) = q {
        let pattern = like(q);
        query = query.filter(
            Condition::any()
                .add(contains(client::Column::FirstName, &pattern))
                .add(contains(client::Column::LastName, &pattern))
                .add(contains(client::Column::Email, &pattern))
                .add(contains(client::Column::Phone, &pattern)),
        );
    }
    if let Some(l) = location_id {
        query = query.filter(client::Column::LocationId.eq(l));
    }
    if let Some(t) = client_type {
        query = query.filter(client::Column::ClientType.eq(t.as_str()));
    }
    paging
        .fetch(db, query.order_by_asc(client::Column::Id))
        .await
}

#[derive(Debug, FromQueryResult)]
pub struct ChannelCount {
    pub channel: String,
    pub n: i64,
}

/// A client with their conversations and message counts per channel.
pub struct ClientDetails {
    pub client: client::Model,
    pub conversations: Vec<conversation::Model>,
    pub counts: Vec<ChannelCount>,
    pub last_contact: Option<chrono::DateTime<chrono::Utc>>,
    /// The consent records of the client's phone number and email address, which hold for
    /// every client row with that address.
    pub address_consents: Vec<crate::address_consent::Model>,
}

pub async fn client_details(
    db: &impl ConnectionTrait,
    business_id: i64,
    client_id: i64,
) -> Result<Option<ClientDetails>> {
    let Some(c) = client::Entity::find_by_id((business_id, client_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let conversations = conversation::Entity::find()
        .filter(conversation::Column::BusinessId.eq(business_id))
        .filter(conversation::Column::ClientId.eq(client_id))
        .order_by_desc(conversation::Column::LastActivityAt)
        .all(db)
        .await?;
    let counts = message::Entity::find()
        .select_only()
        .column(message::Column::Channel)
        .column_as(Expr::cust("COUNT(*)"), "n")
        .filter(message::Column::BusinessId.eq(business_id))
        .filter(message::Column::ClientId.eq(client_id))
        .group_by(message::Column::Channel)
        .into_model::<ChannelCount>()
        .all(db)
        .await?;
    let last_contact = conversations.iter().map(|c| c.last_activity_at).max();
    let address_consents =
        crate::consent::of_addresses(db, business_id, c.phone.as_deref(), c.email.as_deref())
            .await?;
    Ok(Some(ClientDetails {
        address_consents,
        client: c,
        conversations,
        counts,
        last_contact,
    }))
}
