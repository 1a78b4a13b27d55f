//! Commit notifications for the layers above (the sync layer wakes on them to ship new
//! local changes and to relay applied remote ones at once, instead of polling).
//!
//! Invariants:
//! - A hook runs after a commit returned successfully, on the committing thread, after
//!   the write lock is released; it must be quick (the sync layer's only sets a flag
//!   and wakes a task).
//! - With no hook registered a commit pays one atomic load.
//! - A hook learns what the commit carried ([`Committed`]), so a listener that only
//!   cares about some commits (the sync layer: local writes to take over, log entries
//!   to send) does nothing for the others, instead of waking every task it serves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Most hooks on one database (each sync connection registers one).
pub const COMMIT_HOOKS_MAX: usize = 4096;

/// What a commit carried, as its hooks see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// It wrote change-log entries: local writes that sync has not taken over yet.
    pub local_changes: bool,
    /// The layer above marked it as worth a wake-up
    /// ([`crate::internal::SyncWrite::signal_listeners`]; the sync layer marks every
    /// commit that grew its log).
    pub signaled: bool,
}

type Hook = Arc<dyn Fn(&Committed) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Hooks {
    any: AtomicBool,
    next_id: AtomicU64,
    list: Mutex<Vec<(u64, Hook)>>,
}

impl Hooks {
    pub(crate) fn fire(&self, committed: &Committed) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let list: Vec<Hook> = self
            .list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, h)| Arc::clone(h))
            .collect();
        for hook in list {
            hook(committed);
        }
    }
}

/// The owner of a hook list: what a [`CommitHook`] holds to find its list again when
/// dropped. The database's shared state implements it; holding it keeps the database
/// open while the guard lives, as a handle would. The trait keeps this module free of
/// the database type, which owns the hook list.
pub(crate) trait HookHost: Send + Sync {
    fn hooks(&self) -> &Hooks;
}

/// Removes its hook when dropped.
pub struct CommitHook {
    host: Arc<dyn HookHost>,
    id: u64,
}

impl Drop for CommitHook {
    fn drop(&mut self) {
        let hooks = self.host.hooks();
        let mut list = hooks.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|(id, _)| *id != self.id);
        hooks.any.store(!list.is_empty(), Ordering::Release);
    }
}

impl Hooks {
    /// Adds `hook` to the list of `host` until the returned guard is dropped.
    ///
    /// # Errors
    /// [`blazedb_core::Error::TooLarge`] beyond [`COMMIT_HOOKS_MAX`] hooks.
    pub(crate) fn register(
        host: Arc<dyn HookHost>,
        hook: impl Fn(&Committed) + Send + Sync + 'static,
    ) -> blazedb_core::Result<CommitHook> {
        let hooks = host.hooks();
        let mut list = hooks.list.lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() >= COMMIT_HOOKS_MAX {
            return Err(blazedb_core::Error::TooLarge {
                what: "commit hooks",
                size: list.len() + 1,
                max: COMMIT_HOOKS_MAX,
            });
        }
        let id = hooks.next_id.fetch_add(1, Ordering::Relaxed);
        list.push((id, Arc::new(hook)));
        hooks.any.store(true, Ordering::Release);
        drop(list);
        Ok(CommitHook { host, id })
    }
}
