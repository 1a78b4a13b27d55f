//! The size rule (rule 5 of the module docs) and what a state shows under it: the
//! visible document, the fields left out, the losses of a node's writes.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use blazedb_core::Fields;
use blazedb_core::limits::DOCUMENT_BYTES_MAX;
use blazedb_engine::internal::serde_fields::{document_bytes_of, field_bytes};

use super::{Body, DocState, Loss, Rec, Slot};
use crate::clock::NodeId;
use crate::vv::Dot;
use crate::write::{Held, LossReason, Stamp};

/// Rules 1–4 and 5 evaluated over a state (see [`DocState::layout`]).
struct Layout<'a> {
    /// Field → its winning assignment and the write holding it.
    winners: BTreeMap<&'a str, (&'a Rec, &'a Slot)>,
    /// The writes the size rule leaves out, sorted.
    excluded: Vec<Dot>,
}

impl Layout<'_> {
    fn is_excluded(&self, dot: Dot) -> bool {
        self.excluded.binary_search(&dot).is_ok()
    }
}

/// Rule 5's admission order: server-role writes first, then the earlier stamp (then
/// node id, counter). Total: distinct writes have distinct dots.
fn admission_key(s: &Stamp) -> (Reverse<crate::clock::Role>, crate::clock::Hlc, Dot) {
    (Reverse(s.role), s.hlc, s.dot)
}

impl DocState {
    /// Every field's winning assignment among live writes, with its write (rules 1–4),
    /// and the writes whose winning values the size rule leaves out (rule 5). `None`
    /// when the document does not exist.
    fn layout(&self, max_bytes: usize) -> Option<Layout<'_>> {
        if !self.recs.iter().any(|r| self.alive(r)) {
            return None;
        }
        let mut winners: BTreeMap<&str, (&Rec, &Slot)> = BTreeMap::new();
        for r in self.recs.iter().filter(|r| self.alive(r)) {
            let Body::Assign { fields, .. } = &r.body else {
                continue;
            };
            for (name, slot) in fields {
                let best = winners.entry(name).or_insert((r, slot));
                if r.stamp.beats(&best.0.stamp) {
                    *best = (r, slot);
                }
            }
        }
        // The values each write holds, with their sizes in the engine's record.
        let mut held: BTreeMap<Dot, (&Rec, usize, usize)> = BTreeMap::new();
        let (mut count, mut bytes) = (0usize, 0usize);
        for (name, (r, slot)) in &winners {
            if let Slot::Set(v) = slot {
                let b = field_bytes(name, v);
                let e = held.entry(r.dot()).or_insert((r, 0, 0));
                e.1 += 1;
                e.2 += b;
                count += 1;
                bytes += b;
            }
        }
        let mut excluded = Vec::new();
        if document_bytes_of(count, bytes) > max_bytes {
            let mut order: Vec<(&Rec, usize, usize)> = held.into_values().collect();
            order.sort_by_key(|(r, _, _)| admission_key(&r.stamp));
            let (mut count, mut bytes) = (0usize, 0usize);
            for (r, n, b) in order {
                if document_bytes_of(count + n, bytes + b) <= max_bytes {
                    count += n;
                    bytes += b;
                } else {
                    excluded.push(r.dot());
                }
            }
            excluded.sort();
        }
        Some(Layout { winners, excluded })
    }

    /// The visible document: `None` when it does not exist (never created, or deleted).
    /// It always fits the engine's document limit (rule 5).
    #[must_use]
    pub fn eval(&self) -> Option<Fields> {
        self.eval_within(DOCUMENT_BYTES_MAX)
    }

    /// [`DocState::eval`] with another document limit (`max_bytes`, measured like
    /// `DOCUMENT_BYTES_MAX`), for models of the rules at a small scale. Replicas use
    /// [`DocState::eval`].
    #[must_use]
    pub fn eval_within(&self, max_bytes: usize) -> Option<Fields> {
        let layout = self.layout(max_bytes)?;
        let mut out = Fields::new();
        for (name, (r, slot)) in &layout.winners {
            if let Slot::Set(v) = slot
                && !layout.is_excluded(r.dot())
            {
                out.insert((*name).to_owned(), v.clone());
            }
        }
        Some(out)
    }

    /// The fields the size rule leaves out of the visible document (their winning
    /// writes are too large), sorted. A patch made here unsets them (see the module
    /// docs, rule 5).
    #[must_use]
    pub fn excluded_fields_within(&self, max_bytes: usize) -> Vec<String> {
        let Some(layout) = self.layout(max_bytes) else {
            return Vec::new();
        };
        layout
            .winners
            .iter()
            .filter(|(_, (r, slot))| matches!(slot, Slot::Set(_)) && layout.is_excluded(r.dot()))
            .map(|(name, _)| (*name).to_owned())
            .collect()
    }

    /// The current losses of `me`'s own retained writes: assignments that are not
    /// their field's value, writes killed by a concurrent delete, and winning values
    /// the size rule leaves out (one loss per field, with no winner). (Defeated deletes
    /// are reported by [`DocState::apply`], which drops them.)
    #[must_use]
    pub fn losses_of(&self, me: NodeId) -> Vec<Loss> {
        self.losses_of_within(me, DOCUMENT_BYTES_MAX)
    }

    /// [`DocState::losses_of`] with another document limit (see
    /// [`DocState::eval_within`]).
    #[must_use]
    pub fn losses_of_within(&self, me: NodeId, max_bytes: usize) -> Vec<Loss> {
        let mut out = Vec::new();
        // Every loss below is of one of `me`'s retained writes: with none retained there
        // is nothing to report, and the layout (the costly part) need not be built. This
        // is the common case of a node applying writes made elsewhere.
        if !self.recs.iter().any(|r| r.stamp.node() == me) {
            return out;
        }
        if let Some(layout) = self.layout(max_bytes) {
            for (name, (r, slot)) in &layout.winners {
                if let Slot::Set(v) = slot
                    && r.stamp.node() == me
                    && layout.is_excluded(r.dot())
                {
                    out.push(Loss {
                        loser: r.stamp,
                        field: Some((*name).to_owned()),
                        lost: Held::Value(v.clone()),
                        winner: None,
                        won: None,
                        reason: LossReason::TooLarge,
                    });
                }
            }
        }
        for r in self.recs.iter().filter(|r| r.stamp.node() == me) {
            let Body::Assign { fields, ghost } = &r.body else {
                continue;
            };
            if !*ghost {
                let killer = self
                    .deletes()
                    .filter(|d| !r.follows(d) && !d.follows(r))
                    .max_by(|a, b| a.stamp.priority_cmp(&b.stamp));
                if let Some(d) = killer {
                    out.push(Loss {
                        loser: r.stamp,
                        field: None,
                        lost: Held::Updated,
                        winner: Some(d.stamp),
                        won: Some(Held::Deleted),
                        reason: LossReason::between(&d.stamp, &r.stamp),
                    });
                    continue;
                }
            }
            if !self.alive(r) {
                continue;
            }
            for (name, slot) in fields {
                if let Some((w, won)) = self.winner(name)
                    && w.dot() != r.dot()
                {
                    out.push(Loss {
                        loser: r.stamp,
                        field: Some(name.clone()),
                        lost: slot.held(),
                        winner: Some(w.stamp),
                        won: Some(won.held()),
                        reason: LossReason::between(&w.stamp, &r.stamp),
                    });
                }
            }
        }
        out
    }
}
