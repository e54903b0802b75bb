//! Group commit: one thread writes the durable transactions of many callers
//! (the pipeline's enqueues and its workers' units of work), as few
//! transactions as it can.
//!
//! redb has one writer at a time, and every commit pays a fixed price (the
//! allocator state, the branch pages down to each leaf it touched, an
//! `fdatasync`) on top of what it writes. A caller of
//! [`GroupCommit::commit`] hands its job (a [`PreparedUnit`] and a function
//! that writes the rest: queue items, acks, retries) to the writer thread
//! and waits; the writer takes every job that is waiting, applies them in
//! order in **one** transaction, commits it durably and answers them all.
//! While it commits, the next jobs gather: the busier the store, the larger
//! the transactions, the fewer of them. Should the shared transaction fail,
//! each of its jobs is tried again alone, so one bad job fails only itself.
//! Nothing is answered before its writes are on disk.

use super::{Batch, PreparedUnit, RedbStore};
use automate_vmdb::{CommitAnswer, StoreError};

pub use automate_vmdb::Committing;
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

/// Most jobs one transaction takes.
const MAX_JOBS: usize = 64;

/// What a job writes besides its unit: returns ids for the caller (the
/// queue ids of scheduled items, say). May be called twice (the second time
/// alone in its own transaction, when the shared one failed).
pub type Work = Box<dyn FnMut(&mut Batch<'_>) -> Result<Vec<u64>, StoreError> + Send>;

struct Job {
    unit: PreparedUnit,
    work: Work,
    /// The answer, and when the writer had it (on disk, or failed).
    done: Sender<CommitAnswer>,
}

enum Message {
    Job(Job),
    Stop,
}

/// A handle on the writer thread (cheap to clone). See the module docs.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: SyncSender<Message>,
}

/// The writer thread of a [`GroupCommit`]: [`GroupWriter::stop`] ends it
/// once the jobs sent before are written.
#[derive(Debug)]
pub struct GroupWriter {
    tx: SyncSender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl GroupWriter {
    /// Ends the writer thread after the jobs already sent, and waits for
    /// it (then the store it holds is released). Later commits fail.
    pub fn stop(mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.tx.send(Message::Stop);
        }
    }
}

impl GroupCommit {
    /// Starts the writer thread of `store`.
    pub fn start(store: Arc<RedbStore>) -> std::io::Result<(GroupCommit, GroupWriter)> {
        let (tx, rx) = sync_channel::<Message>(MAX_JOBS * 4);
        let thread = std::thread::Builder::new()
            .name("automate-writer".into())
            .spawn(move || write_loop(&store, &rx))?;
        Ok((
            GroupCommit { tx: tx.clone() },
            GroupWriter {
                tx,
                thread: Some(thread),
            },
        ))
    }

    /// Writes `unit` and `work` durably, with whatever other jobs are
    /// waiting, and returns `work`'s ids once they are on disk.
    pub fn commit(
        &self,
        unit: PreparedUnit,
        work: impl FnMut(&mut Batch<'_>) -> Result<Vec<u64>, StoreError> + Send + 'static,
    ) -> Result<Vec<u64>, StoreError> {
        self.submit(unit, work).wait()
    }

    /// [`GroupCommit::commit`] without waiting: the caller goes on (with
    /// the next batch, say) and takes the answer from the returned
    /// [`Committing`] when it needs it. Jobs of one caller are written in
    /// the order they were submitted.
    pub fn submit(
        &self,
        unit: PreparedUnit,
        work: impl FnMut(&mut Batch<'_>) -> Result<Vec<u64>, StoreError> + Send + 'static,
    ) -> Committing {
        let (done, committing) = Committing::pair();
        let job = Job {
            unit,
            work: Box::new(work),
            done,
        };
        // A writer that has stopped drops the job, and with it `done`: the
        // answer then reads as stopped.
        let _ = self.tx.send(Message::Job(job));
        committing
    }
}

fn write_loop(store: &RedbStore, rx: &Receiver<Message>) {
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else { return };
        let mut jobs = Vec::new();
        match first {
            Message::Job(j) => jobs.push(j),
            Message::Stop => return,
        }
        while jobs.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(Message::Job(j)) => jobs.push(j),
                Ok(Message::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        write_jobs(store, &mut jobs);
    }
}

/// One transaction for `jobs`; on failure, one each.
fn write_jobs(store: &RedbStore, jobs: &mut Vec<Job>) {
    let shared = {
        let (units, works): (Vec<&PreparedUnit>, Vec<&mut Work>) = jobs
            .iter_mut()
            .map(|Job { unit, work, .. }| (&*unit, work))
            .unzip();
        // A panic inside redb (a damaged page) fails the jobs and marks
        // the store failed, instead of ending this thread.
        store.guard(|| {
            store.commit_units(&units, |b| {
                works
                    .into_iter()
                    .map(|w| w(b))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
    };
    match shared {
        Ok(ids) => {
            for (job, ids) in jobs.drain(..).zip(ids) {
                let _ = job.done.send((Ok(ids), SystemTime::now()));
            }
        }
        Err(e) if jobs.len() == 1 => {
            for job in jobs.drain(..) {
                let _ = job.done.send((Err(e.clone()), SystemTime::now()));
            }
        }
        Err(_) => {
            for mut job in jobs.drain(..) {
                let alone = store.guard(|| store.commit_units(&[&job.unit], |b| (job.work)(b)));
                let _ = job.done.send((alone, SystemTime::now()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automate_core::value::{AttrValue, Attributes};
    use automate_vmdb::{ObjectStore, WorkItem};
    use std::time::SystemTime;

    #[test]
    fn units_and_work_of_many_threads_are_committed_and_a_bad_job_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("g.redb")).unwrap());
        let (group, writer) = GroupCommit::start(store.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                let group = group.clone();
                std::thread::spawn(move || {
                    for n in 0..10 {
                        let unit = store.begin_unit();
                        let mut attrs = Attributes::default();
                        attrs.insert("name".into(), AttrValue::Str(format!("vm-{t}-{n}")));
                        unit.create("Vm", attrs).unwrap();
                        let ids = group
                            .commit(unit.take_prepared().unwrap(), |b| {
                                b.schedule_all(&[(
                                    WorkItem::new("test", serde_json::Value::Null),
                                    SystemTime::now(),
                                )])
                            })
                            .unwrap();
                        assert_eq!(ids.len(), 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.list("Vm").unwrap().len(), 40);
        assert_eq!(store.schedule().len().unwrap(), 40);
        // A job whose work fails is not written; the others are.
        let bad = group.commit(PreparedUnit::default(), |_| {
            Err(StoreError::Backend("no".into()))
        });
        assert!(bad.is_err());
        writer.stop();
        assert!(group
            .commit(PreparedUnit::default(), |_| Ok(Vec::new()))
            .is_err());
        assert_eq!(store.schedule().len().unwrap(), 40);
    }
}
