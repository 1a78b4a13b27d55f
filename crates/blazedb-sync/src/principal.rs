//! Which principal (user) each node writes as: kept per node id in the database, so
//! every write can be attributed to the user whose client made it (`get --meta`, the
//! conflict log).
//!
//! - On a hub, a client's node id is *bound* to the principal of the first session
//!   that said hello with it; a session of another principal presenting it is refused
//!   (`grant.rs`), so a user cannot write under another user's node id.
//! - Bindings travel with what a node sends to its peers (`Batch::users`,
//!   `Snapshot::users`), and a node records those it receives from peers it trusts
//!   (grant `relay`); from anyone else they are refused.
//!
//! Records: namespace `sync.principal`, key = node id (8 bytes, big-endian), value =
//! the principal's UTF-8 name. Written in their own small transactions: a binding lost
//! in a crash is made again by the next hello or batch that carries it.
//!
//! Counts: namespace `sync.principal.count`, key = the principal's UTF-8 name, value =
//! how many node ids it holds (u64, big-endian), so a hello checks the cap without
//! reading every binding (with the shared credential's 100,000 that scan made each new
//! client's first hello cost linear in the clients before it). Invariant: a count,
//! once stored, is updated in every transaction that binds, learns or replaces a
//! binding of its principal; a missing count (a database from before counts, or a
//! principal only learned from peers) is computed from the bindings when a hello first
//! needs it.

use std::collections::BTreeSet;

use blazedb_engine::Durability;

use crate::backend::Tx;
use crate::clock::NodeId;
use crate::error::{Result, SyncError};
use crate::grant::check_principal;
use crate::node::SyncNode;
use crate::record::peer_key;

/// Namespace of node → principal bindings.
pub(crate) const NS_PRINCIPAL: &str = "sync.principal";
/// Namespace of principal → node ids bound (see the module docs).
pub(crate) const NS_PRINCIPAL_COUNT: &str = "sync.principal.count";
/// Most node ids one named user may bind (each is a peer the server keeps a record
/// of): a user's devices, with room for reinstalls.
pub const NODES_PER_USER_MAX: usize = 1_000;
/// Most node ids the clients of the shared credential may bind together.
pub const NODES_SHARED_MAX: usize = 100_000;

/// What binding a node id to a principal found.
#[derive(Debug, PartialEq, Eq)]
pub enum Binding {
    /// Bound to this principal (now or before).
    Yours,
    /// Bound to another principal.
    Taken,
    /// The principal holds as many node ids as it may.
    Full(usize),
}

/// The stored count of `principal`, if there is one.
fn stored_count(tx: &mut Tx<'_>, principal: &str) -> Result<Option<u64>> {
    match tx.aux_get(NS_PRINCIPAL_COUNT, principal.as_bytes())? {
        None => Ok(None),
        Some(bytes) => {
            let b: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| SyncError::Corrupt {
                    what: "principal count",
                    detail: format!("{} bytes, not 8", bytes.len()),
                })?;
            Ok(Some(u64::from_be_bytes(b)))
        }
    }
}

fn store_count(tx: &mut Tx<'_>, principal: &str, n: u64) -> Result<()> {
    tx.aux_put(NS_PRINCIPAL_COUNT, principal.as_bytes(), &n.to_be_bytes())?;
    Ok(())
}

/// How many node ids `principal` holds: its stored count, or counted from the
/// bindings (and stored from now on).
fn count_of(tx: &mut Tx<'_>, principal: &str) -> Result<u64> {
    if let Some(n) = stored_count(tx, principal)? {
        return Ok(n);
    }
    let n = tx
        .aux_scan(NS_PRINCIPAL)?
        .iter()
        .filter(|(_, p)| p.as_slice() == principal.as_bytes())
        .count() as u64;
    store_count(tx, principal, n)?;
    Ok(n)
}

/// Moves one binding from `old` (if it had one) to `new` in the counts that exist.
fn recount(tx: &mut Tx<'_>, old: Option<&str>, new: &str) -> Result<()> {
    if let Some(old) = old
        && let Some(n) = stored_count(tx, old)?
    {
        store_count(tx, old, n.saturating_sub(1))?;
    }
    if let Some(n) = stored_count(tx, new)? {
        store_count(tx, new, n + 1)?;
    }
    Ok(())
}

fn decode(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| SyncError::Corrupt {
        what: "principal",
        detail: "not UTF-8".into(),
    })
}

impl SyncNode {
    /// The principal (user) node `node` writes as, if this node knows it.
    ///
    /// # Errors
    /// Database errors.
    pub fn principal_of(&self, node: NodeId) -> Result<Option<String>> {
        let r = self.store_db().begin_read()?;
        r.aux_get(NS_PRINCIPAL, &peer_key(node))?
            .map(decode)
            .transpose()
    }

    /// Binds `node` to `principal` unless another principal holds it or `principal`
    /// holds its most node ids already (each bound node is a peer record this node
    /// keeps: the cap bounds what one credential can make it keep).
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn bind_principal(&self, node: NodeId, principal: &str) -> Result<Binding> {
        match self.principal_of(node)? {
            Some(p) if p == principal => return Ok(Binding::Yours),
            Some(_) => return Ok(Binding::Taken),
            None => {}
        }
        let mut tx = self.store_db().begin_apply()?;
        // Durable before the session goes on: a write accepted from this node must
        // never be attributed to a principal bound later by someone else.
        tx.set_durability(Durability::Immediate);
        if let Some(p) = tx.aux_get(NS_PRINCIPAL, &peer_key(node))? {
            return Ok(if decode(p)? == principal {
                Binding::Yours
            } else {
                Binding::Taken
            });
        }
        let cap = if principal.starts_with('@') {
            NODES_SHARED_MAX
        } else {
            NODES_PER_USER_MAX
        };
        let held = count_of(&mut *tx, principal)?;
        if held >= cap as u64 {
            return Ok(Binding::Full(cap));
        }
        tx.aux_put(NS_PRINCIPAL, &peer_key(node), principal.as_bytes())?;
        store_count(&mut *tx, principal, held + 1)?;
        tx.commit()?;
        Ok(Binding::Yours)
    }

    /// Records bindings learned from a trusted peer (those already known are left as
    /// they are written, changed ones replaced).
    ///
    /// # Errors
    /// [`SyncError::Protocol`] for a malformed name (nothing recorded); database
    /// errors.
    pub(crate) fn learn_principals(&self, list: &[(NodeId, String)]) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        for (_, name) in list {
            check_principal(name).map_err(SyncError::Protocol)?;
        }
        let mut fresh = Vec::new();
        {
            let r = self.store_db().begin_read()?;
            for (node, name) in list {
                let known = r.aux_get(NS_PRINCIPAL, &peer_key(*node))?;
                if known.as_deref() != Some(name.as_bytes()) {
                    fresh.push((*node, name));
                }
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let mut tx = self.store_db().begin_apply()?;
        tx.set_durability(Durability::Eventual);
        for (node, name) in fresh {
            // Read again in the transaction: the list may name a node twice.
            let old = tx
                .aux_get(NS_PRINCIPAL, &peer_key(node))?
                .map(decode)
                .transpose()?;
            if old.as_deref() == Some(name.as_str()) {
                continue;
            }
            tx.aux_put(NS_PRINCIPAL, &peer_key(node), name.as_bytes())?;
            recount(&mut *tx, old.as_deref(), name)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The known bindings of `nodes` (what a batch or snapshot page passes on).
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn principals_of(&self, nodes: &BTreeSet<NodeId>) -> Result<Vec<(NodeId, String)>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let r = self.store_db().begin_read()?;
        let mut out = Vec::new();
        for node in nodes {
            if let Some(p) = r.aux_get(NS_PRINCIPAL, &peer_key(*node))? {
                out.push((*node, decode(p)?));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Role;
    use crate::config::SyncConfig;

    fn node() -> (tempfile::TempDir, SyncNode) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = blazedb_engine::Database::builder()
            .kdf(blazedb_engine::KdfParams::INSECURE_FAST)
            .open(dir.path(), "hub", "pw")
            .expect("open");
        let n = SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable");
        (dir, n)
    }

    #[test]
    fn a_node_id_belongs_to_the_first_principal_and_a_user_binds_a_bounded_number() {
        let (_dir, n) = node();
        // Alice holds all but two of her node ids already, as a database from before
        // the counts would: bindings and no count.
        let mut tx = n.store_db().begin_apply().expect("tx");
        for i in 0..NODES_PER_USER_MAX as u64 - 2 {
            tx.aux_put(NS_PRINCIPAL, &peer_key(NodeId(1_000 + i)), b"alice")
                .expect("put");
        }
        tx.commit().expect("commit");
        assert_eq!(
            n.bind_principal(NodeId(1), "alice").expect("bind"),
            Binding::Yours
        );
        assert_eq!(
            n.bind_principal(NodeId(1), "alice").expect("bind"),
            Binding::Yours
        );
        assert_eq!(
            n.bind_principal(NodeId(1), "bob").expect("bind"),
            Binding::Taken
        );
        assert_eq!(
            n.principal_of(NodeId(1)).expect("get").as_deref(),
            Some("alice")
        );
        assert_eq!(
            n.bind_principal(NodeId(2), "alice").expect("bind"),
            Binding::Yours
        );
        assert_eq!(
            n.bind_principal(NodeId(3), "alice").expect("bind"),
            Binding::Full(NODES_PER_USER_MAX)
        );
        assert_eq!(
            n.bind_principal(NodeId(3), "bob").expect("bind"),
            Binding::Yours
        );
    }

    #[test]
    fn the_stored_counts_follow_bindings_learned_and_replaced_so_the_cap_holds() {
        let (_dir, n) = node();
        for i in 0..NODES_PER_USER_MAX as u64 {
            assert_eq!(
                n.bind_principal(NodeId(1_000 + i), "alice").expect("bind"),
                Binding::Yours
            );
        }
        // A trusted peer says one of alice's nodes is carol's, then names a new one
        // alice's: alice is at her cap again.
        n.learn_principals(&[(NodeId(1_000), "carol".into())])
            .expect("learn");
        n.learn_principals(&[(NodeId(5), "alice".into()), (NodeId(5), "alice".into())])
            .expect("learn");
        assert_eq!(
            n.bind_principal(NodeId(6), "alice").expect("bind"),
            Binding::Full(NODES_PER_USER_MAX),
            "1,000 bound, one moved to carol, one learned: the cap is reached"
        );
        n.learn_principals(&[(NodeId(5), "carol".into())])
            .expect("learn");
        assert_eq!(
            n.bind_principal(NodeId(6), "alice").expect("bind"),
            Binding::Yours
        );
        // The stored counts are what the bindings say.
        let mut tx = n.store_db().begin_apply().expect("tx");
        let all = tx.aux_scan(NS_PRINCIPAL).expect("scan");
        for who in ["alice", "carol"] {
            let bound = all
                .iter()
                .filter(|(_, p)| p.as_slice() == who.as_bytes())
                .count();
            let stored = super::stored_count(&mut *tx, who).expect("count");
            assert!(
                stored.is_none_or(|c| c == bound as u64),
                "{who}: stored {stored:?}, bound {bound}"
            );
        }
    }

    #[test]
    fn bindings_learned_from_a_peer_must_be_well_formed_names() {
        let (_dir, n) = node();
        n.learn_principals(&[(NodeId(9), "carol".into())])
            .expect("learn");
        assert_eq!(
            n.principal_of(NodeId(9)).expect("get").as_deref(),
            Some("carol")
        );
        assert!(n.learn_principals(&[(NodeId(9), "a b".into())]).is_err());
        assert_eq!(
            n.principal_of(NodeId(9)).expect("get").as_deref(),
            Some("carol")
        );
    }
}
