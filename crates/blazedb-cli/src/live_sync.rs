//! The REPL's background sync: `sync start` keeps the database syncing live with a
//! server while the REPL goes on taking commands; `sync now` waits until it is in step,
//! `sync stop` ends it. A database is held by one process at a time (`sync --watch`
//! holds it, so another terminal's commands get "in use"); syncing inside the REPL is
//! the way to work and sync at once. The prompt shows the state (`blazedb [synced]> `),
//! and each change of state is one line, as `sync --watch` prints them
//! (`sync_status.rs`), shown before the next prompt. (Printing while the line editor
//! reads — rustyline's external printer — loses typed-ahead or pasted input in
//! rustyline 17, so lines wait for the prompt.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blazedb::Database;
use blazedb::sync::{Role, SyncConfig, SyncHandle, SyncStatus};

use crate::args::SyncArgs;
use crate::dial::{Dial, dial_for, enable, probe, runtime, sync_error};
use crate::exit::{CliError, CliResult, Exit};
use crate::remote;
use crate::sync_status::{Changes, WATCH_EVERY, state};

/// State lines kept until the next prompt shows them; beyond this the oldest go (and
/// the next line shown says how many).
pub const LINES_KEPT: usize = 64;

/// The state lines waiting for the next prompt, and the last state seen.
#[derive(Debug, Default)]
struct Lines {
    waiting: VecDeque<String>,
    dropped: u64,
    changes: Changes,
    table: bool,
}

impl Lines {
    /// Keeps a line for `status` if it differs from the last one seen.
    fn observe(&mut self, status: &SyncStatus) {
        let table = self.table;
        if let Some(line) = self.changes.next(status, table) {
            self.push(line);
        }
    }

    fn push(&mut self, line: String) {
        if self.waiting.len() == LINES_KEPT {
            self.waiting.pop_front();
            self.dropped += 1;
        }
        self.waiting.push_back(line);
    }
}

/// A sync running in the background of the REPL.
pub struct LiveSync {
    rt: tokio::runtime::Runtime,
    handle: Arc<SyncHandle>,
    watcher: tokio::task::JoinHandle<()>,
    remember: Arc<Remember>,
    lines: Arc<Mutex<Lines>>,
}

/// How the server was dialed, remembered the first time the sync is in step (so a
/// later `sync start` or `sync` alone dials the same way); once.
struct Remember {
    db: Database,
    role: Role,
    pending: Mutex<Option<remote::Remote>>,
}

impl Remember {
    fn now(&self) -> CliResult {
        let Some(r) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        remote::remember(&enable(&self.db, self.role)?, &r)
    }
}

impl LiveSync {
    /// Dials the server `a` names (else the remembered one) and syncs live with it in
    /// the background, keeping a line each time the state changes
    /// ([`LiveSync::take_lines`]).
    ///
    /// # Errors
    /// `--peer` or `--watch` given, no server, an unreachable or refusing server.
    pub fn start(db: &Database, a: &SyncArgs, table: bool) -> CliResult<LiveSync> {
        if a.peer.is_some() || a.watch {
            return Err(CliError::new(
                Exit::Usage,
                "sync start syncs with a server, live: --peer and --watch do not apply",
            )
            .hint("`sync --peer DIR/NAME` syncs with a local database once"));
        }
        let Dial {
            role,
            relay,
            dialed,
            plain,
        } = dial_for(db, a)?;
        let rt = runtime()?;
        let handle = rt.block_on(async {
            probe(&relay, plain).await?;
            SyncHandle::enable(db, relay, role, SyncConfig::default())
                .await
                .map_err(sync_error)
        })?;
        let handle = Arc::new(handle);
        let remember = Arc::new(Remember {
            db: db.clone(),
            role,
            pending: Mutex::new(Some(dialed)),
        });
        let lines = Arc::new(Mutex::new(Lines {
            table,
            ..Lines::default()
        }));
        let (h, rem, out) = (
            Arc::clone(&handle),
            Arc::clone(&remember),
            Arc::clone(&lines),
        );
        let watcher = rt.spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            loop {
                tick.tick().await;
                let s = h.status();
                if state(&s) == "synced"
                    && let Err(e) = rem.now()
                {
                    out.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(format!(
                            "note: the server was not remembered: {}",
                            e.message
                        ));
                }
                out.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .observe(&s);
            }
        });
        Ok(LiveSync {
            rt,
            handle,
            watcher,
            remember,
            lines,
        })
    }

    /// The state lines kept since the last call, oldest first.
    pub fn take_lines(&self) -> Vec<String> {
        let mut l = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(l.waiting.len() + 1);
        if l.dropped > 0 {
            out.push(format!("({} older state lines left out)", l.dropped));
            l.dropped = 0;
        }
        out.extend(l.waiting.drain(..));
        out
    }

    /// The connection's status now.
    #[must_use]
    pub fn status(&self) -> SyncStatus {
        self.handle.status()
    }

    /// Waits until this side's writes are confirmed and what the server held has
    /// arrived (at most `timeout`).
    ///
    /// # Errors
    /// As `blazedb sync`: the server unreachable within `timeout`, or refusing writes.
    pub fn sync_now(&self, timeout: Duration) -> CliResult<SyncStatus> {
        let s = self
            .rt
            .block_on(self.handle.sync_now(timeout))
            .map_err(sync_error)?;
        self.remember.now()?;
        // In step now: the prompt after this says so, whenever the watcher looks next.
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(&s);
        Ok(s)
    }

    /// Ends the background sync; its last status and the state lines not shown yet.
    pub fn stop(self) -> (SyncStatus, Vec<String>) {
        self.watcher.abort();
        let last = self.handle.status();
        self.rt.block_on(self.handle.stop());
        (last, self.take_lines())
    }
}
