//! Word search over message subjects and bodies, through the full-text index of each backend
//! (Postgres: the generated `search` tsvector with its GIN index; SQLite: the `messages_fts`
//! FTS5 index). Every word must match, case-insensitive; newest first.
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};

use crate::query::{Page, Paging};
use crate::types::Channel;
use crate::{Result, message};

/// The most words a query may have (each must match).
pub const MAX_WORDS: usize = 10;
/// Matches are counted up to this many: an exact count of a common word's 50,000 matches
/// would read every one of them, for a number no one pages through.
pub const COUNT_CAP: u64 = 1000;

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
/// first, and how many there are, counted up to `COUNT_CAP`. `words` must not be empty.
pub async fn search_messages(
    db: &sea_orm::DatabaseConnection,
    scope: &SearchScope,
    words: &[String],
    paging: Paging,
) -> Result<Page<message::Model>> {
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
    let counted = q
        .clone()
        .select_only()
        .column(message::Column::Id)
        .limit(COUNT_CAP)
        .into_query();
    let count = sea_orm::sea_query::Query::select()
        .expr_as(Expr::cust("COUNT(*)"), sea_orm::sea_query::Alias::new("n"))
        .from_subquery(counted, sea_orm::sea_query::Alias::new("matches"))
        .to_owned();
    // Postgres would count a common word's first 1,000 matches by a sequential scan that
    // stops early: cheap for one business, not when the table holds many. The count goes
    // through the full-text index.
    let txn = sea_orm::TransactionTrait::begin(db).await?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await?;
    }
    let total = txn
        .query_one(&count)
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0) as u64;
    txn.commit().await?;
    let rows = q
        .order_by_desc(message::Column::CreatedAt)
        .order_by_desc(message::Column::Id)
        .offset(paging.offset())
        .limit(paging.page_size)
        .all(db)
        .await?;
    Ok(Page { items: rows, total })
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
