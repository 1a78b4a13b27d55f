//! The conflict rules of docs/semantics.md as a merge over one document's writes.
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

//!
//! # Rooms
//!
//! This file holds the state's types and the queries every rule shares (which writes
//! live, which wins a field); `apply.rs` the causal merge of one write (rules 1–4
//! and what is retained); `size.rs` the size rule (rule 5) and what the state shows
//! (`eval`, the losses); `join.rs` the merge of two replicas' states; `collect.rs`
//! stability and garbage collection.

mod apply;
mod collect;
mod join;
mod size;

use std::collections::BTreeMap;

use blazedb_core::Value;
use serde::{Deserialize, Serialize};

use crate::vv::{Dot, Vv};
use crate::write::{Held, LossReason, Stamp};

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
    /// The effective deletes (a defeated delete is dropped at once).
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

    /// The stamp of the write that gave `field` its current value, if any (for
    /// `get --meta`).
    #[must_use]
    pub fn field_stamp(&self, field: &str) -> Option<Stamp> {
        self.winner(field).map(|(r, _)| r.stamp)
    }

    /// Whether nothing is retained (the document was never written here).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty() && self.vv.is_empty() && self.defeated.is_empty()
    }
}
