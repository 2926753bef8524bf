//! Filter counts without counting: `conversation_cells` holds how many conversations of a
//! business fall in each combination of the dimensions the filters count by (location,
//! status, unassigned, unread, channels). Triggers keep it in step with every insert, update
//! and delete of a conversation, in the same transaction, so the counts are exact and the
//! filters endpoint reads a few hundred rows instead of every conversation.
//!
//! The price: transactions that move conversations into or out of the same cell (a first
//! unread message in the same location and status, say) queue on that cell's row until
//! they commit. Most message writes move nothing (the WHEN clause skips them); at a few
//! milliseconds per commit this bounds such moves to several hundred per second per cell.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_conversation_cells"
    }
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS conversation_cells (
    business_id BIGINT NOT NULL,
    location_key BIGINT NOT NULL,
    status VARCHAR NOT NULL,
    unassigned INTEGER NOT NULL,
    unread INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (business_id, location_key, status, unassigned, unread, channels))";

const BACKFILL_PG: &str = "INSERT INTO conversation_cells
    SELECT business_id, location_key, status, (assigned_staff_id IS NULL)::int, (unread_count > 0)::int, channels, COUNT(*)
    FROM conversations GROUP BY 1, 2, 3, 4, 5, 6 ON CONFLICT DO NOTHING";

/// Postgres: one function for every change. Of the two cells a moved conversation touches,
/// the lower key is locked first, so two concurrent moves cannot deadlock.
const FUNCTION_PG: &str = r#"CREATE OR REPLACE FUNCTION omega_conversation_cells() RETURNS trigger AS $$
DECLARE
    old_first boolean := true;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (OLD.business_id, OLD.location_key, OLD.status, (OLD.assigned_staff_id IS NULL)::int, (OLD.unread_count > 0)::int, OLD.channels)
           = (NEW.business_id, NEW.location_key, NEW.status, (NEW.assigned_staff_id IS NULL)::int, (NEW.unread_count > 0)::int, NEW.channels) THEN
            RETURN NULL;
        END IF;
        old_first := (OLD.business_id, OLD.location_key, OLD.status, (OLD.assigned_staff_id IS NULL)::int, (OLD.unread_count > 0)::int, OLD.channels)
                   < (NEW.business_id, NEW.location_key, NEW.status, (NEW.assigned_staff_id IS NULL)::int, (NEW.unread_count > 0)::int, NEW.channels);
    END IF;
    IF TG_OP <> 'INSERT' AND old_first THEN
        UPDATE conversation_cells SET n = n - 1 WHERE business_id = OLD.business_id AND location_key = OLD.location_key AND status = OLD.status
            AND unassigned = (OLD.assigned_staff_id IS NULL)::int AND unread = (OLD.unread_count > 0)::int AND channels = OLD.channels;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO conversation_cells VALUES (NEW.business_id, NEW.location_key, NEW.status, (NEW.assigned_staff_id IS NULL)::int, (NEW.unread_count > 0)::int, NEW.channels, 1)
            ON CONFLICT (business_id, location_key, status, unassigned, unread, channels) DO UPDATE SET n = conversation_cells.n + 1;
    END IF;
    IF TG_OP = 'UPDATE' AND NOT old_first THEN
        UPDATE conversation_cells SET n = n - 1 WHERE business_id = OLD.business_id AND location_key = OLD.location_key AND status = OLD.status
            AND unassigned = (OLD.assigned_staff_id IS NULL)::int AND unread = (OLD.unread_count > 0)::int AND channels = OLD.channels;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql"#;

/// Updates that leave a conversation in its cell (most: a new message moving its last
/// activity) do not call the function at all.
const TRIGGERS_PG: &[&str] = &[
    "DROP TRIGGER IF EXISTS conversation_cells_add_remove ON conversations",
    "CREATE TRIGGER conversation_cells_add_remove AFTER INSERT OR DELETE ON conversations \
     FOR EACH ROW EXECUTE FUNCTION omega_conversation_cells()",
    "DROP TRIGGER IF EXISTS conversation_cells_move ON conversations",
    "CREATE TRIGGER conversation_cells_move AFTER UPDATE ON conversations FOR EACH ROW \
     WHEN ((OLD.business_id, OLD.location_key, OLD.status, OLD.assigned_staff_id IS NULL, OLD.unread_count > 0, OLD.channels) \
       IS DISTINCT FROM (NEW.business_id, NEW.location_key, NEW.status, NEW.assigned_staff_id IS NULL, NEW.unread_count > 0, NEW.channels)) \
     EXECUTE FUNCTION omega_conversation_cells()",
];

const BACKFILL_SQLITE: &str = "INSERT OR IGNORE INTO conversation_cells
    SELECT business_id, location_key, status, assigned_staff_id IS NULL, unread_count > 0, channels, COUNT(*)
    FROM conversations GROUP BY 1, 2, 3, 4, 5, 6";

/// SQLite has one writer at a time, so the order of the two cells does not matter.
const TRIGGERS_SQLITE: &[&str] = &[
    "CREATE TRIGGER IF NOT EXISTS conversation_cells_insert AFTER INSERT ON conversations BEGIN
        INSERT INTO conversation_cells VALUES (NEW.business_id, NEW.location_key, NEW.status, NEW.assigned_staff_id IS NULL, NEW.unread_count > 0, NEW.channels, 1)
            ON CONFLICT (business_id, location_key, status, unassigned, unread, channels) DO UPDATE SET n = n + 1;
     END",
    "CREATE TRIGGER IF NOT EXISTS conversation_cells_update AFTER UPDATE OF business_id, location_key, status, assigned_staff_id, unread_count, channels ON conversations
     WHEN OLD.business_id <> NEW.business_id OR OLD.location_key <> NEW.location_key OR OLD.status <> NEW.status
       OR (OLD.assigned_staff_id IS NULL) <> (NEW.assigned_staff_id IS NULL) OR (OLD.unread_count > 0) <> (NEW.unread_count > 0)
       OR OLD.channels <> NEW.channels
     BEGIN
        UPDATE conversation_cells SET n = n - 1 WHERE business_id = OLD.business_id AND location_key = OLD.location_key AND status = OLD.status
            AND unassigned = (OLD.assigned_staff_id IS NULL) AND unread = (OLD.unread_count > 0) AND channels = OLD.channels;
        INSERT INTO conversation_cells VALUES (NEW.business_id, NEW.location_key, NEW.status, NEW.assigned_staff_id IS NULL, NEW.unread_count > 0, NEW.channels, 1)
            ON CONFLICT (business_id, location_key, status, unassigned, unread, channels) DO UPDATE SET n = n + 1;
     END",
    "CREATE TRIGGER IF NOT EXISTS conversation_cells_delete AFTER DELETE ON conversations BEGIN
        UPDATE conversation_cells SET n = n - 1 WHERE business_id = OLD.business_id AND location_key = OLD.location_key AND status = OLD.status
            AND unassigned = (OLD.assigned_staff_id IS NULL) AND unread = (OLD.unread_count > 0) AND channels = OLD.channels;
     END",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(TABLE).await?;
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(BACKFILL_PG).await?;
                db.execute_unprepared(FUNCTION_PG).await?;
                for sql in TRIGGERS_PG {
                    db.execute_unprepared(sql).await?;
                }
            }
            _ => {
                db.execute_unprepared(BACKFILL_SQLITE).await?;
                for sql in TRIGGERS_SQLITE {
                    db.execute_unprepared(sql).await?;
                }
            }
        }
        // "Mine": a staff member's conversations, counted by an index range.
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_conversations_assignee ON conversations (business_id, assigned_staff_id)",
        )
        .await?;
        Ok(())
    }
}
