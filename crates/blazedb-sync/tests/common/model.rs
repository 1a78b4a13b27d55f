//! The reference model of docs/semantics.md: a direct transcription of the rules over *full*
//! histories (every write with the explicit set of writes its origin had seen; no
//! pruning, no version vectors), independent of the merge's own code paths; with the
//! size rule (`merge`'s module docs, rule 5) over a document limit of the model's own,
//! measuring whole documents with the engine's `document_bytes` at each step.

use std::collections::BTreeSet;

use blazedb_core::{Fields, Value};
use blazedb_engine::internal::serde_fields::document_bytes;
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
    /// What the write assigns to `field`: `Some(Some(value))`, `Some(None)` (unset) or
    /// `None` (nothing). Borrowed: values may be megabytes.
    pub fn assigned(&self, field: &str) -> Option<Option<&Value>> {
        match &self.op {
            Op::Put { fields } => fields.get(field).map(Some),
            Op::Patch { set, unset } => set
                .get(field)
                .map(Some)
                .or_else(|| unset.iter().any(|u| u == field).then_some(None)),
            Op::Delete => None,
        }
    }
    /// The fields the write assigns (set or unset).
    pub fn assigned_fields(&self) -> BTreeSet<&str> {
        match &self.op {
            Op::Put { fields } => fields.keys().map(String::as_str).collect(),
            Op::Patch { set, unset } => set
                .keys()
                .map(String::as_str)
                .chain(unset.iter().map(String::as_str))
                .collect(),
            Op::Delete => BTreeSet::new(),
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

/// Rule 5's order, written out independently of the merge: server-role writes first;
/// within a role the earlier clock reading, then the smaller node id, then the smaller
/// counter.
pub fn admitted_before(a: &Stamp, b: &Stamp) -> bool {
    if a.role != b.role {
        return a.role == Role::Server;
    }
    if a.hlc != b.hlc {
        return a.hlc < b.hlc;
    }
    if a.dot.node != b.dot.node {
        return a.dot.node < b.dot.node;
    }
    a.dot.counter < b.dot.counter
}

/// The rules, evaluated naively over a history of one document, for documents of at
/// most `max_bytes` (as the engine measures them).
pub struct Model<'a> {
    pub h: &'a [MWrite],
    pub max_bytes: usize,
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
                && (matches!(x.op, Op::Put { .. }) || x.assigned(field).is_some())
        })
    }
    pub fn candidates(&self, field: &str) -> Vec<&MWrite> {
        self.h
            .iter()
            .filter(|r| !r.is_delete() && !self.killed(r))
            .filter(|r| r.assigned(field).is_some() && !self.overwritten(r, field))
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
    /// Each write holding winning values (rules 1–4), with those values.
    fn held(&self) -> Vec<(&MWrite, Fields)> {
        let mut out: Vec<(&MWrite, Fields)> = Vec::new();
        for f in FIELDS {
            let Some(w) = self.winner(f) else { continue };
            let Some(Some(v)) = w.assigned(f) else {
                continue;
            };
            let v = v.clone();
            match out.iter_mut().find(|(x, _)| x.dot() == w.dot()) {
                Some((_, fields)) => {
                    fields.insert(f.to_owned(), v);
                }
                None => out.push((w, Fields::from([(f.to_owned(), v)]))),
            }
        }
        out
    }

    /// Rule 5: the writes left out, each with the values it is left out with. Writes
    /// are taken in admission order; one keeps its values if the document built so far
    /// still fits with them.
    pub fn excluded(&self) -> Vec<(&MWrite, Fields)> {
        let mut held = self.held();
        // Insertion sort by the order, so the comparison is the only ordering logic.
        for i in 1..held.len() {
            let mut j = i;
            while j > 0 && admitted_before(&held[j].0.stamp, &held[j - 1].0.stamp) {
                held.swap(j, j - 1);
                j -= 1;
            }
        }
        let mut doc = Fields::new();
        let mut out = Vec::new();
        for (w, fields) in held {
            let mut with = doc.clone();
            with.extend(fields.clone());
            if document_bytes(&with) <= self.max_bytes {
                doc = with;
            } else {
                out.push((w, fields));
            }
        }
        out
    }

    /// The fields rule 5 leaves out (a patch made over this history unsets them).
    pub fn excluded_fields(&self) -> BTreeSet<String> {
        self.excluded()
            .into_iter()
            .flat_map(|(_, f)| f.into_keys())
            .collect()
    }

    pub fn eval(&self) -> Option<Fields> {
        if !self.h.iter().any(|r| !r.is_delete() && !self.killed(r)) {
            return None;
        }
        let out: Fields = self.held().into_iter().flat_map(|(_, f)| f).collect();
        let excluded = self.excluded_fields();
        Some(
            out.into_iter()
                .filter(|(k, _)| !excluded.contains(k))
                .collect(),
        )
    }
    /// A write that was made, then entirely overwritten by writes made after it.
    pub fn superseded(&self, r: &MWrite) -> bool {
        self.h.iter().any(|x| !x.is_delete() && x.after(r))
            && r.assigned_fields().iter().all(|f| self.overwritten(r, f))
    }
    /// Every loss in the final state: (loser, field or None for the whole write).
    pub fn losses(&self) -> BTreeSet<(Dot, Option<String>)> {
        let mut out = BTreeSet::new();
        for (w, fields) in self.excluded() {
            for f in fields.into_keys() {
                out.insert((w.dot(), Some(f)));
            }
        }
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
                for f in w.assigned_fields() {
                    if !self.overwritten(w, f) && self.winner(f).map(MWrite::dot) != Some(w.dot()) {
                        out.insert((w.dot(), Some(f.to_owned())));
                    }
                }
            }
        }
        out
    }
}
