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

use std::collections::BTreeSet;

use blazedb_engine::Durability;

use crate::clock::NodeId;
use crate::error::{Result, SyncError};
use crate::grant::check_principal;
use crate::node::SyncNode;
use crate::record::peer_key;

/// Namespace of node → principal bindings.
pub(crate) const NS_PRINCIPAL: &str = "sync.principal";

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
        let r = self.database().begin_read()?;
        r.aux_get(NS_PRINCIPAL, &peer_key(node))?
            .map(decode)
            .transpose()
    }

    /// Binds `node` to `principal` unless another principal holds it. Returns the
    /// other principal when it does.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) fn bind_principal(&self, node: NodeId, principal: &str) -> Result<Option<String>> {
        match self.principal_of(node)? {
            Some(p) if p == principal => return Ok(None),
            Some(p) => return Ok(Some(p)),
            None => {}
        }
        let mut tx = self.database().begin_apply()?;
        // Durable before the session goes on: a write accepted from this node must
        // never be attributed to a principal bound later by someone else.
        tx.set_durability(Durability::Immediate);
        if let Some(p) = tx.aux_get(NS_PRINCIPAL, &peer_key(node))? {
            let p = decode(p)?;
            return Ok((p != principal).then_some(p));
        }
        tx.aux_put(NS_PRINCIPAL, &peer_key(node), principal.as_bytes())?;
        tx.commit()?;
        Ok(None)
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
            let r = self.database().begin_read()?;
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
        let mut tx = self.database().begin_apply()?;
        tx.set_durability(Durability::Eventual);
        for (node, name) in fresh {
            tx.aux_put(NS_PRINCIPAL, &peer_key(node), name.as_bytes())?;
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
        let r = self.database().begin_read()?;
        let mut out = Vec::new();
        for node in nodes {
            if let Some(p) = r.aux_get(NS_PRINCIPAL, &peer_key(*node))? {
                out.push((*node, decode(p)?));
            }
        }
        Ok(out)
    }
}
