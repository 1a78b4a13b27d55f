//! Node identity, roles and the hybrid logical clock (HLC) that stamps every write.
//!
//! Invariants:
//! - A node's stamps strictly increase, and a node that has applied a write stamps
//!   every later write of its own after it ([`Clock::observe`] runs before a remote write
//!   is applied). So "made after seeing" implies "later stamp", which the conflict rules
//!   and the merge's pruning rely on.
//! - A remote stamp more than the drift bound ahead of the local wall clock is refused
//!   ([`Clock::check_drift`]), never clamped: clamping would make replicas disagree, and
//!   accepting would let one fast clock win every later conflict. A refused write stays
//!   pending at its origin until real time catches up with it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A sync node's identity: 64 random bits, chosen when sync is first enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    /// A fresh random id.
    ///
    /// # Errors
    /// The operating system's random source failed.
    pub fn random() -> Result<NodeId, getrandom::Error> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b)?;
        Ok(NodeId(u64::from_le_bytes(b)))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A database's sync role. `Server` has priority over `Client` in concurrent conflicts
/// (docs/semantics.md rule 2); the order of the variants is that priority.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Role {
    #[default]
    Client,
    Server,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Client => "client",
            Role::Server => "server",
        })
    }
}

/// A hybrid logical clock reading: wall-clock microseconds since the Unix epoch, and a
/// counter that orders readings within one microsecond (or while the wall clock lags
/// behind what the node has seen). Ordered by `(wall_us, logical)`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    pub wall_us: u64,
    pub logical: u32,
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_us, self.logical)
    }
}

/// Default bound on how far ahead of the local clock a remote stamp may be: 5 minutes.
pub const DRIFT_MAX_DEFAULT_US: u64 = 5 * 60 * 1_000_000;

/// A remote stamp was too far ahead of the local clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("remote clock is {ahead_us} µs ahead of ours (more than the {bound_us} µs allowed)")]
pub struct ClockSkew {
    pub ahead_us: u64,
    pub bound_us: u64,
}

/// A node's clock state (persisted with the sync metadata).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// The latest reading issued or observed.
    pub last: Hlc,
}

impl Clock {
    /// A new reading for a local write made at wall time `at_us`, later than every
    /// reading issued or observed so far.
    pub fn tick(&mut self, at_us: u64) -> Hlc {
        self.last = if at_us > self.last.wall_us {
            Hlc {
                wall_us: at_us,
                logical: 0,
            }
        } else if self.last.logical == u32::MAX {
            Hlc {
                wall_us: self.last.wall_us + 1,
                logical: 0,
            }
        } else {
            Hlc {
                wall_us: self.last.wall_us,
                logical: self.last.logical + 1,
            }
        };
        self.last
    }

    /// Takes note of a remote reading (so later local readings come after it).
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }

    /// Refuses a remote reading more than `bound_us` ahead of local wall time `now_us`.
    ///
    /// # Errors
    /// [`ClockSkew`] with the measured lead.
    pub fn check_drift(remote: Hlc, now_us: u64, bound_us: u64) -> Result<(), ClockSkew> {
        let ahead_us = remote.wall_us.saturating_sub(now_us);
        if ahead_us > bound_us {
            return Err(ClockSkew { ahead_us, bound_us });
        }
        Ok(())
    }
}

/// The local wall clock in microseconds since the Unix epoch (0 before 1970).
#[must_use]
pub fn wall_now_us() -> u64 {
    u64::try_from(blazedb_core::Timestamp::now().as_micros()).unwrap_or(0)
}

/// A source of wall-clock time in microseconds since the epoch.
pub type WallClock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_strictly_increase_even_when_the_wall_clock_goes_back() {
        let mut c = Clock::default();
        let a = c.tick(100);
        let b = c.tick(50);
        let d = c.tick(100);
        assert!(a < b && b < d);
        assert_eq!(d.wall_us, 100);
    }

    #[test]
    fn a_tick_after_observing_a_remote_reading_is_later_than_it() {
        let mut c = Clock::default();
        c.tick(10);
        let remote = Hlc {
            wall_us: 1_000,
            logical: 7,
        };
        c.observe(remote);
        assert!(c.tick(20) > remote);
    }

    #[test]
    fn the_logical_counter_overflows_into_the_wall_time() {
        let mut c = Clock {
            last: Hlc {
                wall_us: 5,
                logical: u32::MAX,
            },
        };
        let next = c.tick(1);
        assert_eq!(
            next,
            Hlc {
                wall_us: 6,
                logical: 0
            }
        );
    }

    #[test]
    fn stamps_beyond_the_drift_bound_are_refused_with_the_measured_lead() {
        let r = Hlc {
            wall_us: 10_000,
            logical: 0,
        };
        assert!(Clock::check_drift(r, 9_000, 1_000).is_ok());
        assert_eq!(
            Clock::check_drift(r, 8_000, 1_000),
            Err(ClockSkew {
                ahead_us: 2_000,
                bound_us: 1_000
            })
        );
    }
}
