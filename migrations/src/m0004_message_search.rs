//! Word search over message subjects and bodies, kept in step with every write by the
//! database itself: on Postgres a generated `tsvector` column with a GIN index (the `simple`
//! configuration: every word, lower-cased, no stemming, any language); on SQLite an FTS5
//! index over the messages table, maintained by triggers. Plus an index for a business's
//! messages newest first (business-wide search and listings).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_message_search"
    }
}

const POSTGRES: &[&str] = &[
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS search tsvector GENERATED ALWAYS AS \
     (to_tsvector('simple'::regconfig, coalesce(subject, '') || ' ' || body)) STORED",
    "CREATE INDEX IF NOT EXISTS idx_messages_search ON messages USING GIN (search)",
];

const SQLITE: &[&str] = &[
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(subject, body, \
     content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO messages_fts(rowid, subject, body) SELECT id, coalesce(subject, ''), body FROM messages",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN \
       INSERT INTO messages_fts(rowid, subject, body) VALUES (new.id, coalesce(new.subject, ''), new.body); \
     END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN \
       INSERT INTO messages_fts(messages_fts, rowid, subject, body) \
         VALUES ('delete', old.id, coalesce(old.subject, ''), old.body); \
     END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF subject, body ON messages BEGIN \
       INSERT INTO messages_fts(messages_fts, rowid, subject, body) \
         VALUES ('delete', old.id, coalesce(old.subject, ''), old.body); \
       INSERT INTO messages_fts(rowid, subject, body) VALUES (new.id, coalesce(new.subject, ''), new.body); \
     END",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DbBackend::Postgres => POSTGRES,
            DbBackend::Sqlite => SQLITE,
            other => return Err(DbErr::Migration(format!("unsupported database {other:?}"))),
        };
        let db = manager.get_connection();
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_business_created")
                    .table(Alias::new("messages"))
                    .col(Alias::new("business_id"))
                    .col(Alias::new("created_at"))
                    .col(Alias::new("id"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
