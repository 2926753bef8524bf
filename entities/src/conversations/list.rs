//! The conversation list the inbox pages through, with its filters, and the true counts of
//! each filter.
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use crate::query::{Page, Paging, contains, like};
use crate::{Result, client, conversation, message};

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

/// What the list shows of a conversation's last message: not its attachments or metadata,
/// which an email may make megabytes long.
#[derive(Clone, Debug, FromQueryResult)]
pub struct LastMessage {
    pub id: i64,
    pub channel: String,
    pub direction: String,
    pub status: String,
    pub body: String,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A conversation of the list, with its client and last message.
pub type ConversationRow = (
    conversation::Model,
    Option<client::Model>,
    Option<LastMessage>,
);

/// A page of conversations, newest activity first (ties by id, so paging is stable), with
/// their clients and last messages.
pub async fn conversation_page(
    db: &impl ConnectionTrait,
    business_id: i64,
    f: &ConversationFilter,
    paging: Paging,
) -> Result<Page<ConversationRow>> {
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
    let Page { items: rows, total } = paging
        .fetch(
            db,
            q.order_by_desc(conversation::Column::LastActivityAt)
                .order_by_desc(conversation::Column::Id),
        )
        .await?;
    let client_ids: Vec<i64> = rows.iter().map(|c| c.client_id).collect();
    let clients = client::Entity::find()
        .filter(client::Column::BusinessId.eq(business_id))
        .filter(client::Column::Id.is_in(client_ids))
        .all(db)
        .await?;
    let message_ids: Vec<i64> = rows.iter().filter_map(|c| c.last_message_id).collect();
    let messages = message::Entity::find()
        .select_only()
        .columns([
            message::Column::Id,
            message::Column::Channel,
            message::Column::Direction,
            message::Column::Status,
            message::Column::Body,
            message::Column::SentAt,
            message::Column::CreatedAt,
        ])
        .filter(message::Column::Id.is_in(message_ids))
        .into_model::<LastMessage>()
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
    Ok(Page { items, total })
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
