//! The peer of a session as its `Hello` introduced it: shared by the session, which
//! learns it, and `authz.rs`, which judges the peer's messages by it (so neither
//! imports the other).

use crate::clock::{NodeId, Role};

/// The peer, once its `Hello` arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub node: NodeId,
    pub role: Role,
    /// Whether we send to it (our mode and its acceptance).
    pub we_send: bool,
    /// Whether it sends to us and we accept.
    pub we_accept: bool,
}
