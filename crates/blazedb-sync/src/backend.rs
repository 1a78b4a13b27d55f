//! Where a [`crate::SyncNode`] keeps its state: the storage operations its transactions
//! use, behind two object-safe traits, so the one implementation of the sync rules
//! (`node/`, proven by the simulation) runs on any store that gives these guarantees:
//!
//! - [`NodeDb::begin_apply`] starts the only write transaction at a time: a second one
//!   waits until the first committed or was dropped (the embedded engine's writer lock;
//!   a shared store takes a lock that every process honours). Everything the node
//!   keeps — merge states, the log, cursors, the clock — is read and written inside it,
//!   so log positions are assigned in commit order with no gap a reader could see.
//! - A transaction dropped without [`NodeTx::commit`] leaves nothing behind;
//!   `commit` returns once the transaction is as durable as its [`Durability`] asks.
//! - [`NodeDb::begin_read`] sees one committed state, unchanged while it is held.
//!
//! The embedded implementation is the engine's own transactions (the engine seals
//! every record); documents and the change log of local writes exist only there: a
//! store without local writes reports an empty change log.

use blazedb_core::{DocId, Document, Result};
use blazedb_engine::internal::{SyncDatabase, SyncRead, SyncWrite};
use blazedb_engine::{Change, Database, Durability, IndexNote, ReadTxn, WriteTxn};

use crate::store::CommitSignal;

/// A node's storage: its transactions.
pub trait NodeDb: Send + Sync + 'static {
    /// A snapshot of the committed state.
    ///
    /// # Errors
    /// Storage errors.
    fn begin_read(&self) -> Result<Box<dyn NodeRead + '_>>;
    /// The write transaction (waits for the one in progress, if any).
    ///
    /// # Errors
    /// Storage errors.
    fn begin_apply(&self) -> Result<Box<dyn NodeTx + '_>>;
    /// Wakes sessions on commits that give them something to send.
    ///
    /// # Errors
    /// Storage errors.
    fn commit_signal(&self) -> Result<CommitSignal>;
    /// The embedded database, for a node kept in one.
    fn engine(&self) -> Option<&Database>;
}

/// Reads of one committed state.
pub trait NodeRead {
    /// The record `key` of namespace `ns`.
    ///
    /// # Errors
    /// Storage errors.
    fn aux_get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Every record of namespace `ns`, sorted by key.
    ///
    /// # Errors
    /// Storage errors.
    fn aux_scan(&self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Up to `limit` entries of log `ns` after position `after`, in order.
    ///
    /// # Errors
    /// Storage errors.
    fn aux_log_range(&self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    /// The newest change-log sequence number of local writes (0: none ever).
    ///
    /// # Errors
    /// Storage errors.
    fn last_seq(&self) -> Result<u64>;
}

/// The write transaction: what [`NodeRead`] reads as this transaction sees it, and the
/// writes. Documents and the change log are the embedded database's (see the module
/// docs).
#[allow(clippy::missing_errors_doc)] // every method: storage errors
pub trait NodeTx {
    fn set_durability(&mut self, durability: Durability);
    fn commit(self: Box<Self>) -> Result<()>;
    fn aux_get(&mut self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Says that records `wanted` (namespace, key) are about to be read: a store with a
    /// round trip per read fetches them together (the embedded database needs nothing).
    fn prefetch(&mut self, _wanted: &[(&str, Vec<u8>)]) -> Result<()> {
        Ok(())
    }
    fn aux_scan(&mut self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    fn aux_put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()>;
    fn aux_remove(&mut self, ns: &str, key: &[u8]) -> Result<bool>;
    fn aux_log_put(&mut self, ns: &str, seq: u64, value: &[u8]) -> Result<()>;
    fn aux_log_remove(&mut self, ns: &str, from: u64, upto: u64) -> Result<u64>;
    fn aux_log_range(&mut self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    /// Marks the commit as one that gives sessions something to send.
    fn signal_listeners(&mut self);
    /// The newest change-log sequence number of local writes.
    fn last_seq(&self) -> u64;
    fn changes_after(&mut self, after: u64, limit: usize) -> Result<Vec<Change>>;
    fn prune_changes(&mut self, upto: u64, max: usize) -> Result<u64>;
    fn enable_change_capture(&mut self) -> Result<()>;
    fn collections(&mut self) -> Result<Vec<String>>;
    fn all(&mut self, collection: &str) -> Result<Vec<Document>>;
    fn get(&mut self, collection: &str, id: DocId) -> Result<Option<Document>>;
    fn delete(&mut self, collection: &str, id: DocId) -> Result<()>;
    fn put_merged(&mut self, collection: &str, doc: Document) -> Result<Vec<IndexNote>>;
}

/// The embedded database as a node's storage.
#[derive(Clone)]
pub struct EngineDb(pub Database);

impl NodeDb for EngineDb {
    fn begin_read(&self) -> Result<Box<dyn NodeRead + '_>> {
        Ok(Box::new(self.0.begin_read()?))
    }

    fn begin_apply(&self) -> Result<Box<dyn NodeTx + '_>> {
        Ok(Box::new(self.0.begin_apply()?))
    }

    /// Commits that give sessions something to send: local writes to take over, or a
    /// grown sync log (`node/log.rs` marks every commit that appends). Commits that
    /// only move cursors or acknowledgments wake no one: on a server with N clients
    /// each acknowledgment would otherwise wake all N sessions to read the database
    /// and find nothing. One hook per call (a hub calls once, however many sessions
    /// listen).
    fn commit_signal(&self) -> Result<CommitSignal> {
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let hook = self.0.on_commit(move |c| {
            if c.local_changes || c.signaled {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        })?;
        Ok(CommitSignal::new(rx, Box::new(hook)))
    }

    fn engine(&self) -> Option<&Database> {
        Some(&self.0)
    }
}

impl NodeRead for ReadTxn {
    fn aux_get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        SyncRead::aux_get(self, ns, key)
    }
    fn aux_scan(&self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        SyncRead::aux_scan(self, ns)
    }
    fn aux_log_range(&self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        SyncRead::aux_log_range(self, ns, after, limit)
    }
    fn last_seq(&self) -> Result<u64> {
        ReadTxn::last_seq(self)
    }
}

impl NodeTx for WriteTxn<'_> {
    fn set_durability(&mut self, durability: Durability) {
        WriteTxn::set_durability(self, durability);
    }
    fn commit(self: Box<Self>) -> Result<()> {
        WriteTxn::commit(*self)
    }
    fn aux_get(&mut self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        SyncWrite::aux_get(self, ns, key)
    }
    fn aux_scan(&mut self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        SyncWrite::aux_scan(self, ns)
    }
    fn aux_put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()> {
        SyncWrite::aux_put(self, ns, key, value)
    }
    fn aux_remove(&mut self, ns: &str, key: &[u8]) -> Result<bool> {
        SyncWrite::aux_remove(self, ns, key)
    }
    fn aux_log_put(&mut self, ns: &str, seq: u64, value: &[u8]) -> Result<()> {
        SyncWrite::aux_log_put(self, ns, seq, value)
    }
    fn aux_log_remove(&mut self, ns: &str, from: u64, upto: u64) -> Result<u64> {
        SyncWrite::aux_log_remove(self, ns, from, upto)
    }
    fn aux_log_range(&mut self, ns: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        SyncWrite::aux_log_range(self, ns, after, limit)
    }
    fn signal_listeners(&mut self) {
        SyncWrite::signal_listeners(self);
    }
    fn last_seq(&self) -> u64 {
        WriteTxn::last_seq(self)
    }
    fn changes_after(&mut self, after: u64, limit: usize) -> Result<Vec<Change>> {
        WriteTxn::changes_after(self, after, limit)
    }
    fn prune_changes(&mut self, upto: u64, max: usize) -> Result<u64> {
        SyncWrite::prune_changes(self, upto, max)
    }
    fn enable_change_capture(&mut self) -> Result<()> {
        SyncWrite::enable_change_capture(self)
    }
    fn collections(&mut self) -> Result<Vec<String>> {
        WriteTxn::collections(self)
    }
    fn all(&mut self, collection: &str) -> Result<Vec<Document>> {
        WriteTxn::all(self, collection)
    }
    fn get(&mut self, collection: &str, id: DocId) -> Result<Option<Document>> {
        WriteTxn::get(self, collection, id)
    }
    fn delete(&mut self, collection: &str, id: DocId) -> Result<()> {
        WriteTxn::delete(self, collection, id)
    }
    fn put_merged(&mut self, collection: &str, doc: Document) -> Result<Vec<IndexNote>> {
        SyncWrite::put_merged(self, collection, doc)
    }
}

/// The write transaction as the node's functions take it.
pub type Tx<'a> = dyn NodeTx + 'a;
/// A read snapshot as the node's functions take it.
pub type Snap<'a> = dyn NodeRead + 'a;
