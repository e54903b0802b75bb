//! Group commit for `POST /api/automation_requests`: the creations that
//! arrive together run one after the other on a writer thread inside one
//! unit of work of the store ([`RedbStore::begin_unit`]) and are committed
//! in one durable transaction, then every caller gets its answer. A
//! request is answered only once everything it wrote is on disk, and many
//! requests share one fsync.
//!
//! A creation that fails without writing anything (a refused request) is
//! answered with its error and the others go on. One that fails after
//! writing (a store error half-way) spoils the shared unit: the unit is
//! discarded and every creation of the batch is run again alone, in its
//! own unit, so no caller gets an answer for writes that were thrown away.

use super::ApiError;
use crate::requests::{NewRequest, RequestView, Requests};
use crate::vmdb::RedbStore;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Most creations committed together.
const MAX_BATCH: usize = 128;

type Answer = Result<Vec<RequestView>, ApiError>;

/// One caller's creations (several for a `create` action with
/// `resources`, created together or not at all) and where to answer.
struct Job {
    items: Vec<NewRequest>,
    reply: oneshot::Sender<Answer>,
}

/// The writer threads' queue. Dropping the last handle stops them.
#[derive(Debug)]
pub(super) struct Batcher {
    tx: Mutex<Sender<Job>>,
}

impl Batcher {
    /// Starts `writers` writer threads over `store` and `requests`.
    pub(super) fn start(
        store: Arc<RedbStore>,
        requests: Arc<Requests>,
        writers: usize,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..writers.max(1) {
            let (store, requests, rx) = (store.clone(), requests.clone(), rx.clone());
            std::thread::Builder::new()
                .name(format!("automate-api-writer-{i}"))
                .spawn(move || writer(&store, &requests, &rx))?;
        }
        Ok(Batcher { tx: Mutex::new(tx) })
    }

    /// Creates `items` (all or none) and answers once they are durable.
    pub(super) async fn create(&self, items: Vec<NewRequest>) -> Answer {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .tx
            .lock()
            .map_err(|_| ApiError::internal("the request writer is gone"))?
            .send(Job { items, reply });
        if sent.is_err() {
            return Err(ApiError::internal("the request writers have stopped"));
        }
        answer
            .await
            .map_err(|_| ApiError::internal("the request writer failed (see evm.log)"))?
    }
}

fn writer(store: &RedbStore, requests: &Requests, rx: &Mutex<Receiver<Job>>) {
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
        if catch_unwind(AssertUnwindSafe(|| run_batch(store, requests, batch))).is_err() {
            // The callers of that batch get "the request writer failed".
            store.abort_unit();
            tracing::error!(target: "evm", "MIQ(Api) a batch of automation requests panicked; it was discarded");
        }
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

/// Runs `items` alone in its own unit.
fn run_alone(store: &RedbStore, requests: &Requests, items: &[NewRequest]) -> Answer {
    store.begin_unit();
    match create_all(requests, items) {
        Ok(views) => match store.commit_unit(|_| Ok(())) {
            Ok(()) => Ok(views),
            Err(e) => Err(ApiError::internal(e)),
        },
        Err(e) => {
            store.abort_unit();
            Err(e)
        }
    }
}

fn run_batch(store: &RedbStore, requests: &Requests, batch: Vec<Job>) {
    store.begin_unit();
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    let mut spoiled = false;
    for job in &batch {
        let before = store.unit_len().unwrap_or(0);
        let answer = create_all(requests, &job.items);
        if answer.is_err() && store.unit_len().unwrap_or(0) != before {
            spoiled = true;
            break;
        }
        answers.push(answer);
    }
    if spoiled {
        store.abort_unit();
        tracing::warn!(target: "evm", "MIQ(Api) a failed automation request left writes behind: its batch of {} is run again one by one", batch.len());
        for job in batch {
            let answer = run_alone(store, requests, &job.items);
            let _ = job.reply.send(answer);
        }
        return;
    }
    match store.commit_unit(|_| Ok(())) {
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
