//! Absorb: local writes taken over from the engine's change log, stamped and logged.
//!
//! Invariants:
//! - Local writes are absorbed in change-log order, each exactly once: `Meta::absorbed`
//!   moves past a change in the transaction that logs its write, and the change log is
//!   pruned only up to it.
//! - A batch or snapshot absorbs first, before any remote write is applied in the same
//!   transaction, so each local write's causal context is exactly what its writer saw.
//! - Local-only fields never enter a write (`strip_local`); a change of nothing else
//!   makes no write.

use blazedb_core::DocId;
use blazedb_core::limits::DOCUMENT_BYTES_MAX;
use blazedb_engine::ChangeOp;

use super::{States, SyncNode};
use crate::backend::Tx;
use crate::error::Result;
use crate::record;
use crate::record::{Item, Meta};
use crate::vv::Dot;
use crate::write::{Op, Stamp, Write};

/// Change-log entries taken over per read.
const ABSORB_CHUNK: usize = 1_000;
/// Most change-log entries pruned in one transaction.
const PRUNE_MAX: usize = 100_000;

impl SyncNode {
    /// The documents present before sync was first enabled become this node's writes.
    pub(super) fn adopt_existing(&self, tx: &mut Tx<'_>, meta: &mut Meta) -> Result<()> {
        let mut states = States::default();
        let now = self.now_us();
        for collection in tx.collections()? {
            for doc in tx.all(&collection)? {
                let op = Op::Put { fields: doc.fields };
                self.originate(tx, meta, &mut states, &collection, doc.id, op, now)?;
            }
        }
        states.save(tx, meta)
    }

    /// `op` without its local-only fields; `None` if nothing is left to sync.
    fn strip_local(&self, op: Op) -> Option<Op> {
        let local = &self.opts.local_fields;
        if local.is_empty() {
            return Some(op);
        }
        match op {
            Op::Put { mut fields } => {
                fields.retain(|k, _| !local.contains(k));
                Some(Op::Put { fields })
            }
            Op::Patch { mut set, mut unset } => {
                set.retain(|k, _| !local.contains(k));
                unset.retain(|k| !local.contains(k));
                (!set.is_empty() || !unset.is_empty()).then_some(Op::Patch { set, unset })
            }
            Op::Delete => Some(Op::Delete),
        }
    }

    /// Stamps and logs one local write.
    #[allow(clippy::too_many_arguments)]
    fn originate(
        &self,
        tx: &mut Tx<'_>,
        meta: &mut Meta,
        states: &mut States,
        collection: &str,
        id: DocId,
        op: Op,
        at_us: u64,
    ) -> Result<()> {
        let Some(op) = self.strip_local(op) else {
            return Ok(()); // a change of local-only fields: nothing to sync
        };
        let key = record::doc_key(collection, id);
        let state = states.get(tx, &key)?;
        let op = match op {
            // What the size rule leaves out here, this document did not show: the patch
            // overwrites that absence too, so it stays (see `merge`, rule 5).
            Op::Patch { set, mut unset } => {
                for f in state.excluded_fields_within(DOCUMENT_BYTES_MAX) {
                    if !set.contains_key(&f)
                        && !unset.contains(&f)
                        && !self.opts.local_fields.contains(&f)
                    {
                        unset.push(f);
                    }
                }
                Op::Patch { set, unset }
            }
            op => op,
        };
        meta.counter += 1;
        let stamp = Stamp {
            dot: Dot {
                node: self.node,
                counter: meta.counter,
            },
            hlc: meta.clock.tick(at_us),
            role: self.role,
        };
        let write = Write {
            collection: collection.to_owned(),
            id,
            stamp,
            ctx: state.vv.clone(),
            op,
        };
        // A local write follows everything this node holds: it always applies.
        state.apply(&write)?;
        self.append_log(tx, meta, None, Item::Write(write))
    }

    /// Takes over the local writes committed since the last time.
    pub(super) fn absorb_in(
        &self,
        tx: &mut Tx<'_>,
        meta: &mut Meta,
        states: &mut States,
    ) -> Result<u64> {
        let mut n = 0;
        loop {
            let changes = tx.changes_after(meta.absorbed, ABSORB_CHUNK)?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                break;
            };
            for c in changes {
                let op = match c.op {
                    ChangeOp::Insert { fields } | ChangeOp::Replace { fields } => {
                        Op::Put { fields }
                    }
                    ChangeOp::Update { set, unset } => Op::Patch { set, unset },
                    ChangeOp::Delete => Op::Delete,
                };
                let at = if self.opts.advanced.stamp_with_write_time {
                    u64::try_from(c.at.as_micros()).unwrap_or(0)
                } else {
                    self.now_us()
                };
                self.originate(tx, meta, states, &c.collection, c.id, op, at)?;
                n += 1;
            }
            meta.absorbed = last;
        }
        if n > 0 {
            tx.prune_changes(meta.absorbed, PRUNE_MAX)?;
        }
        Ok(n)
    }

    /// Takes over local writes committed since the last call (they then reach peers).
    /// Returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub fn absorb(&self) -> Result<u64> {
        if !self.has_local_writes() || self.db.begin_read()?.last_seq()? <= self.absorbed()? {
            return Ok(0);
        }
        let (mut tx, mut meta) = self.begin()?;
        let mut states = States::default();
        let n = self.absorb_in(&mut *tx, &mut meta, &mut states)?;
        if n == 0 {
            return Ok(0);
        }
        self.finish(tx, &mut meta, states)?;
        Ok(n)
    }

    fn absorbed(&self) -> Result<u64> {
        let r = self.db.begin_read()?;
        Ok(record::load_meta(&mut &*r)?.map_or(0, |m| m.absorbed))
    }

    /// How many local writes are committed but not yet taken over by sync.
    ///
    /// # Errors
    /// Database errors.
    pub fn unabsorbed(&self) -> Result<u64> {
        if !self.has_local_writes() {
            return Ok(0);
        }
        Ok(self
            .db
            .begin_read()?
            .last_seq()?
            .saturating_sub(self.absorbed()?))
    }

    /// Whether local writes are waiting to be absorbed.
    ///
    /// # Errors
    /// Database errors.
    pub fn has_unabsorbed(&self) -> Result<bool> {
        Ok(self.has_local_writes() && self.db.begin_read()?.last_seq()? > self.absorbed()?)
    }

    /// Whether the node's store takes local writes at all (only an embedded database
    /// does: a store shared by server processes has no change log, and asking would
    /// cost it round trips on every send cycle).
    fn has_local_writes(&self) -> bool {
        self.db.engine().is_some()
    }
}
