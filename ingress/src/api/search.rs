//! Message search: within one conversation, or across a business's conversations. Uses the
//! backends' full-text indexes; every word must match, case-insensitive, newest first.
use std::sync::Arc;

use entities::search::{SearchScope, search_messages, words};
use entities::types::Channel;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use super::ApiTags;
use super::conversations::PaginatedMessages;
use super::paging::{PageNumber, PageSize, Paging, page_info, paging};
use super::schemas::MessageItem;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

pub struct SearchApi {
    pub state: Arc<AppState>,
}

impl SearchApi {
    async fn search(
        &self,
        auth: &Auth,
        scope: SearchScope,
        q: &str,
        paging: Paging,
    ) -> Result<Json<PaginatedMessages>, ApiError> {
        auth.principal().can_read(scope.business_id)?;
        self.state
            .require_business_exists(scope.business_id)
            .await?;
        let words = words(q);
        if words.is_empty() {
            return Err(ApiError::invalid_at(
                &["query", "q"],
                "give at least one word (letters or digits)",
                "value_error",
            ));
        }
        let db = &self.state.db;
        if let Some(c) = scope.conversation_id {
            entities::conversations::conversation_in(db, scope.business_id, c).await?;
        }
        let found = search_messages(db, &scope, &words, paging).await?;
        let items = found
            .items
            .into_iter()
            .map(|m| MessageItem::from_model(m, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::internal("stored message unreadable", e))?;
        Ok(Json(PaginatedMessages {
            items,
            page: page_info(paging, found.total),
            conversation: None,
        }))
    }
}

#[OpenApi]
impl SearchApi {
    /// Search messages within a conversation
    ///
    /// `q`: words (letters and digits; at most 10 are used), all of which must appear in the
    /// subject or body, in any case. Newest first. Uses the full-text index (Postgres GIN,
    /// SQLite FTS5), never a scan. `total` counts matches up to 1,000 (a larger result says
    /// 1,000: refine the words rather than page that far).
    #[oai(
        path = "/businesses/:business_id/conversations/:conversation_id/messages/search",
        method = "get",
        tag = "ApiTags::Messages"
    )]
    #[allow(clippy::too_many_arguments)] // poem-openapi takes one argument per query parameter
    async fn in_conversation(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        conversation_id: Path<i64>,
        #[oai(validator(min_length = 1, max_length = 500))] q: Query<String>,
        channel: Query<Option<Channel>>,
        page: Query<PageNumber>,
        page_size: Query<PageSize>,
    ) -> Result<Json<PaginatedMessages>, ApiError> {
        let scope = SearchScope {
            business_id: business_id.0,
            conversation_id: Some(conversation_id.0),
            channel: channel.0,
        };
        self.search(&auth, scope, &q.0, paging(page.0, page_size.0))
            .await
    }

    /// Search messages across the business
    ///
    /// The same as within a conversation, over every conversation of the business.
    #[oai(
        path = "/businesses/:business_id/messages/search",
        method = "get",
        tag = "ApiTags::Messages"
    )]
    async fn in_business(
        &self,
        auth: Auth,
        business_id: Path<i64>,
        #[oai(validator(min_length = 1, max_length = 500))] q: Query<String>,
        channel: Query<Option<Channel>>,
        page: Query<PageNumber>,
        page_size: Query<PageSize>,
    ) -> Result<Json<PaginatedMessages>, ApiError> {
        let scope = SearchScope {
            business_id: business_id.0,
            conversation_id: None,
            channel: channel.0,
        };
        self.search(&auth, scope, &q.0, paging(page.0, page_size.0))
            .await
    }
}
