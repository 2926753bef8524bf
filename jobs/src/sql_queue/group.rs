//! The small writes every job ends with (its ack, the note of a provider's answer),
//! group-committed: the writes waiting when a transaction starts share it, while the next
//! ones gather, as the workers' steps do (`workers/src/batch.rs`). On SQLite, one writer at a
//! time, a transaction per ack and per note was most of the embedded deployment's queue
//! cost. Each caller still waits for its own write to commit, so what is acked or noted is
//! as durable as before.
use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait, Value};
use tokio::sync::{mpsc, oneshot};

use super::{ID_CHUNK, statement};
use crate::{JobType, QueueError, now_ms};

/// The most writes one transaction takes.
const MAX: usize = 1024;

pub(super) enum Write {
    /// A job done: its row deleted and its type's counter of done jobs raised.
    Ack { receipt: String, job_type: JobType },
    /// A note kept (replacing one of the same key).
    Note { key: String, value: String },
}

type Reply = oneshot::Sender<Result<(), String>>;

pub(super) struct Group {
    tx: mpsc::UnboundedSender<(Write, Reply)>,
}

impl Group {
    /// Starts the committing task (inside a Tokio runtime); it ends with the last handle.
    pub fn start(db: DatabaseConnection) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Write, Reply)>();
        tokio::spawn(async move {
            let mut waiting = Vec::with_capacity(MAX);
            while rx.recv_many(&mut waiting, MAX).await > 0 {
                let (writes, replies): (Vec<Write>, Vec<Reply>) = waiting.drain(..).unzip();
                let result = commit(&db, writes).await.map_err(|e| {
                    tracing::warn!(error = %e, "the queue could not commit a group of acks and notes");
                    e.to_string()
                });
                for reply in replies {
                    let _ = reply.send(result.clone());
                }
            }
        });
        Group { tx }
    }

    /// Hands one write to the next transaction and waits for it to commit.
    pub async fn write(&self, write: Write) -> Result<(), QueueError> {
        let stopped = || QueueError::Protocol("the queue's committing task stopped".into());
        let (reply, result) = oneshot::channel();
        self.tx.send((write, reply)).map_err(|_| stopped())?;
        result
            .await
            .map_err(|_| stopped())?
            .map_err(QueueError::Protocol)
    }
}

async fn commit(db: &DatabaseConnection, writes: Vec<Write>) -> Result<(), QueueError> {
    let backend = db.get_database_backend();
    let mut receipts = Vec::new();
    let mut done: BTreeMap<&'static str, i64> = BTreeMap::new();
    // By key, so a key written twice in one group is kept once, with its last value.
    let mut notes: BTreeMap<String, String> = BTreeMap::new();
    for w in writes {
        match w {
            Write::Ack { receipt, job_type } => {
                receipts.push(receipt);
                *done.entry(job_type.as_str()).or_default() += 1;
            }
            Write::Note { key, value } => {
                notes.insert(key, value);
            }
        }
    }
    let txn = db.begin().await?;
    for chunk in receipts.chunks(ID_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let values = chunk.iter().map(|r| Value::from(r.as_str())).collect();
        txn.execute_raw(statement(
            backend,
            &format!("DELETE FROM omega_jobs WHERE id IN ({marks})"),
            values,
        ))
        .await?;
    }
    for (job_type, n) in done {
        txn.execute_raw(statement(
            backend,
            "INSERT INTO omega_job_counters (job_type, done) VALUES (?, ?) \
             ON CONFLICT (job_type) DO UPDATE SET done = omega_job_counters.done + excluded.done",
            vec![job_type.into(), n.into()],
        ))
        .await?;
    }
    let notes: Vec<(String, String)> = notes.into_iter().collect();
    let now = now_ms();
    for chunk in notes.chunks(ID_CHUNK) {
        let marks = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let values = chunk
            .iter()
            .flat_map(|(k, v)| [Value::from(k.as_str()), v.as_str().into(), now.into()])
            .collect();
        txn.execute_raw(statement(
            backend,
            &format!(
                "INSERT INTO omega_job_notes (key, value, created_at) VALUES {marks} \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            values,
        ))
        .await?;
    }
    txn.commit().await?;
    Ok(())
}
