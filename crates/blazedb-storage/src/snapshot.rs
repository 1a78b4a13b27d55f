//! [`Snapshot`]: one redb read transaction and the tables opened in it, shared by every
//! [`ReadTx`](crate::ReadTx) that begins while no commit has been published since it
//! began ([`Latest`]).
//!
//! Why: beginning a redb read transaction (it registers with redb's transaction
//! tracker and reads the root) and opening a table in it cost about half as much again
//! as the point get that follows (`blazedb-bench engine`, figures 4a and 4b: ~1.4 µs
//! of a 4.2 µs get in its own transaction). A reader that begins after the last commit
//! would get exactly the same state from a new one, so it gets the shared one.
//!
//! Invariants:
//! - [`Latest`] holds a snapshot only together with the commit sequence `G` it is at
//!   (`ValueCache::snapshot`: no commit published while it began), and hands it out
//!   only while the sequence, read under its lock, is still `G`: no commit has begun
//!   publishing since, so a new redb snapshot would hold the same state. A commit that
//!   publishes while a reader takes it is concurrent with that read (its caller has
//!   not been told it committed), so either state is a correct answer.
//! - A snapshot is offered only while the sequence is still `G` (checked under the
//!   same lock), and every commit clears the slot after publishing
//!   ([`Latest::clear`]). So no snapshot older than the newest commit stays pinned
//!   by the slot (an old redb read transaction would keep the pages it reads from
//!   being reused, and the file would grow under writes with no reads).
//! - Dropping the last handle closes the redb transaction under the panic guard.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::cache::ValueCache;
use crate::error::{StorageError, guard};
use crate::table::Table;

pub(crate) type RoTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// One consistent state of the store. Tables open lazily, once each.
pub(crate) struct Snapshot {
    /// `Some` until drop (see `Drop`).
    txn: Option<redb::ReadTransaction>,
    tables: [OnceLock<RoTable>; 6],
    /// The store's value cache and the commit sequence this snapshot is at; `None` if a
    /// commit was published while the snapshot began (see `cache.rs`): no cache then.
    pub(crate) cache: Option<(Arc<ValueCache>, u64)>,
}

impl Snapshot {
    pub(crate) fn new(txn: redb::ReadTransaction, cache: Option<(Arc<ValueCache>, u64)>) -> Self {
        Self {
            txn: Some(txn),
            tables: Default::default(),
            cache,
        }
    }

    /// Table `t`, opened on first use. Two threads opening it at once both open it;
    /// one handle is kept (both are views of the same state).
    pub(crate) fn table(&self, t: Table) -> Result<&RoTable, StorageError> {
        let cell = &self.tables[t.index()];
        if let Some(table) = cell.get() {
            return Ok(table);
        }
        let txn = self.txn.as_ref().ok_or(StorageError::Other(
            "read transaction already closed".into(),
        ))?;
        let opened = txn.open_table(t.def()).map_err(|e| match e {
            redb::TableError::TableDoesNotExist(name) => {
                StorageError::Corrupted(format!("table '{name}' is missing"))
            }
            other => StorageError::from(other),
        })?;
        Ok(cell.get_or_init(|| opened))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // redb's handles run engine code when dropped; on a damaged file it may panic.
        let (tables, txn) = (std::mem::take(&mut self.tables), self.txn.take());
        let _ = guard(|| {
            drop(tables);
            drop(txn);
            Ok(())
        });
    }
}

/// The snapshot new readers share, if no commit was published since it began (see the
/// module's invariants).
#[derive(Default)]
pub(crate) struct Latest {
    slot: Mutex<Option<(u64, Arc<Snapshot>)>>,
}

impl Latest {
    fn locked(&self) -> std::sync::MutexGuard<'_, Option<(u64, Arc<Snapshot>)>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared snapshot, if it is still the newest state.
    pub(crate) fn get(&self, cache: &ValueCache) -> Option<Arc<Snapshot>> {
        let slot = self.locked();
        match &*slot {
            Some((at, snap)) if *at == cache.seq() => Some(Arc::clone(snap)),
            _ => None,
        }
    }

    /// Offers `snap`, begun at sequence `at`, to later readers; kept only if no commit
    /// has begun publishing since.
    pub(crate) fn offer(&self, cache: &ValueCache, at: u64, snap: &Arc<Snapshot>) {
        let old = {
            let mut slot = self.locked();
            if cache.seq() != at {
                return;
            }
            slot.replace((at, Arc::clone(snap)))
        };
        drop(old);
    }

    /// Whether a snapshot is kept, current or not (unit tests).
    #[cfg(test)]
    pub(crate) fn holds_any(&self) -> bool {
        self.locked().is_some()
    }

    /// Drops the shared snapshot (after a commit, and before the file closes). The
    /// redb transaction closes when its last reader lets go of it.
    pub(crate) fn clear(&self) {
        let old = self.locked().take();
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redb::ReadableDatabase;

    use super::Snapshot;
    use crate::{Store, StoreOptions, Table};

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::create(&dir.path().join("d.redb"), &StoreOptions::default()).expect("create")
    }

    fn put(store: &Store, v: &[u8], durable: bool) {
        let mut w = store.write().expect("write");
        w.insert(Table::Docs, b"k", v).expect("insert");
        w.commit(durable).expect("commit");
    }

    #[test]
    fn every_commit_releases_the_shared_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(&dir);
        assert!(!store.shared().latest.holds_any());
        drop(store.read().expect("read"));
        assert!(
            store.shared().latest.holds_any(),
            "a read offers its snapshot"
        );
        put(&store, b"v", false);
        assert!(
            !store.shared().latest.holds_any(),
            "a commit must not leave an older snapshot pinned"
        );
        let held = store.read().expect("read");
        put(&store, b"w", true);
        assert!(!store.shared().latest.holds_any());
        assert_eq!(
            held.get(Table::Docs, b"k").expect("get").as_deref(),
            Some(&b"v"[..])
        );
        // A transaction too large for a journal frame commits as a checkpoint.
        drop(store.read().expect("read"));
        let mut w = store.write().expect("write");
        w.insert(Table::Docs, b"big", &vec![7u8; 8 << 20])
            .expect("insert");
        w.commit(false).expect("commit");
        assert!(
            !store.shared().latest.holds_any(),
            "after a checkpoint commit"
        );
    }

    /// The two checks on the commit sequence, each on its own: a snapshot begun before
    /// a commit and offered after it (a reader slow between beginning and offering) is
    /// not kept, and a kept snapshot is not handed out once a commit has published
    /// (even one that failed before it could clear the slot).
    #[test]
    fn a_snapshot_older_than_a_commit_is_neither_kept_nor_handed_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(&dir);
        put(&store, b"1", false);
        let txn = store.shared().db().begin_read().expect("begin");
        let at = store.shared().cache.seq();
        let stale = Arc::new(Snapshot::new(txn, None));
        put(&store, b"2", false);
        let shared = store.shared();
        shared.latest.offer(&shared.cache, at, &stale);
        assert!(
            !shared.latest.holds_any(),
            "kept a snapshot older than a commit"
        );

        drop(store.read().expect("read"));
        let shared = store.shared();
        assert!(shared.latest.holds_any());
        // A publish that does not reach `latest.clear()`.
        shared.cache.publish(None, || ());
        assert!(
            shared.latest.get(&shared.cache).is_none(),
            "handed out a snapshot older than a commit"
        );
    }

    /// `&mut` access to the engine handle still means no read transaction of the
    /// store's own is open: redb's compaction runs after readers shared a snapshot.
    #[test]
    fn exclusive_access_to_the_file_drops_the_shared_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(&dir);
        put(&store, b"1", true);
        drop(store.read().expect("read"));
        let compacted = crate::error::guard(|| Ok(store.shared().db_mut().compact()?));
        assert!(compacted.is_ok(), "{compacted:?}");
        assert_eq!(
            store
                .read()
                .expect("read")
                .get(Table::Docs, b"k")
                .expect("get")
                .as_deref(),
            Some(&b"1"[..])
        );
    }
}
