//! Group commit: jobs that run at the same time hand their database step to a [`Batcher`],
//! which does the steps of all of them in one transaction while the next batch gathers. The
//! jobs stay separate in the queue (each is acked, retried or buried on its own); only the
//! transactions are shared, which is what lets a worker record thousands of messages a
//! second where a transaction per message managed a few hundred.
//!
//! A batch that fails as a whole (a deadlock, one row the database refuses) is run again
//! item by item, so one bad job cannot fail the others.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jobs::JobError;
use tokio::sync::{mpsc, oneshot};

type Reply<O> = oneshot::Sender<Result<O, JobError>>;
type RunFn<I, O> =
    dyn Fn(Arc<[I]>) -> Pin<Box<dyn Future<Output = BatchResult<O>> + Send>> + Send + Sync;

/// One result per item, in order; Err when the batch failed as a whole.
pub type BatchResult<O> = Result<Vec<Result<O, JobError>>, JobError>;

pub struct Batcher<I, O> {
    tx: mpsc::UnboundedSender<(I, Reply<O>)>,
}

impl<I, O> Batcher<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    /// Starts the batching task: it takes up to `max` waiting items at a time and gives them
    /// to `run` (shared, so a batch that fails can be run again item by item without a copy
    /// of every batch kept aside). Must be called inside a Tokio runtime; the task ends with
    /// the last handle.
    pub fn new<F, Fut>(name: &'static str, max: usize, run: F) -> Self
    where
        F: Fn(Arc<[I]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = BatchResult<O>> + Send + 'static,
    {
        let run: Arc<RunFn<I, O>> = Arc::new(move |items| Box::pin(run(items)));
        let (tx, mut rx) = mpsc::unbounded_channel::<(I, Reply<O>)>();
        tokio::spawn(async move {
            let mut waiting = Vec::with_capacity(max);
            while rx.recv_many(&mut waiting, max.max(1)).await > 0 {
                let (items, replies): (Vec<I>, Vec<Reply<O>>) = waiting.drain(..).unzip();
                metrics::histogram!("omega_batch_size", "step" => name).record(items.len() as f64);
                let results = run_batch(&*run, name, items.into()).await;
                for (reply, result) in replies.into_iter().zip(results) {
                    // The job may have timed out and gone; its result is then of no use.
                    let _ = reply.send(result);
                }
            }
        });
        Batcher { tx }
    }

    /// Hands one item to the next batch and waits for its result.
    pub async fn submit(&self, item: I) -> Result<O, JobError> {
        let (reply, result) = oneshot::channel();
        self.tx.send((item, reply)).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

fn stopped() -> JobError {
    JobError::Transient("the batching task stopped".into())
}

fn lost(name: &str) -> JobError {
    JobError::Transient(format!("{name}: a batch gave the wrong number of results"))
}

async fn run_batch<I: Clone, O>(
    run: &RunFn<I, O>,
    name: &'static str,
    items: Arc<[I]>,
) -> Vec<Result<O, JobError>> {
    let n = items.len();
    let whole = run(items.clone()).await;
    match whole {
        Ok(results) if results.len() == n => results,
        Ok(results) => {
            tracing::error!(
                step = name,
                expected = n,
                got = results.len(),
                "a batch gave the wrong number of results"
            );
            (0..n).map(|_| Err(lost(name))).collect()
        }
        Err(e) if n == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(step = name, size = n, error = %e, "a batch failed; running its items one by one");
            let mut out = Vec::with_capacity(n);
            for item in items.iter() {
                out.push(match run(Arc::from([item.clone()])).await {
                    Ok(mut one) if one.len() == 1 => one.pop().expect("one result"),
                    Ok(_) => Err(lost(name)),
                    Err(e) => Err(e),
                });
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_items_share_batches_and_a_failed_batch_is_split() {
        let sizes = Arc::new(std::sync::Mutex::new(vec![]));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::new("test", 8, move |items: Arc<[i32]>| {
            seen.lock().unwrap().push(items.len());
            async move {
                // A batch holding 13 fails as a whole; alone, 13 fails and the rest succeed.
                if items.contains(&13) {
                    if items.len() > 1 {
                        return Err(JobError::Transient("batch".into()));
                    }
                    return Ok(vec![Err(JobError::Permanent("thirteen".into()))]);
                }
                tokio::task::yield_now().await;
                Ok(items.iter().map(|i| Ok(i * 2)).collect())
            }
        }));
        let calls = (0..20).map(|i| {
            let b = batcher.clone();
            tokio::spawn(async move { (i, b.submit(i).await) })
        });
        for call in futures::future::join_all(calls).await {
            let (i, result) = call.unwrap();
            match result {
                Ok(v) => assert_eq!(v, i * 2),
                Err(e) => {
                    assert_eq!(i, 13);
                    assert!(e.to_string().contains("thirteen"), "{e}");
                }
            }
        }
        let sizes = sizes.lock().unwrap();
        assert!(sizes.iter().all(|&s| s <= 8), "{sizes:?}");
        assert!(
            sizes.iter().any(|&s| s > 1),
            "nothing was batched: {sizes:?}"
        );
    }
}
