//! The causal merge of one write into a document's state (rules 1–4 of the module
//! docs), keeping only the writes that can still matter.

use super::{Applied, Body, Defeat, DocState, MergeError, Rec, Slot, expiry};
use crate::vv::Dot;
use crate::write::{Op, Write};

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
    pub(super) fn drop_dominated_ghosts(&mut self) {
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
}
