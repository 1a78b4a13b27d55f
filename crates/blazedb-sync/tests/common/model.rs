//! The reference model of SPEC §3.2: a direct transcription of the rules over *full*
//! histories (every write with the explicit set of writes its origin had seen; no
//! pruning, no version vectors), independent of the merge's own code paths.

use std::collections::{BTreeMap, BTreeSet};

use blazedb_core::{Fields, Value};
use blazedb_sync::{Dot, Op, Role, Stamp};

/// The fields the generated histories write.
pub const FIELDS: [&str; 3] = ["a", "b", "c"];

/// A write with its full causal past (the dots of this document's writes its origin
/// had received).
#[derive(Clone, Debug)]
pub struct MWrite {
    pub stamp: Stamp,
    pub past: BTreeSet<Dot>,
    pub op: Op,
}

impl MWrite {
    pub fn dot(&self) -> Dot {
        self.stamp.dot
    }
    pub fn is_delete(&self) -> bool {
        matches!(self.op, Op::Delete)
    }
    pub fn after(&self, other: &MWrite) -> bool {
        self.past.contains(&other.dot())
    }
    pub fn concurrent(&self, other: &MWrite) -> bool {
        !self.after(other) && !other.after(self)
    }
    /// What the write assigns: field → Some(value) or None (unset).
    pub fn assigns(&self) -> BTreeMap<String, Option<Value>> {
        match &self.op {
            Op::Put { fields } => fields
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
            Op::Patch { set, unset } => set
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .chain(unset.iter().map(|k| (k.clone(), None)))
                .collect(),
            Op::Delete => BTreeMap::new(),
        }
    }
}

/// Rules 2 and 3, written out independently of `Stamp::priority_cmp`: a server-role
/// write beats a client-role one; within a role the later clock reading wins; equal
/// readings go to the larger node id.
pub fn beats(a: &Stamp, b: &Stamp) -> bool {
    if a.role != b.role {
        return a.role == Role::Server;
    }
    if a.hlc != b.hlc {
        return a.hlc > b.hlc;
    }
    a.dot.node > b.dot.node
}

/// The rules, evaluated naively over a history of one document.
pub struct Model<'a> {
    pub h: &'a [MWrite],
}

impl Model<'_> {
    /// Rule 5: a delete is defeated by any concurrent non-delete write of higher
    /// priority.
    pub fn defeated(&self, d: &MWrite) -> bool {
        self.h
            .iter()
            .any(|w| !w.is_delete() && w.concurrent(d) && beats(&w.stamp, &d.stamp))
    }
    pub fn effective(&self) -> Vec<&MWrite> {
        self.h
            .iter()
            .filter(|d| d.is_delete() && !self.defeated(d))
            .collect()
    }
    /// Killed: an effective delete saw it, or is concurrent with it.
    pub fn killed(&self, r: &MWrite) -> bool {
        self.effective()
            .iter()
            .any(|d| d.after(r) || d.concurrent(r))
    }
    pub fn killed_concurrently(&self, r: &MWrite) -> bool {
        self.effective().iter().any(|d| d.concurrent(r))
    }
    /// Rule 1: a later write overwrites what it saw (a put: everything; a patch: its
    /// fields).
    pub fn overwritten(&self, r: &MWrite, field: &str) -> bool {
        self.h.iter().any(|x| {
            !x.is_delete()
                && x.after(r)
                && (matches!(x.op, Op::Put { .. }) || x.assigns().contains_key(field))
        })
    }
    pub fn candidates(&self, field: &str) -> Vec<&MWrite> {
        self.h
            .iter()
            .filter(|r| !r.is_delete() && !self.killed(r))
            .filter(|r| r.assigns().contains_key(field) && !self.overwritten(r, field))
            .collect()
    }
    /// Rules 2 and 3 among the remaining (mutually concurrent) candidates.
    pub fn winner(&self, field: &str) -> Option<&MWrite> {
        let all = self.candidates(field);
        all.iter()
            .find(|w| {
                all.iter()
                    .all(|o| o.dot() == w.dot() || beats(&w.stamp, &o.stamp))
            })
            .copied()
    }
    pub fn eval(&self) -> Option<Fields> {
        if !self.h.iter().any(|r| !r.is_delete() && !self.killed(r)) {
            return None;
        }
        let mut out = Fields::new();
        for f in FIELDS {
            if let Some(Some(v)) = self.winner(f).and_then(|w| w.assigns().get(f).cloned()) {
                out.insert(f.to_owned(), v);
            }
        }
        Some(out)
    }
    /// A write that was made, then entirely overwritten by writes made after it.
    pub fn superseded(&self, r: &MWrite) -> bool {
        self.h.iter().any(|x| !x.is_delete() && x.after(r))
            && r.assigns().keys().all(|f| self.overwritten(r, f))
    }
    /// Every loss in the final state: (loser, field or None for the whole write).
    pub fn losses(&self) -> BTreeSet<(Dot, Option<String>)> {
        let mut out = BTreeSet::new();
        for w in self.h {
            if w.is_delete() {
                if self.defeated(w) {
                    out.insert((w.dot(), None));
                }
                continue;
            }
            if self.killed_concurrently(w) && !self.superseded(w) {
                out.insert((w.dot(), None));
            } else if !self.killed(w) {
                for f in w.assigns().keys() {
                    if !self.overwritten(w, f) && self.winner(f).map(MWrite::dot) != Some(w.dot()) {
                        out.insert((w.dot(), Some(f.clone())));
                    }
                }
            }
        }
        out
    }
}
