//! A write as the sync layer sees it: one insert/put/patch/delete of one document,
//! stamped at its origin, with the causal context the conflict rules need.
//!
//! These are the records of the sync log and the payload of sync messages; their
//! encoding (postcard) is part of the disk and wire formats (`docs/format.md`,
//! `docs/protocol.md`): append variants and fields, never reorder.

use std::cmp::Ordering;

use blazedb_core::{DocId, Fields, Value};
use serde::{Deserialize, Serialize};

use crate::clock::{Hlc, NodeId, Role};
use crate::vv::{Dot, Vv};

/// What a write does to its document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// The document's whole content (insert, put of a new id, put replacing, or
    /// re-creation after a delete). Everything the origin had seen of the document is
    /// overwritten; fields written concurrently elsewhere are not.
    Put {
        #[serde(with = "blazedb_engine::internal::serde_fields")]
        fields: Fields,
    },
    /// Some fields set, some removed (patch).
    Patch {
        #[serde(with = "blazedb_engine::internal::serde_fields")]
        set: Fields,
        unset: Vec<String>,
    },
    /// The document deleted.
    Delete,
}

/// Who made a write, when, and with what priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub dot: Dot,
    pub hlc: Hlc,
    pub role: Role,
}

impl Stamp {
    /// The origin node.
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.dot.node
    }

    /// Priority between two *concurrent* writes (docs/semantics.md rules 2 and 3): the server
    /// role first, then the later clock reading, then the larger node id. Total: two
    /// distinct writes never compare equal (a node's readings strictly increase).
    #[must_use]
    pub fn priority_cmp(&self, other: &Stamp) -> Ordering {
        (self.role, self.hlc, self.dot.node, self.dot.counter).cmp(&(
            other.role,
            other.hlc,
            other.dot.node,
            other.dot.counter,
        ))
    }

    /// Whether `self` wins over the concurrent `other`.
    #[must_use]
    pub fn beats(&self, other: &Stamp) -> bool {
        self.priority_cmp(other) == Ordering::Greater
    }
}

/// One write to one document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Write {
    pub collection: String,
    #[serde(with = "doc_id")]
    pub id: DocId,
    pub stamp: Stamp,
    /// The document's writes the origin had seen when it made this one (a version
    /// vector over the document's writers).
    pub ctx: Vv,
    pub op: Op,
}

/// Why a write lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossReason {
    /// A concurrent write of a server-role node won over a client-role write.
    ServerPriority,
    /// Same role: the concurrent write with the later stamp won (ties: node id).
    LaterTimestamp,
    /// The write was never sent: this node was away longer than its peer's retention
    /// and had to bootstrap again (the write could no longer be judged by the rules).
    RetentionExpired,
    /// The merged document had no room left for the write's values: together with
    /// concurrent writes admitted before it, they would exceed the largest document the
    /// engine stores (see `merge`'s module docs, rule 5). Its values are absent.
    TooLarge,
}

impl LossReason {
    /// The reason `winner` beat the concurrent `loser`.
    #[must_use]
    pub fn between(winner: &Stamp, loser: &Stamp) -> LossReason {
        if winner.role > loser.role {
            LossReason::ServerPriority
        } else {
            LossReason::LaterTimestamp
        }
    }
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossReason::ServerPriority => "server priority",
            LossReason::LaterTimestamp => "later timestamp",
            LossReason::RetentionExpired => "retention expired",
            LossReason::TooLarge => "document too large",
        })
    }
}

/// What a losing or winning side held: a field value, a removed field, or a delete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Held {
    Value(#[serde(with = "blazedb_engine::internal::serde_fields::value")] Value),
    Unset,
    Deleted,
    /// A write that kept the document alive (it beat a delete).
    Updated,
}

/// Document ids as their 16 bytes.
pub(crate) mod doc_id {
    use blazedb_core::DocId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(id: &DocId, s: S) -> Result<S::Ok, S::Error> {
        id.as_bytes().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DocId, D::Error> {
        Ok(DocId::from_bytes(<[u8; 16]>::deserialize(d)?))
    }
}
