//! The conflict rules of SPEC §3.2 as a merge over one document's writes.
//!
//! # Semantics
//!
//! A document's visible state is a function of the set of writes made to it, with each
//! write's causal past (its `ctx`). Writes `a`, `b` are *concurrent* when neither's
//! past contains the other. Then:
//!
//! 1. A write overwrites what its past holds: a put overwrites every field write in its
//!    past, a patch the fields it sets or unsets (causality first: rule 1).
//! 2. Of concurrent writes to one field, the one with the higher priority
//!    ([`Stamp::priority_cmp`]: server role, then later stamp, then node id) is the
//!    value; the others lost (rules 2, 3). Writes to different fields never conflict
//!    (rule 4).
//! 3. A delete is *defeated* when some concurrent non-delete write has higher priority:
//!    it then has no effect at all, and the document survives whole (rule 5). A delete
//!    that is not defeated is *effective*: every write that does not causally follow it
//!    is dead, so the document is gone until a write made after seeing the delete
//!    (a re-creation: a new life, whose put overwrites the old life entirely).
//! 4. The document exists when some non-delete write follows every effective delete.
//! 5. *Size.* The visible document is one every replica can store: its record, measured
//!    as the engine measures it (`blazedb_engine::internal::serde_fields::document_bytes`: the
//!    id, the field count, every field's name and value), is at most
//!    `DOCUMENT_BYTES_MAX`. Each write fit where it was made (the engine refuses
//!    anything larger), but fields won by different concurrent writes can together
//!    exceed it. Then the writes holding the winning values are taken in *admission
//!    order* — server-role writes first, then the earlier stamp first (then node id,
//!    then counter) — and each keeps its winning fields if the document built so far
//!    still fits with all of them; otherwise the whole write is *too large*: those
//!    fields are absent, and the write lost ([`LossReason::TooLarge`]). A write that
//!    does not fit does not stop later ones that do (each is judged on its own), so a
//!    small write is never left out for a large one's sake.
//!
//!    The order makes the first writer keep its place: of two concurrent writes that do
//!    not fit together, the one written later is the one that would overflow what the
//!    earlier one's origin already showed, so it loses (a server's write goes first,
//!    as in every conflict). A left-out write's fields are absent rather than given an
//!    older losing value, because losing values are forgotten once stable
//!    ([`DocState::collect`]) on some replicas and not others, while winners are kept
//!    everywhere: the rule reads only winners, their sizes and their stamps, so it
//!    depends only on the set of writes, whatever each replica has collected.
//!
//!    A left-out write stays in the state, and comes back if a later write makes room
//!    for it without having seen it left out (a concurrent unset of a large field). A
//!    write that *saw* it left out overwrites it: a put overwrites everything it saw,
//!    and a patch made where fields were left out also unsets them (its origin adds
//!    them, [`DocState::excluded_fields_within`]), so what a user saw absent stays
//!    absent. Hence a local write always takes effect exactly as its origin's engine
//!    stored it: everything left in the state after it is what that document held (or
//!    the write itself), and that fit.
//!
//! The result depends only on the set of writes, never on the order they arrived in:
//! that is convergence. `tests/merge_model.rs` checks this module against a direct,
//! unoptimised transcription of these rules over full histories.
//!
//! # What is retained
//!
//! A [`DocState`] keeps only the writes that can still matter. Invariants:
//! - Writes arrive in causal order per document (`apply` refuses a write whose past
//!   holds a write not yet applied here), so a write's past is known on arrival.
//! - A field assignment overwritten by a causally later write is dropped: nothing undoes
//!   a causal overwrite.
//! - A write with no assignments left is a *ghost*, kept only as a witness that can
//!   defeat a future concurrent delete; it is dropped once a causally later non-delete
//!   write of at least its role exists (that write beats every delete the ghost beats:
//!   same or higher role, later stamp, concurrent with every such delete).
//! - Deletes are kept while effective (a later concurrent write may still defeat them,
//!   reviving everything they killed, so what they killed is kept too); a defeated
//!   delete is dropped at once.
//! - `vv` covers every write applied to this document here, so re-delivery is a no-op.
//! - `horizon` covers the deletes and ghosts [`DocState::collect`] dropped. Collection
//!   assumes that every write still to come follows them, which holds for every peer
//!   the collecting node knows; a write that does not follow the horizon comes from
//!   beyond it (a peer that was unknown, or wrote before it ever synced) and cannot be
//!   judged against history that is gone. Such a write *expires*: it is not merged, on
//!   the collecting node nor on its origin (which sees the horizon in the snapshot it
//!   must take first), and its origin records the loss as
//!   [`LossReason::RetentionExpired`]. Both sides decide it from the same `horizon`
//!   and the same `ctx`, so they agree.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use blazedb_core::limits::DOCUMENT_BYTES_MAX;
use blazedb_core::{Fields, Value};
use blazedb_engine::internal::serde_fields::{document_bytes_of, field_bytes};
use serde::{Deserialize, Serialize};

use crate::clock::NodeId;
use crate::vv::{Dot, Vv};
use crate::write::{Held, LossReason, Op, Stamp, Write};

/// A retained field assignment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Slot {
    Set(#[serde(with = "blazedb_engine::internal::serde_fields::value")] Value),
    Unset,
}

impl Slot {
    fn held(&self) -> Held {
        match self {
            Slot::Set(v) => Held::Value(v.clone()),
            Slot::Unset => Held::Unset,
        }
    }
}

/// What a retained write still does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// A put or patch: its assignments not yet overwritten. `ghost` once an overwrite
    /// left it none.
    Assign {
        fields: BTreeMap<String, Slot>,
        ghost: bool,
    },
    /// An effective delete.
    Delete,
}

/// A retained write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rec {
    pub stamp: Stamp,
    pub ctx: Vv,
    pub body: Body,
    /// Local knowledge, not part of the merge: every peer has this write and every
    /// write concurrent with it has arrived here (see [`DocState::collect`]).
    pub stable: bool,
}

impl Rec {
    fn dot(&self) -> Dot {
        self.stamp.dot
    }

    /// Whether `self` was made after seeing `other`.
    fn follows(&self, other: &Rec) -> bool {
        self.ctx.covers(other.dot())
    }

    fn is_delete(&self) -> bool {
        matches!(self.body, Body::Delete)
    }
}

/// A write that lost a conflict, with the write it lost to.
#[derive(Clone, Debug, PartialEq)]
pub struct Loss {
    pub loser: Stamp,
    /// The field that lost; `None` when the whole write lost (a write killed by a
    /// concurrent delete, or a defeated delete).
    pub field: Option<String>,
    pub lost: Held,
    /// The write that won; `None` only when a state transfer showed that a delete
    /// lost but the winning write had already been pruned there.
    pub winner: Option<Stamp>,
    pub won: Option<Held>,
    pub reason: LossReason,
}

/// Why a write could not be merged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The write's past holds a write of this document not applied here yet: delivery
    /// was not causal (a protocol bug or a hostile peer). Nothing was changed.
    #[error("write {write} depends on {missing}, which has not been applied here")]
    MissingDependency { write: Dot, missing: Dot },
}

/// What applying one write did.
#[derive(Debug, Default)]
pub struct Applied {
    /// False when the write had been applied before (nothing changed).
    pub new: bool,
    /// Deletes this write defeated (dropped now; recorded by their origin).
    pub defeated: Vec<Loss>,
    /// The write came from beyond the horizon and was not merged (see the module
    /// docs); only `vv` records it, so a re-delivery is a duplicate.
    pub expired: Option<Loss>,
}

/// In a join, whether one side had dropped a record the other retains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dropped {
    No,
    /// The other side dropped it (it covers it but does not retain it).
    There,
    /// This side dropped it.
    Here,
}

/// A delete that a concurrent write defeated, kept (until stable) so that a state
/// transfer can tell the delete's origin that it lost, and to what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Defeat {
    pub loser: Stamp,
    pub winner: Stamp,
    /// Local knowledge, as [`Rec::stable`], for the loser and for the winner. The
    /// record goes only when both are stable: then every peer, the loser's origin
    /// included, has the winner and so has learned of the loss.
    pub stable: (bool, bool),
}

impl Defeat {
    fn loss(&self) -> Loss {
        Loss {
            loser: self.loser,
            field: None,
            lost: Held::Deleted,
            winner: Some(self.winner),
            won: Some(Held::Updated),
            reason: LossReason::between(&self.winner, &self.loser),
        }
    }
}

/// The retained writes of one document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocState {
    pub vv: Vv,
    pub recs: Vec<Rec>,
    /// Deletes defeated here (their records are gone), until stable.
    pub defeated: Vec<Defeat>,
    /// Per node, the latest write collected here (see the module docs).
    pub horizon: Vv,
}

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

/// The loss of a write that expired beyond the horizon.
fn expiry(stamp: Stamp, delete: bool) -> Loss {
    Loss {
        loser: stamp,
        field: None,
        lost: if delete { Held::Deleted } else { Held::Updated },
        winner: None,
        won: None,
        reason: LossReason::RetentionExpired,
    }
}

impl DocState {
    /// Merges `w` (already checked for clock drift). Idempotent.
    ///
    /// # Errors
    /// [`MergeError::MissingDependency`] if `w`'s past is not all applied here; the
    /// state is then unchanged.
    pub fn apply(&mut self, w: &Write) -> Result<Applied, MergeError> {
        if self.vv.covers(w.stamp.dot) {
            return Ok(Applied::default());
        }
        if let Some((node, counter)) = w.ctx.iter().find(|&(n, c)| self.vv.get(n) < c) {
            return Err(MergeError::MissingDependency {
                write: w.stamp.dot,
                missing: Dot { node, counter },
            });
        }
        let mut applied = Applied {
            new: true,
            ..Applied::default()
        };
        if !self.horizon.le(&w.ctx) {
            applied.expired = Some(expiry(w.stamp, matches!(w.op, Op::Delete)));
            self.vv.raise(w.stamp.dot);
            return Ok(applied);
        }
        let incoming = Rec {
            stable: false,
            stamp: w.stamp,
            ctx: w.ctx.clone(),
            body: match &w.op {
                Op::Delete => Body::Delete,
                Op::Put { fields } => Body::Assign {
                    fields: fields
                        .iter()
                        .map(|(k, v)| (k.clone(), Slot::Set(v.clone())))
                        .collect(),
                    ghost: false,
                },
                Op::Patch { set, unset } => Body::Assign {
                    fields: set
                        .iter()
                        .map(|(k, v)| (k.clone(), Slot::Set(v.clone())))
                        .chain(unset.iter().map(|k| (k.clone(), Slot::Unset)))
                        .collect(),
                    ghost: false,
                },
            },
        };
        if incoming.is_delete() {
            // Defeated on arrival by a concurrent non-delete write of higher priority?
            let beaten_by = self
                .recs
                .iter()
                .filter(|r| !r.is_delete() && !incoming.follows(r))
                .filter(|r| r.stamp.beats(&incoming.stamp))
                .max_by(|a, b| a.stamp.priority_cmp(&b.stamp));
            match beaten_by {
                Some(winner) => {
                    let d = Defeat {
                        loser: incoming.stamp,
                        winner: winner.stamp,
                        stable: (false, false),
                    };
                    applied.defeated.push(d.loss());
                    self.defeated.push(d);
                }
                None => self.recs.push(incoming),
            }
        } else {
            self.defeat_deletes(&incoming, &mut applied);
            self.overwrite_past(&incoming, &w.op);
            self.recs.push(incoming);
            self.drop_dominated_ghosts();
        }
        self.vv.raise(w.stamp.dot);
        Ok(applied)
    }

    /// Drops the effective deletes that the non-delete write `w` (concurrent with them)
    /// beats.
    fn defeat_deletes(&mut self, w: &Rec, applied: &mut Applied) {
        let mut defeats = Vec::new();
        self.recs.retain(|d| {
            let defeated = d.is_delete() && !w.follows(d) && w.stamp.beats(&d.stamp);
            if defeated {
                defeats.push(Defeat {
                    loser: d.stamp,
                    winner: w.stamp,
                    stable: (false, false),
                });
            }
            !defeated
        });
        applied.defeated.extend(defeats.iter().map(Defeat::loss));
        self.defeated.extend(defeats);
    }

    /// Drops the assignments that `w` overwrites in its past.
    fn overwrite_past(&mut self, w: &Rec, op: &Op) {
        for r in &mut self.recs {
            if !w.follows(r) {
                continue;
            }
            let Body::Assign { fields, ghost } = &mut r.body else {
                continue;
            };
            match op {
                Op::Put { .. } => fields.clear(),
                Op::Patch { set, unset } => {
                    for f in set.keys().chain(unset.iter()) {
                        fields.remove(f);
                    }
                }
                Op::Delete => {}
            }
            *ghost = fields.is_empty();
        }
    }

    /// Drops ghosts a causally later non-delete write of at least their role supersedes.
    fn drop_dominated_ghosts(&mut self) {
        let dominated: Vec<bool> = self
            .recs
            .iter()
            .map(|g| {
                matches!(g.body, Body::Assign { ghost: true, .. })
                    && self.recs.iter().any(|x| {
                        !x.is_delete()
                            && x.dot() != g.dot()
                            && x.follows(g)
                            && x.stamp.role >= g.stamp.role
                    })
            })
            .collect();
        let mut i = 0;
        self.recs.retain(|_| {
            i += 1;
            !dominated[i - 1]
        });
    }

    fn deletes(&self) -> impl Iterator<Item = &Rec> {
        self.recs.iter().filter(|r| r.is_delete())
    }

    /// Whether non-delete `r` follows every effective delete (otherwise a delete killed it).
    fn alive(&self, r: &Rec) -> bool {
        !r.is_delete() && self.deletes().all(|d| r.follows(d))
    }

    /// The winning assignment of `field` among live writes, with its write.
    fn winner(&self, field: &str) -> Option<(&Rec, &Slot)> {
        self.recs
            .iter()
            .filter(|r| self.alive(r))
            .filter_map(|r| match &r.body {
                Body::Assign { fields, .. } => fields.get(field).map(|s| (r, s)),
                Body::Delete => None,
            })
            .max_by(|a, b| a.0.stamp.priority_cmp(&b.0.stamp))
    }

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

    /// The stamp of the write that gave `field` its current value, if any (for
    /// `get --meta`).
    #[must_use]
    pub fn field_stamp(&self, field: &str) -> Option<Stamp> {
        self.winner(field).map(|(r, _)| r.stamp)
    }

    /// Merges another replica's state of the same document (state transfer, for
    /// bootstrap), as if every write either side holds had been applied here.
    ///
    /// A write both sides retain keeps the assignments both still have (a side that
    /// dropped one saw it overwritten). A write only one side retains is kept unless
    /// the other side's `vv` covers it (then that side dropped it: a dominated ghost, a
    /// defeated delete, or history collected as stable). Deletes are then checked
    /// against the concurrent writes of the other side, and ghosts for domination.
    /// Returns the deletes of this side that the other side's writes defeated.
    ///
    /// `me` is this side's node: losses of its writes that the join reveals are
    /// returned (deletes defeated here or, as the other side's record of defeats
    /// shows, there).
    ///
    /// Contract: `other` comes from a replica that has not seen this side's own writes
    /// to the document (a bootstrap: a new node's writes are sent only after it has
    /// taken the snapshot). Otherwise that replica may have pruned the evidence that
    /// one of them lost (a field overwritten after it lost), and only the losses the
    /// remaining evidence shows are reported.
    pub fn join(&mut self, other: &DocState, me: NodeId) -> Vec<Loss> {
        // Writes one side holds that come from beyond the other's horizon expire.
        let mut losses = Vec::new();
        let beyond =
            |r: &Rec, there: &DocState| !there.vv.covers(r.dot()) && !there.horizon.le(&r.ctx);
        self.recs.retain(|r| {
            let expired = beyond(r, other);
            if expired && r.stamp.node() == me {
                losses.push(expiry(r.stamp, r.is_delete()));
            }
            !expired
        });
        let fresh: Vec<&Rec> = other.recs.iter().filter(|o| !beyond(o, self)).collect();
        self.horizon.join(&other.horizon);
        // (record, whether the other side dropped it)
        // (record, which side dropped it, if one did)
        let mut recs: Vec<(Rec, Dropped)> = Vec::with_capacity(self.recs.len() + other.recs.len());
        for r in &self.recs {
            match other.recs.iter().find(|o| o.dot() == r.dot()) {
                Some(o) => {
                    let mut r = r.clone();
                    if let (
                        Body::Assign { fields, ghost },
                        Body::Assign {
                            fields: of,
                            ghost: og,
                        },
                    ) = (&mut r.body, &o.body)
                    {
                        fields.retain(|k, _| of.contains_key(k));
                        *ghost = fields.is_empty() && (*ghost || *og);
                    }
                    recs.push((r, Dropped::No));
                }
                None if other.vv.covers(r.dot()) => recs.push((r.clone(), Dropped::There)),
                None => recs.push((r.clone(), Dropped::No)),
            }
        }
        for o in fresh {
            if !self.recs.iter().any(|r| r.dot() == o.dot()) {
                let mut o = o.clone();
                o.stable = false; // the other side's knowledge, not ours
                let dropped = if self.vv.covers(o.dot()) {
                    Dropped::Here
                } else {
                    Dropped::No
                };
                recs.push((o, dropped));
            }
        }
        self.vv.join(&other.vv);
        // Deletes against the concurrent writes of the other side. A delete the other
        // side dropped was defeated there (then a retained write beats it here too) or
        // collected as stable (then none does).
        let me_beaten: Vec<Option<Stamp>> = recs
            .iter()
            .map(|(d, _)| {
                if !d.is_delete() {
                    return None;
                }
                recs.iter()
                    .map(|(r, _)| r)
                    .filter(|r| {
                        !r.is_delete() && !d.follows(r) && !r.follows(d) && r.stamp.beats(&d.stamp)
                    })
                    .max_by(|a, b| a.stamp.priority_cmp(&b.stamp))
                    .map(|r| r.stamp)
            })
            .collect();
        let mut defeats = Vec::new();
        self.recs = recs
            .into_iter()
            .zip(me_beaten)
            .filter_map(|((r, dropped), beaten)| {
                if let Some(winner) = beaten {
                    // A delete this side dropped already was judged here before.
                    if dropped != Dropped::Here
                        && !self.defeated.iter().any(|x| x.loser.dot == r.stamp.dot)
                    {
                        let d = Defeat {
                            loser: r.stamp,
                            winner,
                            stable: (false, false),
                        };
                        if r.stamp.node() == me {
                            losses.push(d.loss());
                        }
                        defeats.push(d);
                    }
                    return None;
                }
                (dropped == Dropped::No).then_some(r)
            })
            .collect();
        // Defeats the other side saw: ours among them are losses we learn now.
        for d in &other.defeated {
            if !self
                .defeated
                .iter()
                .chain(&defeats)
                .any(|x| x.loser.dot == d.loser.dot)
            {
                if d.loser.node() == me {
                    losses.push(d.loss());
                }
                defeats.push(Defeat {
                    stable: (false, false),
                    ..d.clone()
                });
            }
        }
        self.defeated.extend(defeats);
        self.drop_dominated_ghosts();
        losses
    }

    /// Marks write `dot` stable (see [`DocState::collect`]); returns whether it is
    /// retained.
    pub fn mark_stable(&mut self, dot: Dot) -> bool {
        for d in &mut self.defeated {
            if d.loser.dot == dot {
                d.stable.0 = true;
            }
            if d.winner.dot == dot {
                d.stable.1 = true;
            }
        }
        match self.recs.iter_mut().find(|r| r.dot() == dot) {
            Some(r) => {
                r.stable = true;
                true
            }
            None => false,
        }
    }

    /// Forgets what no future write can bring back, given the writes marked stable:
    /// every peer has them, and every write concurrent with them has arrived here, so
    /// any write still to come follows them.
    /// - A stable effective delete can no longer be defeated: the writes it killed are
    ///   dead for good and go, and so does the delete (every future write follows it).
    /// - A stable ghost can defeat no future delete (those all follow it): it goes.
    /// - A stable losing assignment can never win again (a future write that removes
    ///   its winner follows it too): it goes.
    ///
    /// What stays when everything is collected is `vv` alone: a compact tombstone that
    /// still refuses re-delivered old writes, and `horizon` covering the dropped
    /// deletes and ghosts: every write still to come from a known peer follows those,
    /// and one that does not is from beyond the horizon (it expires instead of being
    /// misjudged). The writes a stable delete killed need no horizon (a write that
    /// follows the delete finds them dead anyway, and one that does not already fails
    /// the delete's), nor do losing assignments (their winner stays and beats
    /// everything they would). Returns whether anything was dropped.
    pub fn collect(&mut self) -> bool {
        let before = self.recs.len() + self.defeated.len();
        self.defeated.retain(|d| d.stable != (true, true));
        let stable_deletes: Vec<Rec> = self
            .recs
            .iter()
            .filter(|d| d.is_delete() && d.stable)
            .cloned()
            .collect();
        self.recs.retain(|r| {
            if r.is_delete() {
                return !r.stable;
            }
            stable_deletes.iter().all(|d| r.follows(d))
        });
        for d in &stable_deletes {
            self.horizon.raise(d.dot());
        }
        let losing: Vec<(Dot, String)> = self
            .recs
            .iter()
            .filter(|r| r.stable && self.alive(r))
            .flat_map(|r| match &r.body {
                Body::Assign { fields, .. } => fields
                    .keys()
                    .filter(|f| self.winner(f).is_some_and(|(w, _)| w.dot() != r.dot()))
                    .map(|f| (r.dot(), f.clone()))
                    .collect::<Vec<_>>(),
                Body::Delete => Vec::new(),
            })
            .collect();
        let mut changed = self.recs.len() + self.defeated.len() != before || !losing.is_empty();
        for (dot, f) in losing {
            if let Some(Rec {
                body: Body::Assign { fields, ghost },
                ..
            }) = self.recs.iter_mut().find(|r| r.dot() == dot)
            {
                fields.remove(&f);
                *ghost = *ghost || fields.is_empty();
            }
        }
        let n = self.recs.len();
        let mut ghosts = Vec::new();
        self.recs.retain(|r| {
            let drop = r.stable && matches!(r.body, Body::Assign { ghost: true, .. });
            if drop {
                ghosts.push(r.dot());
            }
            !drop
        });
        for dot in ghosts {
            self.horizon.raise(dot);
        }
        changed |= self.recs.len() != n;
        changed
    }

    /// Whether nothing is retained (the document was never written here).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty() && self.vv.is_empty() && self.defeated.is_empty()
    }
}
