//! The business directory read by the inbox: locations, staff and clients, each query scoped
//! to one business.
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use crate::types::ClientType;
use crate::{Result, client, conversation, location, message, staff, staff_location};

/// One page of a list, with the total across pages.
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

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

fn like(q: &str) -> String {
    format!(
        "%{}%",
        q.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// `LOWER(column) LIKE pattern` with `\` escaping the pattern's wildcards, on every backend.
fn contains<C: sea_orm::ColumnTrait>(column: C, pattern: &str) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::{ExprTrait, Func, LikeExpr};
    Expr::expr(Func::lower(Expr::col(column))).like(LikeExpr::new(pattern).escape('\\'))
}

/// Staff, by id; `q` matches the first or last name or the email (case-insensitive), `location_id` their locations.
pub async fn staff_page(
    db: &impl ConnectionTrait,
    business_id: i64,
    q: Option<&str>,
    location_id: Option<i64>,
    page: u64,
    page_size: u64,
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
    let paginator = query
        .order_by_asc(staff::Column::Id)
        .paginate(db, page_size);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page - 1).await?;
    Ok(Page { items, total })
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
    page: u64,
    page_size: u64,
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
    let paginator = query
        .order_by_asc(client::Column::Id)
        .paginate(db, page_size);
    let total = paginator.num_items().await?;
    let items = paginator.fetch_page(page - 1).await?;
    Ok(Page { items, total })
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
    Ok(Some(ClientDetails {
        client: c,
        conversations,
        counts,
        last_contact,
    }))
}

/// Filters of the conversation list; they combine.
#[derive(Clone, Debug, Default)]
pub struct ConversationFilter {
    pub status: Option<crate::types::ClientConversationStatus>,
    /// `Some(None)`: unassigned; `Some(Some(id))`: assigned to that staff member.
    pub assigned_to: Option<Option<i64>>,
    /// Assigned to anyone.
    pub assigned_any: bool,
    pub location_id: Option<i64>,
    pub channel: Option<crate::types::Channel>,
    pub unread_only: bool,
    pub q: Option<String>,
}

/// A page of conversations, newest activity first (ties by id, so paging is stable), with
/// their clients and last messages.
pub async fn conversation_page(
    db: &impl ConnectionTrait,
    business_id: i64,
    f: &ConversationFilter,
    page: u64,
    page_size: u64,
) -> Result<(
    Vec<(
        conversation::Model,
        Option<client::Model>,
        Option<message::Model>,
    )>,
    u64,
)> {
    use sea_orm::sea_query::Query;
    let mut q =
        conversation::Entity::find().filter(conversation::Column::BusinessId.eq(business_id));
    if let Some(s) = f.status {
        q = q.filter(conversation::Column::Status.eq(s.as_str()));
    }
    match f.assigned_to {
        Some(Some(staff)) => q = q.filter(conversation::Column::AssignedStaffId.eq(staff)),
        Some(None) => q = q.filter(conversation::Column::AssignedStaffId.is_null()),
        None if f.assigned_any => q = q.filter(conversation::Column::AssignedStaffId.is_not_null()),
        None => {}
    }
    if let Some(l) = f.location_id {
        q = q.filter(conversation::Column::LocationKey.eq(l));
    }
    if f.unread_only {
        q = q.filter(conversation::Column::UnreadCount.gt(0));
    }
    if let Some(ch) = f.channel {
        q = q.filter(
            Expr::col(conversation::Column::Channels)
                .bit_and(ch.bit())
                .ne(0),
        );
    }
    if let Some(text) = f.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let pattern = like(text);
        q = q.filter(
            conversation::Column::ClientId.in_subquery(
                Query::select()
                    .column(client::Column::Id)
                    .from(client::Entity)
                    .and_where(client::Column::BusinessId.eq(business_id))
                    .cond_where(
                        Condition::any()
                            .add(contains(client::Column::FirstName, &pattern))
                            .add(contains(client::Column::LastName, &pattern))
                            .add(contains(client::Column::Email, &pattern))
                            .add(contains(client::Column::Phone, &pattern)),
                    )
                    .to_owned(),
            ),
        );
    }
    let paginator = q
        .order_by_desc(conversation::Column::LastActivityAt)
        .order_by_desc(conversation::Column::Id)
        .paginate(db, page_size);
    let total = paginator.num_items().await?;
    let rows = paginator.fetch_page(page - 1).await?;
    let client_ids: Vec<i64> = rows.iter().map(|c| c.client_id).collect();
    let clients = client::Entity::find()
        .filter(client::Column::BusinessId.eq(business_id))
        .filter(client::Column::Id.is_in(client_ids))
        .all(db)
        .await?;
    let message_ids: Vec<i64> = rows.iter().filter_map(|c| c.last_message_id).collect();
    let messages = message::Entity::find()
        .filter(message::Column::Id.is_in(message_ids))
        .all(db)
        .await?;
    let items = rows
        .into_iter()
        .map(|c| {
            let cl = clients.iter().find(|x| x.id == c.client_id).cloned();
            let m = c
                .last_message_id
                .and_then(|id| messages.iter().find(|x| x.id == id).cloned());
            (c, cl, m)
        })
        .collect();
    Ok((items, total))
}

/// True counts for the conversation filters of a business.
#[derive(Debug, Default)]
pub struct FilterCounts {
    pub total: u64,
    pub by_status: Vec<(String, u64)>,
    pub unassigned: u64,
    pub mine: Option<u64>,
    pub by_location: Vec<(i64, u64)>,
    pub by_channel: Vec<(String, u64)>,
    pub unread: u64,
}

/// How many conversations of a business are in one combination of the filters' dimensions;
/// the table is kept exact by database triggers on conversations (migration m0006).
#[derive(Debug, FromQueryResult)]
struct Cell {
    location_key: i64,
    status: String,
    unassigned: i32,
    unread: i32,
    channels: i32,
    n: i64,
}

/// The filter counts, from the business's cells (a few hundred rows at most, whatever the
/// number of conversations) and, for `mine`, an index range of the staff member's.
pub async fn filter_counts(
    db: &impl ConnectionTrait,
    business_id: i64,
    me: Option<i64>,
) -> Result<FilterCounts> {
    use crate::types::Channel;
    let backend = db.get_database_backend();
    let cells = Cell::find_by_statement(sea_orm::Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DbBackend::Postgres => {
                "SELECT location_key, status, unassigned, unread, channels, n FROM conversation_cells \
                 WHERE business_id = $1 AND n > 0"
            }
            _ => {
                "SELECT location_key, status, unassigned, unread, channels, n FROM conversation_cells \
                 WHERE business_id = ? AND n > 0"
            }
        },
        [business_id.into()],
    ))
    .all(db)
    .await?;
    let mine = match me {
        Some(s) => Some(
            conversation::Entity::find()
                .filter(conversation::Column::BusinessId.eq(business_id))
                .filter(conversation::Column::AssignedStaffId.eq(s))
                .count(db)
                .await?,
        ),
        None => None,
    };
    let channels = [Channel::Sms, Channel::Email, Channel::Voice, Channel::Note];
    let mut counts = FilterCounts {
        mine,
        ..Default::default()
    };
    let mut by_status = std::collections::BTreeMap::<String, u64>::new();
    let mut by_location = std::collections::BTreeMap::<i64, u64>::new();
    let mut by_channel = [0u64; 4];
    for c in cells {
        let n = c.n as u64;
        counts.total += n;
        if c.unassigned != 0 {
            counts.unassigned += n;
        }
        if c.unread != 0 {
            counts.unread += n;
        }
        *by_status.entry(c.status).or_default() += n;
        if c.location_key != 0 {
            *by_location.entry(c.location_key).or_default() += n;
        }
        for (i, ch) in channels.iter().enumerate() {
            if c.channels & ch.bit() != 0 {
                by_channel[i] += n;
            }
        }
    }
    counts.by_status = by_status.into_iter().collect();
    counts.by_location = by_location.into_iter().collect();
    counts.by_channel = channels
        .into_iter()
        .zip(by_channel)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (c.as_str().to_owned(), n))
        .collect();
    Ok(counts)
}
