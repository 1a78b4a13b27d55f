//! Conflicts: the conflict log, where a node keeps the losses its own writes suffered.
//!
//! Invariants:
//! - A loss (document, losing write, field) is recorded at most once, however often
//!   it is detected again: `NS_LOSS_KEY` remembers it in the same transaction.
//! - Conflict positions only grow, in the order losses were detected.

use blazedb_core::DocId;

use super::SyncNode;
use crate::backend::Tx;
use crate::error::Result;
use crate::merge::Loss;
use crate::record::{self, CONFLICTS, ConflictEntry, Meta, NS_LOSS_KEY};

impl SyncNode {
    /// Records losses not recorded before; returns how many were new.
    pub(super) fn record_losses(
        &self,
        tx: &mut Tx<'_>,
        meta: &mut Meta,
        collection: &str,
        id: DocId,
        losses: Vec<Loss>,
        now: u64,
    ) -> Result<u64> {
        let mut n = 0;
        for loss in losses {
            let key = record::encode(
                "loss key",
                &(collection, id.as_bytes(), loss.loser.dot, &loss.field),
            )?;
            if tx.aux_get(NS_LOSS_KEY, &key)?.is_some() {
                continue;
            }
            meta.conflicts_last += 1;
            let entry = ConflictEntry {
                seq: meta.conflicts_last,
                collection: collection.to_owned(),
                id,
                field: loss.field,
                loser: loss.loser,
                lost: loss.lost,
                winner: loss.winner,
                won: loss.won,
                reason: loss.reason,
                detected_us: now,
            };
            tracing::info!(
                collection,
                %id,
                field = ?entry.field,
                loser = %entry.loser.dot,
                winner = ?entry.winner.map(|w| w.dot),
                reason = %entry.reason,
                "a write lost a conflict"
            );
            tx.aux_log_put(CONFLICTS, entry.seq, &record::encode("conflict", &entry)?)?;
            tx.aux_put(NS_LOSS_KEY, &key, &entry.seq.to_be_bytes())?;
            n += 1;
        }
        Ok(n)
    }

    /// Up to `limit` entries of the conflict log after position `after`.
    ///
    /// # Errors
    /// Database errors.
    pub fn conflicts(&self, after: u64, limit: usize) -> Result<Vec<ConflictEntry>> {
        let r = self.db.begin_read()?;
        r.aux_log_range(CONFLICTS, after, limit)?
            .into_iter()
            .map(|(_, b)| record::decode("conflict", &b))
            .collect()
    }
}
