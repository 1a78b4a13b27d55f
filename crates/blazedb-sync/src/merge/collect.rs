//! Stability and garbage collection: what a state may forget once every peer has
//! seen it, and the `horizon` that records what was forgotten.

use super::{Body, DocState, Rec};
use crate::vv::Dot;

impl DocState {
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
    /// - A stable effective delete can no longer be defeated: once every write it killed
    ///   is stable too, they are dead for good and go, and so does the delete (every
    ///   future write follows it). While a write it killed is not stable, both stay: a
    ///   dead write is still a witness that defeats a later delete concurrent with it
    ///   (rule 5 weighs every retained write, dead or not), and a peer may still send
    ///   such a delete.
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
            // Not while a write it killed is not stable yet (see above).
            .filter(|d| {
                self.recs
                    .iter()
                    .all(|r| r.is_delete() || r.follows(d) || r.stable)
            })
            .cloned()
            .collect();
        self.recs.retain(|r| {
            if r.is_delete() {
                return !stable_deletes.iter().any(|d| d.dot() == r.dot());
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
}
