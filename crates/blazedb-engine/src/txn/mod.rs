//! Transactions: [`ReadTxn`] (snapshot) and [`WriteTxn`] (the single writer, with change
//! capture).
//!
//! Invariant: a write either fails before touching storage (validation, not found,
//! already exists: the transaction stays usable), or its document and change-log entry
//! are both written. A storage failure in the middle poisons the transaction: `commit`
//! then refuses, so a half-applied write can never be committed.
//!
//! The two types are defined here, so that every room below sees their fields; each
//! room holds one job:
//! - `read`: reads and queries in a snapshot;
//! - `write`: the writer's life — begin, storage mutations, poisoning, commit;
//! - `store`: how one document write is stored (catalog entry, sealing, change entry,
//!   index changes, live events);
//! - `documents`: the document operations of the writer (insert, put, patch, delete…);
//! - `change_log`: reading and pruning the change log, from either kind of transaction;
//! - `indexes`: create, drop and list indexes (the work is the index module's);
//! - `patch`: [`Patch`].

use std::collections::HashSet;

use blazedb_storage::{ReadTx, WriteTx};

use crate::codec::CountersRecord;
use crate::handle::Database;
use crate::index::maintain::IndexCache;
use crate::options::Durability;
use crate::poison::Poison;
use crate::vault::CollTag;

mod change_log;
mod documents;
mod indexes;
mod patch;
mod queries;
mod read;
mod store;
mod write;

pub use patch::Patch;

/// A consistent snapshot. Never blocks writers and is never blocked by them.
pub struct ReadTxn {
    db: Database,
    tx: ReadTx,
}

/// The write transaction. Commit with [`WriteTxn::commit`]; dropping it rolls back.
pub struct WriteTxn<'db> {
    db: &'db Database,
    tx: WriteTx<'db>,
    counters: CountersRecord,
    first_seq: u64,
    capture: bool,
    durability: Durability,
    known_collections: HashSet<CollTag>,
    writes: usize,
    /// Set when a write failed after touching storage: every later write and the
    /// commit are refused.
    poisoned: Option<Poison>,
    indexes: IndexCache,
    /// Whether live subscribers existed when the transaction began: then each write is
    /// recorded (before/after) for delivery at commit.
    watch: bool,
    written: Vec<crate::live::Written>,
    /// Marked by the layer above for its commit hooks (`Committed::signaled`).
    signal: bool,
}
