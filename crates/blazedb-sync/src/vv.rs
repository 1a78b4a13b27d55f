//! Version vectors: for each origin node, the highest write counter covered.
//!
//! A document's causal context is a small version vector over the nodes that wrote the
//! document (not all nodes), so its size follows the document's writers, not the
//! number of clients.
//!
//! Invariant: entries are sorted by node id and never hold a zero counter, so equal
//! vectors have equal encodings.

use serde::{Deserialize, Serialize};

use crate::clock::NodeId;

/// A write's identity: its origin node and that node's counter for it (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub node: NodeId,
    pub counter: u64,
}

impl std::fmt::Display for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node, self.counter)
    }
}

/// A version vector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vv(Vec<(NodeId, u64)>);

impl Vv {
    /// The empty vector.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter covered for `node` (0 when none).
    #[must_use]
    pub fn get(&self, node: NodeId) -> u64 {
        self.0
            .binary_search_by_key(&node, |e| e.0)
            .map_or(0, |i| self.0[i].1)
    }

    /// Whether the write `dot` is covered.
    #[must_use]
    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.node) >= dot.counter
    }

    /// Raises the entry of `dot.node` to at least `dot.counter`.
    pub fn raise(&mut self, dot: Dot) {
        if dot.counter == 0 {
            return;
        }
        match self.0.binary_search_by_key(&dot.node, |e| e.0) {
            Ok(i) => self.0[i].1 = self.0[i].1.max(dot.counter),
            Err(i) => self.0.insert(i, (dot.node, dot.counter)),
        }
    }

    /// Raises every entry to at least `other`'s.
    pub fn join(&mut self, other: &Vv) {
        for &(node, counter) in &other.0 {
            self.raise(Dot { node, counter });
        }
    }

    /// Whether every entry of `self` is covered by `other`.
    #[must_use]
    pub fn le(&self, other: &Vv) -> bool {
        self.0
            .iter()
            .all(|&(node, counter)| other.get(node) >= counter)
    }

    /// The entries, sorted by node.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.0.iter().copied()
    }

    /// Number of nodes with a non-zero entry.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no entry is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the encoding invariant of a decoded vector (sorted, unique, non-zero).
    #[must_use]
    pub fn is_canonical(&self) -> bool {
        self.0.windows(2).all(|w| w[0].0 < w[1].0) && self.0.iter().all(|e| e.1 > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(n: u64, c: u64) -> Dot {
        Dot {
            node: NodeId(n),
            counter: c,
        }
    }

    #[test]
    fn raise_keeps_entries_sorted_and_maximal() {
        let mut v = Vv::new();
        v.raise(dot(3, 2));
        v.raise(dot(1, 5));
        v.raise(dot(3, 1));
        v.raise(dot(2, 0));
        assert_eq!(
            v.iter().collect::<Vec<_>>(),
            vec![(NodeId(1), 5), (NodeId(3), 2)]
        );
        assert!(v.is_canonical());
        assert!(v.covers(dot(3, 2)) && !v.covers(dot(3, 3)) && !v.covers(dot(2, 1)));
    }

    #[test]
    fn join_and_le_agree() {
        let mut a = Vv::new();
        a.raise(dot(1, 2));
        let mut b = Vv::new();
        b.raise(dot(2, 3));
        assert!(!a.le(&b) && !b.le(&a));
        let mut j = a.clone();
        j.join(&b);
        assert!(a.le(&j) && b.le(&j));
    }
}
