//! A sealed B+tree: a sorted set of byte strings stored as encrypted nodes.
//!
//! Storage sees node ids and sealed node sizes only; keys (and therefore the order of
//! indexed values) exist in plaintext only in memory. Each node is sealed to its own
//! storage key, so nodes cannot be swapped or moved undetected.
//!
//! Invariants:
//! - A branch has `children.len() == seps.len() + 1`; child `i` holds keys `k` with
//!   `seps[i-1] <= k < seps[i]`.
//! - Leaves are linked left to right through `next` (0 ends the list), so a range scan
//!   descends once and then walks leaves.
//! - Nodes hold at most [`NODE_KEYS_MAX`] keys; a fuller node splits in two. Deletes
//!   remove keys without merging (a leaf may become empty; scans skip it). Dropping and
//!   re-creating an index compacts it.
//! - Node 0 is never used; the tree's meta (root, next id, height, length) lives in the
//!   index directory record and is written with the same commit as the nodes.

use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use blazedb_core::{Error, Result};
use blazedb_storage::{StorageError, Table, WriteTx, prefix_upper};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::codec::{decode, encode};
use crate::raw::{Raw, storage_err};
use crate::vault::Vault;

/// Most keys in one node before it splits.
pub(crate) const NODE_KEYS_MAX: usize = 64;

#[derive(Serialize, Deserialize, Clone)]
enum Node {
    Leaf {
        keys: Vec<ByteBuf>,
        next: u64,
    },
    Branch {
        seps: Vec<ByteBuf>,
        children: Vec<u64>,
    },
}

/// Branches passed on the way down: (node id, separators, children, child index taken).
type BranchPath = Vec<(u64, Vec<ByteBuf>, Vec<u64>, usize)>;

/// The leaf reached: its id, keys and next pointer.
struct LeafAt {
    id: u64,
    keys: Vec<ByteBuf>,
    next: u64,
}

/// Where a tree is and how big it is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TreeMeta {
    pub root: u64,
    pub next_node: u64,
    pub height: u32,
    pub len: u64,
}

/// A tree: its tag (the storage-key prefix of its nodes) and meta.
pub(crate) struct Tree<'v> {
    pub tag: [u8; 16],
    pub meta: TreeMeta,
    pub vault: &'v Vault,
}

fn node_key(tag: &[u8; 16], id: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(tag);
    k[16..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Which child of the branch `seps`/`children` holds `key` (or would).
fn child_index(seps: &[ByteBuf], children: &[u64], key: &[u8]) -> Result<usize> {
    if children.len() != seps.len() + 1 {
        return Err(corrupt("branch with mismatched children"));
    }
    Ok(seps.partition_point(|s| s.as_slice() <= key))
}

fn corrupt(detail: &str) -> Error {
    Error::corrupt_record("index", detail)
}

impl Tree<'_> {
    /// Node `id`, shared with the store's cache of decoded nodes in a read transaction.
    fn load(&self, raw: &mut impl Raw, id: u64) -> Result<Arc<Node>> {
        let k = node_key(&self.tag, id);
        raw.raw_get_cached(Table::Index, &k, |sealed| {
            let plain = self.vault.open(Table::Index, &k, sealed)?;
            let node: Node = decode("index", &plain)?;
            // Each key is a buffer of its own: its bytes plus a header and allocation.
            let keys = match &node {
                Node::Leaf { keys, .. } => keys.len(),
                Node::Branch { seps, .. } => seps.len(),
            };
            Ok((node, plain.len() + 40 * keys + 64))
        })?
        .ok_or_else(|| corrupt("index node missing"))
    }

    /// Node `id`, owned (for changing it).
    fn load_owned(&self, raw: &mut impl Raw, id: u64) -> Result<Node> {
        self.load(raw, id).map(Arc::unwrap_or_clone)
    }

    fn save(&self, tx: &mut WriteTx<'_>, id: u64, node: &Node) -> Result<()> {
        let k = node_key(&self.tag, id);
        let sealed = self
            .vault
            .seal(Table::Index, &k, &encode("index node", node)?);
        tx.insert(Table::Index, &k, &sealed)
            .map_err(|e| storage_err(e, std::path::Path::new("")))
    }

    fn alloc(&mut self) -> u64 {
        let id = self.meta.next_node;
        self.meta.next_node += 1;
        id
    }

    /// Creates an empty tree (one empty leaf).
    pub(crate) fn create(tx: &mut WriteTx<'_>, vault: &Vault, tag: [u8; 16]) -> Result<TreeMeta> {
        let tree = Tree {
            tag,
            meta: TreeMeta {
                root: 1,
                next_node: 2,
                height: 1,
                len: 0,
            },
            vault,
        };
        tree.save(
            tx,
            1,
            &Node::Leaf {
                keys: Vec::new(),
                next: 0,
            },
        )?;
        Ok(tree.meta)
    }

    /// Descends to the leaf that holds `key` (or would), returning the branch path.
    fn descend(&self, raw: &mut impl Raw, key: &[u8]) -> Result<(BranchPath, LeafAt)> {
        let mut path = Vec::new();
        let mut id = self.meta.root;
        for _ in 0..=self.meta.height {
            match self.load_owned(raw, id)? {
                Node::Branch { seps, children } => {
                    let i = child_index(&seps, &children, key)?;
                    let child = children[i];
                    path.push((id, seps, children, i));
                    id = child;
                }
                Node::Leaf { keys, next } => return Ok((path, LeafAt { id, keys, next })),
            }
        }
        Err(corrupt("index deeper than its recorded height"))
    }

    /// Inserts `key`; returns false if it was already present.
    pub(crate) fn insert(&mut self, tx: &mut WriteTx<'_>, key: &[u8]) -> Result<bool> {
        let (
            mut path,
            LeafAt {
                id: leaf_id,
                mut keys,
                next,
            },
        ) = self.descend(tx, key)?;
        let pos = match keys.binary_search_by(|k| k.as_slice().cmp(key)) {
            Ok(_) => return Ok(false),
            Err(p) => p,
        };
        keys.insert(pos, ByteBuf::from(key.to_vec()));
        self.meta.len += 1;
        if keys.len() <= NODE_KEYS_MAX {
            self.save(tx, leaf_id, &Node::Leaf { keys, next })?;
            return Ok(true);
        }
        // Split the leaf; carry (separator, new right node) upwards.
        let right_keys = keys.split_off(keys.len() / 2);
        let right_id = self.alloc();
        let mut sep = right_keys[0].clone();
        self.save(
            tx,
            right_id,
            &Node::Leaf {
                keys: right_keys,
                next,
            },
        )?;
        self.save(
            tx,
            leaf_id,
            &Node::Leaf {
                keys,
                next: right_id,
            },
        )?;
        let mut new_child = right_id;
        while let Some((id, mut seps, mut children, i)) = path.pop() {
            seps.insert(i, sep);
            children.insert(i + 1, new_child);
            if seps.len() <= NODE_KEYS_MAX {
                self.save(tx, id, &Node::Branch { seps, children })?;
                return Ok(true);
            }
            let mid = seps.len() / 2;
            let right_seps = seps.split_off(mid + 1);
            sep = seps
                .pop()
                .ok_or_else(|| corrupt("empty branch during split"))?;
            let right_children = children.split_off(mid + 1);
            let rid = self.alloc();
            self.save(
                tx,
                rid,
                &Node::Branch {
                    seps: right_seps,
                    children: right_children,
                },
            )?;
            self.save(tx, id, &Node::Branch { seps, children })?;
            new_child = rid;
        }
        // The root split: grow a level.
        let root = self.alloc();
        self.save(
            tx,
            root,
            &Node::Branch {
                seps: vec![sep],
                children: vec![self.meta.root, new_child],
            },
        )?;
        self.meta.root = root;
        self.meta.height += 1;
        Ok(true)
    }

    /// Removes `key`; returns whether it was present.
    pub(crate) fn remove(&mut self, tx: &mut WriteTx<'_>, key: &[u8]) -> Result<bool> {
        let (
            _,
            LeafAt {
                id: leaf_id,
                mut keys,
                next,
            },
        ) = self.descend(tx, key)?;
        match keys.binary_search_by(|k| k.as_slice().cmp(key)) {
            Ok(p) => {
                keys.remove(p);
                self.meta.len -= 1;
                self.save(tx, leaf_id, &Node::Leaf { keys, next })?;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Visits keys in `[lo, hi]` (per the bounds) in order until `f` breaks.
    pub(crate) fn scan(
        &self,
        raw: &mut impl Raw,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        f: &mut dyn FnMut(&[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let start: &[u8] = match lo {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => &[],
        };
        let mut node = self.leaf_for(raw, start)?;
        // A corrupted next-pointer cycle cannot loop forever: at most one visit per node.
        for _ in 0..self.meta.next_node {
            let Node::Leaf { keys, next } = &*node else {
                return Err(corrupt("leaf links to a branch"));
            };
            // Keys are sorted: skip those below `lo` by bisection (only the first leaf
            // can hold any).
            let first = keys.partition_point(|k| match lo {
                Bound::Included(l) => k.as_slice() < l,
                Bound::Excluded(l) => k.as_slice() <= l,
                Bound::Unbounded => false,
            });
            for k in &keys[first..] {
                let k = k.as_slice();
                let below_hi = match hi {
                    Bound::Included(h) => k <= h,
                    Bound::Excluded(h) => k < h,
                    Bound::Unbounded => true,
                };
                if !below_hi || f(k)?.is_break() {
                    return Ok(());
                }
            }
            if *next == 0 {
                return Ok(());
            }
            node = self.load(raw, *next)?;
        }
        Err(corrupt("leaf chain longer than the tree"))
    }

    /// The leaf that holds `key` (or would), reached without copying a node.
    fn leaf_for(&self, raw: &mut impl Raw, key: &[u8]) -> Result<Arc<Node>> {
        let mut id = self.meta.root;
        for _ in 0..=self.meta.height {
            let node = self.load(raw, id)?;
            match &*node {
                Node::Branch { seps, children } => {
                    id = children[child_index(seps, children, key)?];
                }
                Node::Leaf { .. } => return Ok(node),
            }
        }
        Err(corrupt("index deeper than its recorded height"))
    }

    /// Removes every node of the tree tagged `tag`.
    pub(crate) fn destroy(tx: &mut WriteTx<'_>, tag: &[u8; 16]) -> Result<(), StorageError> {
        let mut keys = Vec::new();
        let upper = prefix_upper(tag);
        let hi = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        tx.scan(
            Table::Index,
            (Bound::Included(tag.as_slice()), hi),
            |k, _| {
                keys.push(k.to_vec());
                Ok::<_, StorageError>(ControlFlow::Continue(()))
            },
        )?;
        for k in keys {
            tx.remove(Table::Index, &k)?;
        }
        Ok(())
    }

    /// Builds a tree from sorted, distinct keys bottom-up, nodes three-quarters full. The
    /// keys move into the leaves (no copy).
    pub(crate) fn bulk_load(
        tx: &mut WriteTx<'_>,
        vault: &Vault,
        tag: [u8; 16],
        keys: Vec<Vec<u8>>,
    ) -> Result<TreeMeta> {
        if keys.is_empty() {
            return Self::create(tx, vault, tag);
        }
        let fill = NODE_KEYS_MAX * 3 / 4;
        let mut tree = Tree {
            tag,
            meta: TreeMeta {
                root: 0,
                next_node: 1,
                height: 1,
                len: keys.len() as u64,
            },
            vault,
        };
        let leaves = keys.len().div_ceil(fill);
        let first_leaf = tree.meta.next_node;
        let mut level: Vec<(Vec<u8>, u64)> = Vec::with_capacity(leaves);
        let mut keys = keys.into_iter();
        for i in 0..leaves {
            let id = tree.alloc();
            let next = if i + 1 < leaves {
                first_leaf + i as u64 + 1
            } else {
                0
            };
            let chunk: Vec<ByteBuf> = keys.by_ref().take(fill).map(ByteBuf::from).collect();
            let first = chunk.first().map(|k| k.to_vec()).unwrap_or_default();
            tree.save(tx, id, &Node::Leaf { keys: chunk, next })?;
            level.push((first, id));
        }
        while level.len() > 1 {
            let mut up = Vec::with_capacity(level.len() / fill + 1);
            for group in level.chunks(fill) {
                let id = tree.alloc();
                let seps = group[1..]
                    .iter()
                    .map(|(k, _)| ByteBuf::from(k.clone()))
                    .collect();
                let children = group.iter().map(|(_, c)| *c).collect();
                tree.save(tx, id, &Node::Branch { seps, children })?;
                up.push((group[0].0.clone(), id));
            }
            level = up;
            tree.meta.height += 1;
        }
        tree.meta.root = level[0].1;
        Ok(tree.meta)
    }
}
