//! [`SyncConfig`]: the one configuration of sync a user builds, with the advanced
//! knobs inside it ([`SyncAdvanced`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use blazedb_engine::Durability;

use crate::clock::{DRIFT_MAX_DEFAULT_US, WallClock, wall_now_us};

/// Default retention of silent peers: 30 days.
pub const RETENTION_DEFAULT_US: u64 = 30 * 24 * 3600 * 1_000_000;

/// Which directions a connection carries, seen from this side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionMode {
    /// Both ways.
    #[default]
    Bidirectional,
    /// Only receive the peer's writes.
    PullOnly,
    /// Only send our writes.
    PushOnly,
}

impl ConnectionMode {
    pub(crate) fn sends(self) -> bool {
        self != ConnectionMode::PullOnly
    }
    pub(crate) fn accepts(self) -> bool {
        self != ConnectionMode::PushOnly
    }
}

/// How a database syncs: built once, with [`Default`] and the builder methods, and
/// passed to every entry point (`enable_sync_with`, [`crate::SyncNode::enable`],
/// [`crate::ServeHandle::start`], [`crate::Topology`], `blazedb_net::Server::sync`).
///
/// ```
/// use std::time::Duration;
/// use blazedb_sync::SyncConfig;
///
/// let config = SyncConfig::default()
///     .collections(["todo"])
///     .local_fields(["draft"])
///     .retention(Duration::from_secs(7 * 24 * 3600));
/// assert!(config.live);
/// ```
///
/// The knobs most users set are fields at the top level; the ones that tune the
/// machinery (batch size, clock injection, drift bound, stamping, garbage-collection
/// rate, durability) live in [`SyncConfig::advanced`], so the common case reads short
/// and the rest stays one field away (`config.advanced.batch_size`).
///
/// Some knobs belong to the database and some to one connection:
/// - the database's ([`SyncConfig::local_fields`], [`SyncConfig::retention_us`],
///   [`SyncConfig::tombstone_gc`], and every advanced knob but `batch_size`) are taken
///   when sync is enabled on it (the node keeps them for all its connections);
/// - a connection's ([`SyncConfig::collections`], [`SyncConfig::mode`],
///   [`SyncConfig::live`] / [`SyncConfig::interval`], `advanced.batch_size`) are taken
///   each time a connection starts, from the configuration passed for it.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Collections that sync (`None`: every collection). Writes to others stay local.
    /// Per connection.
    pub collections: Option<BTreeSet<String>>,
    /// The connection's direction, from this side. Per connection.
    pub mode: ConnectionMode,
    /// Live: changes go out as they commit. Periodic: every `interval`. Per connection.
    pub live: bool,
    /// How often changes go out when not live. Per connection.
    pub interval: Duration,
    /// Top-level fields that never sync: they stay in this database's documents, are
    /// never sent, and remote writes leave them alone (a remote delete still removes
    /// the whole document; and where a merged document grows so that one no longer
    /// fits beside it within the engine's document limit, it is dropped with a
    /// warning: those that still fit are kept, in name order). Exclusion belongs to the
    /// database rather than to one connection: a field kept off one connection would
    /// still travel over another and come back through a third.
    pub local_fields: BTreeSet<String>,
    /// A peer not heard from for this long (µs) is forgotten: garbage collection stops
    /// waiting for it, and if it comes back it must bootstrap again (its unsent writes
    /// go to its conflict log as expired). Default: 30 days. Per database.
    pub retention_us: u64,
    /// Collect tombstones and conflict history once stable (see
    /// [`crate::SyncNode::collect_garbage`]). Safe only on a node that every other node
    /// syncs with directly — the server of a hub-and-spoke deployment — so off by
    /// default; the sync log is pruned either way. Per database.
    pub tombstone_gc: bool,
    /// The knobs that tune the machinery.
    pub advanced: SyncAdvanced,
}

/// The advanced knobs of a [`SyncConfig`]: defaults suit almost every deployment;
/// tests and simulations inject their clock here.
#[derive(Clone)]
pub struct SyncAdvanced {
    /// Writes per batch (at most [`crate::proto::BATCH_WRITES_MAX`]). Per connection.
    pub batch_size: usize,
    /// How far ahead of the local clock a remote stamp may be, µs (docs/semantics.md,
    /// "Clock hygiene").
    pub drift_max_us: u64,
    /// The wall clock (the system clock by default; simulations inject their own).
    pub clock: WallClock,
    /// Stamp local writes with the time they were made (from the change log) rather
    /// than the time sync took them over. On by default; simulations with an injected
    /// clock turn it off.
    pub stamp_with_write_time: bool,
    /// How often sessions run garbage collection, µs (at most; they share the rate).
    pub gc_every_us: u64,
    /// Durability of the sync layer's own transactions (applied batches, taken-over
    /// local writes). Durable by default: a batch is acknowledged only once it is on
    /// disk, so a peer may forget what it sent.
    pub durability: Durability,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            collections: None,
            mode: ConnectionMode::Bidirectional,
            live: true,
            interval: Duration::from_secs(5),
            local_fields: BTreeSet::new(),
            retention_us: RETENTION_DEFAULT_US,
            tombstone_gc: false,
            advanced: SyncAdvanced::default(),
        }
    }
}

impl Default for SyncAdvanced {
    fn default() -> Self {
        Self {
            batch_size: 256,
            drift_max_us: DRIFT_MAX_DEFAULT_US,
            clock: Arc::new(wall_now_us),
            stamp_with_write_time: true,
            gc_every_us: 10_000_000,
            durability: Durability::Immediate,
        }
    }
}

impl std::fmt::Debug for SyncAdvanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncAdvanced")
            .field("batch_size", &self.batch_size)
            .field("drift_max_us", &self.drift_max_us)
            .field("stamp_with_write_time", &self.stamp_with_write_time)
            .field("gc_every_us", &self.gc_every_us)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl SyncConfig {
    /// Only these collections sync.
    #[must_use]
    pub fn collections<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.collections = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Changes go out every `interval` instead of as they commit.
    #[must_use]
    pub fn periodic(mut self, interval: Duration) -> Self {
        self.live = false;
        self.interval = interval;
        self
    }

    /// The connection's direction, from this side.
    #[must_use]
    pub fn mode(mut self, mode: ConnectionMode) -> Self {
        self.mode = mode;
        self
    }

    /// These top-level fields never sync (see [`SyncConfig::local_fields`]).
    #[must_use]
    pub fn local_fields<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.local_fields = names.into_iter().map(Into::into).collect();
        self
    }

    /// Peers silent for longer than `retention` are forgotten (see
    /// [`SyncConfig::retention_us`]).
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention_us = micros(retention);
        self
    }

    /// Whether to collect tombstones and conflict history (see
    /// [`SyncConfig::tombstone_gc`]).
    #[must_use]
    pub fn tombstone_gc(mut self, on: bool) -> Self {
        self.tombstone_gc = on;
        self
    }

    /// The advanced knobs.
    #[must_use]
    pub fn advanced(mut self, advanced: SyncAdvanced) -> Self {
        self.advanced = advanced;
        self
    }
}

impl SyncAdvanced {
    /// Writes per batch.
    #[must_use]
    pub fn batch_size(mut self, writes: usize) -> Self {
        self.batch_size = writes;
        self
    }

    /// How far ahead of the local clock a remote stamp may be.
    #[must_use]
    pub fn drift_max(mut self, drift: Duration) -> Self {
        self.drift_max_us = micros(drift);
        self
    }

    /// The wall clock, in µs since the epoch.
    #[must_use]
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether local writes are stamped with the time they were made.
    #[must_use]
    pub fn stamp_with_write_time(mut self, on: bool) -> Self {
        self.stamp_with_write_time = on;
        self
    }

    /// How often sessions run garbage collection, at most.
    #[must_use]
    pub fn gc_every(mut self, every: Duration) -> Self {
        self.gc_every_us = micros(every);
        self
    }

    /// Durability of the sync layer's own transactions.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}
