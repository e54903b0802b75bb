//! Group commit for `POST /api/automation_requests`: the creations that
//! arrive together run one after the other on a writer thread inside one
//! unit of work of the store ([`ServedStore::begin_unit`]: the request
//! service over the unit's objects, [`Requests::with_store`]) and are committed
//! in one durable transaction, then every caller gets its answer. A
//! request is answered only once everything it wrote is on disk, and many
//! requests share one fsync.
//!
//! Each caller's creations are one item of the shared unit: a savepoint
//! ([`ObjectStore::savepoint`](automate_vmdb::ObjectStore::savepoint)) is
//! taken before them, and when they fail (an error, or a panic) what they
//! wrote is discarded and that caller alone gets the error; the others'
//! writes stay and are committed. One poisoned request never fails its
//! neighbours. This is the pipeline's rule for a
//! failed event too (`events::pipeline`), except that a caller is answered
//! instead of the item being tried again.

use super::ApiError;
use automate_requests::{NewRequest, RequestView, Requests};
use automate_vmdb::served::{ServedStore, ServedUnit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Most creations committed together.
const MAX_BATCH: usize = 128;

type Answer = Result<Vec<RequestView>, ApiError>;

/// One caller's creations (several for a `create` action with
/// `resources`, created together or not at all) and where to answer.
struct Job<I = NewRequest> {
    items: Vec<I>,
    reply: oneshot::Sender<Answer>,
}

/// The writer threads' queue. Dropping it stops them and waits for them to
/// end, so the store they hold is released before the process goes on
/// (an `automate run` that exits with a writer still holding the store
/// leaves the file "not closed cleanly" for the next read-only command).
#[derive(Debug)]
pub(super) struct Batcher {
    tx: Mutex<Option<Sender<Job>>>,
    writers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // Closing the channel ends each writer after its current batch.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        for w in self.writers.drain(..) {
            if w.join().is_err() {
                tracing::error!(target: "evm", "MIQ(Api) a request writer panicked while stopping");
            }
        }
    }
}

impl Batcher {
    /// Starts `writers` writer threads over `store` and `requests`.
    pub(super) fn start(
        store: Arc<dyn ServedStore>,
        requests: Arc<Requests>,
        writers: usize,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(writers.max(1));
        for i in 0..writers.max(1) {
            let (store, requests, rx) = (store.clone(), requests.clone(), rx.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("automate-api-writer-{i}"))
                    .spawn(move || writer(&store, &requests, &rx))?,
            );
        }
        Ok(Batcher {
            tx: Mutex::new(Some(tx)),
            writers: handles,
        })
    }

    /// Creates `items` (all or none) and answers once they are durable.
    pub(super) async fn create(&self, items: Vec<NewRequest>) -> Answer {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .tx
            .lock()
            .map_err(|_| ApiError::internal("the request writer is gone"))?
            .as_ref()
            .map(|tx| tx.send(Job { items, reply }));
        if !matches!(sent, Some(Ok(()))) {
            return Err(ApiError::internal("the request writers have stopped"));
        }
        answer
            .await
            .map_err(|_| ApiError::internal("the request writer failed (see evm.log)"))?
    }
}

fn writer(store: &Arc<dyn ServedStore>, requests: &Requests, rx: &Mutex<Receiver<Job>>) {
    loop {
        let batch = {
            let Ok(rx) = rx.lock() else { return };
            let Ok(first) = rx.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let unit = store.clone().begin_unit();
        let requests = requests.with_store(unit.objects());
        run_batch(unit, batch, |items| create_all(&requests, items));
    }
}

fn create_all(requests: &Requests, items: &[NewRequest]) -> Answer {
    items
        .iter()
        .map(|new| {
            requests
                .create(new.clone())
                .map_err(super::requests::request_error)
        })
        .collect()
}

/// Runs each job's items with `create` (which writes through `unit`'s
/// objects), each job behind its own savepoint of the unit (a failed or
/// panicking job's writes are discarded, see the module docs), commits the
/// unit and answers every job.
fn run_batch<I>(unit: Box<dyn ServedUnit>, batch: Vec<Job<I>>, create: impl Fn(&[I]) -> Answer) {
    let store = unit.objects();
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    for job in &batch {
        let sp = store.savepoint();
        let answer = catch_unwind(AssertUnwindSafe(|| create(&job.items))).unwrap_or_else(|panic| {
            let text = automate_vmdb::panic_text(&*panic);
            tracing::error!(target: "evm", "MIQ(Api) an automation request panicked ({text}); its writes were discarded, the other requests of its batch go on");
            Err(ApiError::internal(
                "the request failed inside the server (see evm.log); nothing of it was stored",
            ))
        });
        if let Some(sp) = sp {
            if answer.is_err() {
                store.rollback_to(sp);
            } else {
                store.release_savepoint(sp);
            }
        }
        answers.push(answer);
    }
    drop(store);
    match unit.commit() {
        Ok(()) => {
            for (job, answer) in batch.into_iter().zip(answers) {
                let _ = job.reply.send(answer);
            }
        }
        Err(e) => {
            let e = ApiError::internal(e);
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_engine::{AttrValue, Attributes};
    use automate_redb::RedbStore;
    use automate_vmdb::ObjectStore;

    fn vm(name: &str) -> Attributes {
        let mut a = Attributes::default();
        a.insert("name".into(), AttrValue::Str(name.into()));
        a
    }

    /// One job of a batch writes and then panics, another writes and then
    /// fails: their writes are gone, their neighbours' are stored and
    /// answered.
    #[test]
    fn a_failing_or_panicking_job_is_discarded_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("b.redb")).unwrap());
        let unit = ServedStore::begin_unit(store.clone());
        let objects = unit.objects();
        let names = ["ok-1", "panics", "ok-2", "fails", "ok-3"];
        let mut answers = Vec::new();
        let batch: Vec<Job<&str>> = names
            .iter()
            .map(|n| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Job {
                    items: vec![*n],
                    reply,
                }
            })
            .collect();
        run_batch(unit, batch, |items| {
            for name in items {
                objects.create("Vm", vm(name)).map_err(ApiError::internal)?;
                if *name == "panics" {
                    panic!("poisoned request");
                }
                if *name == "fails" {
                    return Err(ApiError::internal("refused after writing"));
                }
            }
            Ok(Vec::new())
        });
        let answers: Vec<bool> = answers
            .into_iter()
            .map(|a| a.blocking_recv().unwrap().is_ok())
            .collect();
        assert_eq!(answers, [true, false, true, false, true]);
        let mut stored: Vec<String> = store
            .list("Vm")
            .unwrap()
            .iter()
            .map(|r| store.attribute(r, "name").unwrap().unwrap().to_text())
            .collect();
        stored.sort();
        assert_eq!(stored, ["ok-1", "ok-2", "ok-3"]);
    }
}
