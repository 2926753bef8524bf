//! Helpers the readers share: one way to page a list, case-insensitive `contains` on text
//! columns, and the string lists kept in JSON columns.
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, SimpleExpr};
use sea_orm::{ConnectionTrait, FromQueryResult, PaginatorTrait, Select};

use crate::Result;

/// Which page of a list to read: numbered from 1, `page_size` items each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub page: u64,
    pub page_size: u64,
}

impl Paging {
    /// How many items come before this page.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.page_size)
    }

    /// How many pages `total` items fill.
    pub fn total_pages(&self, total: u64) -> u64 {
        total.div_ceil(self.page_size)
    }

    /// This page of an ordered query, with the total across pages.
    pub async fn fetch<E, M>(&self, db: &impl ConnectionTrait, query: Select<E>) -> Result<Page<M>>
    where
        E: sea_orm::EntityTrait<Model = M>,
        M: FromQueryResult + Sized + Send + Sync,
    {
        let paginator = query.paginate(db, self.page_size);
        let total = paginator.num_items().await?;
        let items = paginator.fetch_page(self.page - 1).await?;
        Ok(Page { items, total })
    }
}

/// One page of a list, with the total across pages.
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// The `LIKE` pattern that finds `q` anywhere, lower-cased, its wildcards escaped with `\`.
pub fn like(q: &str) -> String {
    format!(
        "%{}%",
        q.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// `LOWER(column) LIKE pattern` with `\` escaping the pattern's wildcards, on every backend.
pub fn contains<C: sea_orm::ColumnTrait>(column: C, pattern: &str) -> SimpleExpr {
    Expr::expr(Func::lower(Expr::col(column))).like(LikeExpr::new(pattern).escape('\\'))
}

/// The strings of a JSON array (cc, bcc lists); anything else is empty.
pub fn json_strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
