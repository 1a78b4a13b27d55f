//! Batches from several sessions applied in one transaction: while one session's
//! thread applies, the batches other sessions hand in meanwhile wait, and the next of
//! their threads to run applies all of them together (one absorb, one metadata save,
//! one commit and its sync, instead of one per session).
//!
//! Invariants:
//! - A round is one transaction over parts of distinct peers (the leader's first, then
//!   the others in the order they were handed in): the same as one transaction per
//!   part, one after the other (each part's batches continue its own session's cursor,
//!   which only its session moves; parts of distinct peers commute).
//! - A part is reported applied only once its round's transaction committed durably,
//!   and only that round applies it. If the round fails (an error, or a panic anywhere
//!   in it), every part goes back to its session unapplied, which then handles its
//!   batches one by one, so the failure is answered for the batch that caused it and
//!   the others still apply. Nothing was applied then, except in one case: a panic
//!   after the commit (a commit hook's). That round's writes are committed, and the
//!   sessions' second attempt finds them as duplicates: nothing is applied twice, and
//!   a batch is still acknowledged only after a durable commit.
//! - One thread leads at a time; the others wait for their part's outcome. The leader
//!   only ever waits for the database, never for a waiting thread, and it hands its
//!   role on when its round is done: nothing unwinds out of a round. The queue is
//!   bounded by the sessions (each hands in one part at a time) and taken oldest
//!   first, so no part waits forever.
//! - A round holds at most [`ROUND_BATCHES_MAX`] batches, beyond the leader's own part,
//!   which it always takes.
//!
//! What a hostile peer with valid credentials gains: a batch that passes its check and
//! fails in the transaction (a write whose past is missing here) fails its round, so the
//! other parts of that round are applied again alone. That costs them one transaction
//! each, once; the failure is fatal to the hostile session (a protocol error), so every
//! further attempt costs it a new connection and its authentication.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::{BatchReport, SyncNode};
use crate::clock::{NodeId, Role};
use crate::position::LogPos;
use crate::record::Item;

/// Most batches in one round: with `BATCH_BYTES_MAX` per batch, a transaction of at
/// most ~16 MiB of writes.
pub const ROUND_BATCHES_MAX: usize = 16;

/// One peer's consecutive batches (each `(items, upto)`, in the order of its log),
/// owned, as a session hands them in.
#[derive(Debug)]
pub struct Part {
    pub peer: NodeId,
    pub role: Role,
    pub batches: Vec<(Vec<Item>, LogPos)>,
}

/// One part of a transaction, borrowed (what [`SyncNode::apply_parts`] takes).
pub(crate) struct PartRef<'a> {
    pub peer: NodeId,
    pub role: Role,
    pub batches: &'a [(&'a [Item], LogPos)],
}

/// The queue of parts handed in and not yet given back (one per node).
#[derive(Default)]
pub(crate) struct Combiner {
    state: Mutex<Queue>,
    /// Signalled when a round ends.
    turn: Condvar,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    waiting: Vec<(u64, Part)>,
    done: Vec<(u64, Part, Option<BatchReport>)>,
    leading: bool,
}

impl Combiner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The parts of the next round: `own` first, then the others in the order they came,
/// one per peer, within [`ROUND_BATCHES_MAX`].
fn take_round(waiting: &mut Vec<(u64, Part)>, own: u64) -> Vec<(u64, Part)> {
    let mut round: Vec<(u64, Part)> = Vec::new();
    if let Some(i) = waiting.iter().position(|(t, _)| *t == own) {
        round.push(waiting.remove(i));
    }
    let mut batches = round.iter().map(|(_, p)| p.batches.len()).sum::<usize>();
    let mut i = 0;
    while i < waiting.len() {
        let part = &waiting[i].1;
        if batches + part.batches.len() <= ROUND_BATCHES_MAX
            && round.iter().all(|(_, p)| p.peer != part.peer)
        {
            batches += part.batches.len();
            round.push(waiting.remove(i));
        } else {
            i += 1;
        }
    }
    round
}

impl SyncNode {
    /// Applies `part` (batches its session checked as [`SyncNode::apply_batches`]
    /// would apply them), in one transaction with the parts other sessions hand in
    /// meanwhile. Gives the part back with its report if it was applied, or with
    /// `None` if it was not (its own check failed, or the transaction did): nothing of
    /// it was applied then, and the caller applies its batches one by one to find and
    /// answer the failure.
    pub fn apply_combined(&self, part: Part) -> (Part, Option<BatchReport>) {
        let c = &self.combiner;
        let mut q = c.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push((ticket, part));
        loop {
            if let Some(i) = q.done.iter().position(|(t, _, _)| *t == ticket) {
                let (_, part, report) = q.done.swap_remove(i);
                return (part, report);
            }
            if q.leading {
                q = c.turn.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            q.leading = true;
            let round = take_round(&mut q.waiting, ticket);
            drop(q);
            let outcome = self.apply_round(round);
            q = c.lock();
            q.done.extend(outcome);
            q.leading = false;
            c.turn.notify_all();
        }
    }

    /// One round's transaction; every part comes back, with its report if applied.
    /// Nothing unwinds out of it (a panic is a failed round), so the leader always
    /// hands its role on.
    fn apply_round(&self, round: Vec<(u64, Part)>) -> Vec<(u64, Part, Option<BatchReport>)> {
        let reports =
            catch_unwind(AssertUnwindSafe(|| self.try_round(&round))).unwrap_or_else(|_| {
                tracing::error!(
                    parts = round.len(),
                    "a combined apply panicked; its parts apply alone"
                );
                vec![None; round.len()]
            });
        round
            .into_iter()
            .zip(reports)
            .map(|((t, p), r)| (t, p, r))
            .collect()
    }

    /// The reports of [`SyncNode::apply_round`], one per part.
    fn try_round(&self, round: &[(u64, Part)]) -> Vec<Option<BatchReport>> {
        let now = self.now_us();
        let borrowed: Vec<Vec<(&[Item], LogPos)>> = round
            .iter()
            .map(|(_, p)| p.batches.iter().map(|(i, u)| (i.as_slice(), *u)).collect())
            .collect();
        // A part whose check fails stays out of the transaction (not applied).
        let checked: Vec<bool> = round
            .iter()
            .zip(&borrowed)
            .map(|((_, p), b)| self.check_part(p.peer, p.role, b, now).is_ok())
            .collect();
        let parts: Vec<PartRef<'_>> = round
            .iter()
            .zip(&borrowed)
            .zip(&checked)
            .filter(|(_, ok)| **ok)
            .map(|(((_, p), b), _)| PartRef {
                peer: p.peer,
                role: p.role,
                batches: b,
            })
            .collect();
        if parts.is_empty() {
            return vec![None; round.len()];
        }
        match self.apply_parts(&parts, now) {
            Ok(reports) => {
                let mut reports = reports.into_iter();
                checked
                    .iter()
                    .map(|ok| if *ok { reports.next() } else { None })
                    .collect()
            }
            Err(e) => {
                tracing::debug!(parts = parts.len(), error = %e, "a combined apply failed; its parts apply alone");
                vec![None; round.len()]
            }
        }
    }
}

#[cfg(test)]
#[path = "combine_tests.rs"]
mod with_nodes;

#[cfg(test)]
mod tests {
    use super::*;

    fn part(peer: u8, batches: usize) -> Part {
        Part {
            peer: NodeId(u64::from(peer)),
            role: Role::Client,
            batches: (0..batches)
                .map(|i| (Vec::new(), LogPos::new(i as u64 + 1)))
                .collect(),
        }
    }

    fn tickets(round: &[(u64, Part)]) -> Vec<u64> {
        round.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn a_round_takes_its_leader_first_then_one_part_per_peer_in_order_within_the_bound() {
        let mut waiting = vec![
            (0, part(1, 2)),
            (1, part(2, 8)),
            (2, part(1, 1)),
            (3, part(3, 8)),
            (4, part(4, 6)),
            (5, part(5, 1)),
        ];
        // The leader (ticket 4) first, then 0 and 1 (16 batches in all); ticket 2 is a
        // second part of peer 1, tickets 3 and 5 would go over the bound.
        let round = take_round(&mut waiting, 4);
        assert_eq!(tickets(&round), vec![4, 0, 1]);
        assert_eq!(tickets(&waiting), vec![2, 3, 5]);
        let round = take_round(&mut waiting, 5);
        assert_eq!(tickets(&round), vec![5, 2, 3]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn the_leaders_own_part_is_taken_even_beyond_the_bound() {
        let mut waiting = vec![(0, part(1, 1)), (1, part(2, ROUND_BATCHES_MAX + 4))];
        let round = take_round(&mut waiting, 1);
        assert_eq!(tickets(&round), vec![1]);
        assert_eq!(tickets(&waiting), vec![0]);
    }
}
