//! Live sync across processes: every commit that grows a database's log notifies
//! channel [`crate::tx::CHANNEL`] with the database's lock key (in the committing
//! transaction, so the notification is delivered exactly when the commit is visible);
//! each process keeps one listening connection per signal, on a thread of its own, and
//! counts notifications for its database into the signal sessions wait on.
//!
//! A lost connection (Postgres restarting) is retried with a doubling backoff up to
//! [`RETRY_MAX`]; the counter moves once it is back, so sessions look again at
//! whatever committed meanwhile (the sessions' own safety-net poll covers the gap).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use blazedb_core::Result;
use blazedb_sync::store::CommitSignal;
use postgres::fallible_iterator::FallibleIterator as _;
use tokio::sync::watch;

use crate::tls::StoreTls;
use crate::tx::CHANNEL;

/// How long one wait for a notification lasts before the thread checks whether the
/// signal was dropped.
const POLL: Duration = Duration::from_millis(250);
/// The first and the longest wait before reconnecting.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Stops the listener thread when the signal is dropped.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A signal moved by every notification whose payload is `name` (a database's lock key
/// in decimal).
pub(crate) fn listen(
    config: postgres::Config,
    tls: StoreTls,
    name: String,
) -> Result<CommitSignal> {
    let (tx, rx) = watch::channel(0u64);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("blazedb-pg-listen".into())
        .spawn(move || run(&config, &tls, &name, &tx, &flag))
        .map_err(|e| blazedb_core::Error::Io {
            context: "starting the PostgreSQL listener",
            source: e,
        })?;
    Ok(CommitSignal::new(rx, Box::new(Stop(stop))))
}

fn run(
    config: &postgres::Config,
    tls: &StoreTls,
    name: &str,
    tx: &watch::Sender<u64>,
    stop: &AtomicBool,
) {
    let mut retry = RETRY_MIN;
    while !stop.load(Ordering::Acquire) {
        let mut client = match tls.connect(config) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, pause = ?retry, "PostgreSQL listener: connecting failed");
                std::thread::sleep(retry);
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!(error = %e, "PostgreSQL listener: LISTEN failed");
            std::thread::sleep(retry);
            retry = (retry * 2).min(RETRY_MAX);
            continue;
        }
        retry = RETRY_MIN;
        // Whatever committed while no one listened: look.
        tx.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            // Each notification wakes the sessions as it arrives (the iterator's wait
            // restarts with every one, so waiting for a quiet moment first would hold
            // the wake-ups back for as long as commits keep coming).
            let broken = {
                let mut n = client.notifications();
                let mut it = n.timeout_iter(POLL);
                loop {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    match it.next() {
                        Ok(Some(note)) if note.payload() == name => {
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break false,
                        Err(_) => break true,
                    }
                }
            };
            if broken || client.is_closed() {
                tracing::warn!("PostgreSQL listener: the connection was lost, reconnecting");
                break;
            }
        }
    }
}
