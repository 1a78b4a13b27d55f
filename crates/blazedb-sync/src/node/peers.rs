//! Peers: what this node keeps about each peer (cursors, acknowledgments, the relay
//! targets that reached it) and which peers have a session open now.
//!
//! Invariants:
//! - Cursors only move forward: the receive cursor advances in the transaction that
//!   applied what it covers (`apply.rs`); an ack never lowers `acked`.
//! - Connection counts live in memory only, shared by the node's clones.

use blazedb_engine::Durability;

use super::SyncNode;
use crate::clock::NodeId;
use crate::error::Result;
use crate::position::LogPos;
use crate::record::{self, NS_PEER, PeerRecord};
use crate::relay::RelayTarget;

impl SyncNode {
    /// Every relay target this node has dialled, with the peer it reached there (see
    /// [`SyncNode::peer_at`]), sorted by target.
    ///
    /// # Errors
    /// Database errors.
    pub fn known_targets(&self) -> Result<Vec<(RelayTarget, NodeId)>> {
        let r = self.db.begin_read()?;
        Ok(r.aux_scan(record::NS_TARGET)?
            .into_iter()
            .filter_map(|(k, v)| {
                let id = <[u8; 8]>::try_from(v.as_slice()).ok()?;
                Some((RelayTarget::from_key(&k), NodeId(u64::from_be_bytes(id))))
            })
            .collect())
    }

    /// Notes a session with `peer` opening (`up`) or closing.
    pub fn note_connected(&self, peer: NodeId, up: bool) {
        let mut c = self
            .connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = c.entry(peer).or_insert(0);
        if up {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&peer);
            }
        }
    }

    pub(super) fn is_connected(&self, peer: NodeId) -> bool {
        self.connected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&peer)
    }

    /// The peer last reached through the relay with `target`: a dialer that
    /// restarts names it in its hello, so the peer resumes from our cursor instead of
    /// sending its log (or a snapshot) from the start.
    ///
    /// # Errors
    /// Database errors.
    pub fn peer_at(&self, target: &RelayTarget) -> Result<Option<NodeId>> {
        let r = self.db.begin_read()?;
        Ok(r.aux_get(record::NS_TARGET, target.key())?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(|b| NodeId(u64::from_be_bytes(b))))
    }

    /// Records that `target` reached `peer` (see [`SyncNode::peer_at`]).
    ///
    /// # Errors
    /// Database errors.
    pub fn remember_peer_at(&self, target: &RelayTarget, peer: NodeId) -> Result<()> {
        if self.peer_at(target)? == Some(peer) {
            return Ok(());
        }
        let mut tx = self.db.begin_apply()?;
        tx.aux_put(record::NS_TARGET, target.key(), &peer.0.to_be_bytes())?;
        tx.commit()?;
        Ok(())
    }

    /// Keeps `description` as the remote this database last synced with, for a tool
    /// to dial it again without being told (the `blazedb` CLI keeps the server, the
    /// database name and how to trust it; never a secret). Sealed like every record.
    /// Writes only if it changed.
    ///
    /// # Errors
    /// Database errors.
    pub fn remember_remote(&self, description: &[u8]) -> Result<()> {
        if self.remembered_remote()?.as_deref() == Some(description) {
            return Ok(());
        }
        let mut tx = self.db.begin_apply()?;
        tx.aux_put(record::NS_REMOTE, record::REMOTE_KEY, description)?;
        tx.commit()?;
        Ok(())
    }

    /// What [`SyncNode::remember_remote`] kept last, if anything.
    ///
    /// # Errors
    /// Database errors.
    pub fn remembered_remote(&self) -> Result<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        Ok(r.aux_get(record::NS_REMOTE, record::REMOTE_KEY)?)
    }

    /// The peer's log position applied here (where to resume receiving).
    ///
    /// # Errors
    /// Database errors.
    pub fn recv_cursor(&self, peer: NodeId) -> Result<LogPos> {
        Ok(self.peer(peer)?.map_or(LogPos::ZERO, |p| p.recv_cursor))
    }

    pub(super) fn peer(&self, peer: NodeId) -> Result<Option<PeerRecord>> {
        let r = self.db.begin_read()?;
        record::load(&mut &*r, "peer", NS_PEER, &record::peer_key(peer))
    }

    /// Records that `peer` has applied this node's log up to `upto`, when its own log
    /// stood at `their_last`.
    ///
    /// # Errors
    /// Database errors.
    pub fn note_acked(&self, peer: NodeId, upto: LogPos, their_last: LogPos) -> Result<()> {
        if self
            .peer(peer)?
            .is_some_and(|p| p.acked >= upto && p.acks.last().is_some_and(|a| a.0 >= upto))
        {
            return Ok(());
        }
        let mut tx = self.db.begin_apply()?;
        // Losing this record in a crash only delays garbage collection: the next hello
        // re-establishes the peer's position.
        tx.set_durability(Durability::Eventual);
        let pkey = record::peer_key(peer);
        let mut p: PeerRecord = record::load(&mut *tx, "peer", NS_PEER, &pkey)?.unwrap_or_default();
        p.note_ack(upto, their_last);
        p.forgotten = false;
        p.last_seen_us = self.now_us();
        record::save(&mut *tx, "peer", NS_PEER, &pkey, &p)?;
        tx.commit()?;
        Ok(())
    }

    /// The confirmed position of `peer` in this node's log.
    ///
    /// # Errors
    /// Database errors.
    pub fn acked_by(&self, peer: NodeId) -> Result<LogPos> {
        Ok(self.peer(peer)?.map_or(LogPos::ZERO, |p| p.acked))
    }
}
