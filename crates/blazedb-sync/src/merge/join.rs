//! The merge of another replica's state of a document into ours (state transfer,
//! for bootstrap).

use super::{Body, Defeat, DocState, Loss, Rec, expiry};
use crate::clock::NodeId;
use crate::write::Stamp;

/// In a join, whether one side had dropped a record the other retains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dropped {
    No,
    /// The other side dropped it (it covers it but does not retain it).
    There,
    /// This side dropped it.
    Here,
}

impl DocState {
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
    /// remaining evidence shows are reported. One bootstrap does break it: a node
    /// forgotten by a sender that keeps tombstones joins that sender's states over its
    /// own synced writes (`node/snapshot.rs`). Without collection the sender drops only
    /// what a later write overwrote, so every loss of the final history is still shown;
    /// a loss later overwritten is not (`tests/forgotten_return.rs`).
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
}
