//! [`LogPos`]: a position in a sync log, typed so that it cannot be mixed up with the
//! other counters beside it (timestamps, counts, snapshot slots, the engine's change
//! sequence, the conflict log's positions).

use serde::{Deserialize, Serialize};

/// A position in a node's sync log: the sequence number of one entry, counted from 1
/// in the order the node took them. Whose log it indexes depends on where it is held:
/// this node's (`log_last`, `log_floor`, what a peer acknowledged) or, received from a
/// peer, that peer's (`recv_cursor`, a `Batch`'s `upto`). [`LogPos::ZERO`] means
/// "before the first entry" (nothing yet).
///
/// Encoded as the bare `u64` it replaced (`#[serde(transparent)]`): the wire messages
/// and the disk records keep their bytes. Positions only move forward, so the type
/// offers stepping and distances, not arithmetic.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LogPos(u64);

impl LogPos {
    /// Before the first entry: an empty log, or nothing of it applied or confirmed.
    pub const ZERO: LogPos = LogPos(0);

    /// The position with sequence number `seq`.
    #[must_use]
    pub const fn new(seq: u64) -> LogPos {
        LogPos(seq)
    }

    /// The sequence number (for storage keys, and for the engine's log API).
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The position of the entry after this one.
    #[must_use]
    pub const fn next(self) -> LogPos {
        LogPos(self.0 + 1)
    }

    /// The position before this one ([`LogPos::ZERO`] stays where it is).
    #[must_use]
    pub const fn prev(self) -> LogPos {
        LogPos(self.0.saturating_sub(1))
    }

    /// The position `n` entries after this one (chunked walks over the log).
    #[must_use]
    pub const fn advance(self, n: u64) -> LogPos {
        LogPos(self.0 + n)
    }

    /// How many entries lie after `earlier` up to and including this position (0 if
    /// `earlier` is not before it).
    #[must_use]
    pub const fn entries_since(self, earlier: LogPos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl From<u64> for LogPos {
    fn from(seq: u64) -> LogPos {
        LogPos(seq)
    }
}

impl From<LogPos> for u64 {
    fn from(pos: LogPos) -> u64 {
        pos.0
    }
}

impl std::fmt::Display for LogPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::LogPos;

    #[test]
    fn encodes_as_the_bare_u64() {
        for n in [0u64, 1, 127, 128, 300, u64::MAX] {
            let typed = postcard::to_allocvec(&LogPos::new(n)).expect("encode");
            let bare = postcard::to_allocvec(&n).expect("encode");
            assert_eq!(typed, bare);
            let back: LogPos = postcard::from_bytes(&bare).expect("decode");
            assert_eq!(back, LogPos::new(n));
        }
    }

    /// The records and messages that hold positions keep the bytes they had with bare
    /// `u64`s (postcard: a struct is the tuple of its fields, a variant its index).
    #[test]
    fn records_and_messages_keep_their_bytes() {
        use crate::clock::Role;
        use crate::proto::Msg;
        use crate::record::{PeerRecord, SnapshotProgress};
        let p = PeerRecord {
            role: Some(Role::Client),
            recv_cursor: LogPos::new(300),
            acked: LogPos::new(7),
            last_seen_us: 99,
            acks: vec![(LogPos::new(5), LogPos::new(200))],
            stable: LogPos::new(4),
            snapshot: Some(SnapshotProgress {
                at: LogPos::new(1_000),
                slot: 3,
            }),
            forgotten: false,
        };
        let bare = (
            Some(Role::Client),
            300u64,
            7u64,
            99u64,
            vec![(5u64, 200u64)],
            4u64,
            Some((1_000u64, 3u64)),
            false,
        );
        assert_eq!(
            postcard::to_allocvec(&p).expect("encode"),
            postcard::to_allocvec(&bare).expect("encode")
        );
        let ack = Msg::Ack {
            upto: LogPos::new(300),
            log_last: LogPos::new(5),
        };
        // `Ack` is variant 2.
        assert_eq!(
            postcard::to_allocvec(&ack).expect("encode"),
            postcard::to_allocvec(&(2u32, 300u64, 5u64)).expect("encode")
        );
        // And literally: varint 2, varint 300, varint 5.
        assert_eq!(
            postcard::to_allocvec(&ack).expect("encode"),
            [2, 0xAC, 0x02, 5]
        );
    }

    #[test]
    fn steps_and_distances() {
        assert_eq!(LogPos::ZERO.next(), LogPos::new(1));
        assert_eq!(LogPos::ZERO.prev(), LogPos::ZERO);
        assert_eq!(LogPos::new(5).prev(), LogPos::new(4));
        assert_eq!(LogPos::new(5).advance(3), LogPos::new(8));
        assert_eq!(LogPos::new(8).entries_since(LogPos::new(5)), 3);
        assert_eq!(LogPos::new(5).entries_since(LogPos::new(8)), 0);
        assert_eq!(LogPos::new(42).to_string(), "42");
    }
}
