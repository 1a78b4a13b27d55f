//! Commit notifications for the layers above (the sync layer wakes on them to ship new
//! local changes and to relay applied remote ones at once, instead of polling).
//!
//! Invariants:
//! - A hook runs after a commit returned successfully, on the committing thread, after
//!   the write lock is released; it must be quick (the sync layer's only sets a flag
//!   and wakes a task).
//! - With no hook registered a commit pays one atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::database::Database;

/// Most hooks on one database (each sync connection registers one).
pub const COMMIT_HOOKS_MAX: usize = 4096;

type Hook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub(crate) struct Hooks {
    any: AtomicBool,
    next_id: AtomicU64,
    list: Mutex<Vec<(u64, Hook)>>,
}

impl Hooks {
    pub(crate) fn fire(&self) {
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
            hook();
        }
    }
}

/// Removes its hook when dropped.
pub struct CommitHook {
    db: Database,
    id: u64,
}

impl Drop for CommitHook {
    fn drop(&mut self) {
        let hooks = &self.db.inner.hooks;
        let mut list = hooks.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|(id, _)| *id != self.id);
        hooks.any.store(!list.is_empty(), Ordering::Release);
    }
}

impl Database {
    /// Calls `hook` after every successful commit of this database (local writes and
    /// applied remote changes alike) until the returned guard is dropped.
    ///
    /// # Errors
    /// [`blazedb_core::Error::TooLarge`] beyond [`COMMIT_HOOKS_MAX`] hooks.
    pub fn on_commit(
        &self,
        hook: impl Fn() + Send + Sync + 'static,
    ) -> blazedb_core::Result<CommitHook> {
        let hooks = &self.inner.hooks;
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
        Ok(CommitHook {
            db: self.clone(),
            id,
        })
    }
}
