//! The sessions' database workers: a fixed set of at most [`DB_WORKERS`] threads per
//! process that run every session's database work (apply, read the log, absorb), in
//! the order it was asked for.
//!
//! Why not tokio's blocking pool: it starts a thread whenever a task arrives and no
//! thread is idle, up to 512. With thousands of sessions taking turns, the thread that
//! just finished one session's work is not yet idle when the next session's arrives, so
//! the pool kept growing (measured: ~420 threads on a server with 10,000 clients, even
//! with at most 16 tasks running at once); each thread holds a stack.
//!
//! Invariants:
//! - At most [`DB_WORKERS`] threads ever exist; a thread starts only when more jobs
//!   wait than threads are idle, and then lives as long as the process (idle, it costs
//!   a parked thread).
//! - Jobs run first come, first served. The queue holds at most one job per session
//!   (a session waits for its job before it asks for another), so it is bounded by the
//!   connections a server admits.
//! - No job waits for a job that is not running (each is one session's own
//!   transactions; a durable commit waits for the disk, not for a worker; a job whose
//!   batches wait in `node/combine.rs` waits for the running job that leads the
//!   round, which waits only for the database), so a full pool cannot deadlock.
//! - A job that panics is reported to its waiter as a failure; the worker goes on.
//!
//! The price of a fixed pool: a job waiting for its database's writer lock holds its
//! worker, so an application that keeps a write transaction open for long delays the
//! sessions of every database in the process once 16 of them wait on it (with one
//! thread per job they would have waited on that lock alone).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Most database worker threads in a process. Above the core count, so that durable
/// commits running at once share their sync (the storage's group commit) and a commit
/// waiting on the disk does not idle a core.
pub(crate) const DB_WORKERS: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    queue: Sender<Job>,
    /// Shared by the workers: whoever holds the lock waits for the next job.
    jobs: Mutex<Receiver<Job>>,
    threads: AtomicUsize,
    /// Threads waiting for a job (or about to).
    idle: AtomicUsize,
    /// Jobs submitted and not yet taken by a worker.
    queued: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (queue, jobs) = channel();
        Pool {
            queue,
            jobs: Mutex::new(jobs),
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
        }
    })
}

impl Pool {
    fn submit(&'static self, job: Job) {
        let queued = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
        let sent = self.queue.send(job);
        // The receiver lives in the static pool: sending cannot fail.
        debug_assert!(sent.is_ok());
        if queued > self.idle.load(Ordering::Acquire) {
            self.grow();
        }
    }

    /// Starts one more worker, unless [`DB_WORKERS`] exist.
    fn grow(&'static self) {
        let started = self
            .threads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < DB_WORKERS).then_some(n + 1)
            });
        if started.is_err() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("blazedb-sync-db".into())
            .spawn(move || self.work());
        if spawned.is_err() {
            // Out of threads: the workers that exist take the job in turn.
            self.threads.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("could not start a sync database worker");
        }
    }

    fn work(&self) {
        loop {
            self.idle.fetch_add(1, Ordering::AcqRel);
            let job = self
                .jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv();
            self.idle.fetch_sub(1, Ordering::AcqRel);
            let Ok(job) = job else { return };
            self.queued.fetch_sub(1, Ordering::AcqRel);
            job();
        }
    }
}

/// Runs `f` on a database worker and returns its result, or `None` if it panicked.
pub(crate) async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool().submit(Box::new(move || {
        let out = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(out);
    }));
    match rx.await {
        Ok(Ok(out)) => Some(out),
        Ok(Err(_)) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{DB_WORKERS, pool, run};

    #[test]
    fn many_jobs_at_once_run_on_at_most_the_fixed_number_of_threads() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let sum: u64 = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..2_000u64 {
                set.spawn(run(move || {
                    std::thread::yield_now();
                    i
                }));
            }
            let mut sum = 0;
            while let Some(r) = set.join_next().await {
                sum += r.expect("joined").expect("no panic");
            }
            sum
        });
        assert_eq!(sum, (0..2_000u64).sum::<u64>(), "every job ran once");
        let threads = pool().threads.load(std::sync::atomic::Ordering::Acquire);
        assert!(
            (1..=DB_WORKERS).contains(&threads),
            "{threads} worker threads"
        );
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_workers_go_on() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            assert_eq!(run(|| -> u8 { panic!("job failed") }).await, None);
            assert_eq!(run(|| 7u8).await, Some(7));
        });
    }
}
