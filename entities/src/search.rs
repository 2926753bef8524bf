//! Word search over message subjects and bodies, through the full-text index of each backend
//! (Postgres: the generated `search` tsvector with its GIN index; SQLite: the `messages_fts`
//! FTS5 index). Every word must match, case-insensitive; newest first.
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

use crate::types::Channel;
use crate::{Result, message};

/// The most words a query may have (each must match).
pub const MAX_WORDS: usize = 10;

/// The words of a query as both indexes see them: runs of letters and digits, lower-cased.
pub fn words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .take(MAX_WORDS)
        .collect()
}

/// Where to search.
#[derive(Clone, Debug)]
pub struct SearchScope {
    pub business_id: i64,
    pub conversation_id: Option<i64>,
    pub channel: Option<Channel>,
}

/// A page of the business's (or one conversation's) messages containing every word, newest
/// first, and how many there are. `words` must not be empty.
pub async fn search_messages(
    db: &impl ConnectionTrait,
    scope: &SearchScope,
    words: &[String],
    page: u64,
    page_size: u64,
) -> Result<(Vec<message::Model>, u64)> {
    let matches = match db.get_database_backend() {
        DbBackend::Postgres => Expr::cust_with_values(
            "\"messages\".\"search\" @@ plainto_tsquery('simple'::regconfig, $1)",
            [words.join(" ")],
        ),
        _ => {
            // FTS5 query: each word a quoted string (quotes doubled), all required.
            let query = words
                .iter()
                .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" ");
            Expr::col((message::Entity, message::Column::Id)).in_subquery(
                sea_orm::sea_query::Query::select()
                    .expr(Expr::cust("rowid"))
                    .from(sea_orm::sea_query::Alias::new("messages_fts"))
                    .and_where(Expr::cust_with_values("messages_fts MATCH ?", [query]))
                    .to_owned(),
            )
        }
    };
    let mut q = message::Entity::find()
        .filter(message::Column::BusinessId.eq(scope.business_id))
        .filter(matches);
    if let Some(c) = scope.conversation_id {
        q = q.filter(message::Column::ConversationId.eq(c));
    }
    if let Some(ch) = scope.channel {
        q = q.filter(message::Column::Channel.eq(ch.as_str()));
    }
    let pages = q
        .order_by_desc(message::Column::CreatedAt)
        .order_by_desc(message::Column::Id)
        .paginate(db, page_size);
    let total = pages.num_items().await?;
    Ok((pages.fetch_page(page.saturating_sub(1)).await?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_letter_and_digit_runs_lower_cased() {
        assert_eq!(
            words("  Gift-Cards? 50%  off!"),
            vec!["gift", "cards", "50", "off"]
        );
        assert_eq!(words("Crème BRÛLÉE"), vec!["crème", "brûlée"]);
        assert!(words(" -- ?? ").is_empty());
        assert_eq!(words(&"a ".repeat(50)).len(), MAX_WORDS);
    }
}
