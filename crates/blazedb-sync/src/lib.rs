//! BlazeDB's sync layer.
//!
//! - [`clock`]: node ids, roles, the hybrid logical clock.
//! - [`vv`]: dots and version vectors.
//! - [`mod@write`]: a write as shipped between nodes; priorities and loss reasons.
//! - [`merge`]: the conflict rules of docs/semantics.md over one document's writes.
//! - [`node`]: [`SyncNode`], a database's persisted sync state: absorbing local writes,
//!   applying remote batches, the log peers read, cursors, the conflict log.
//! - [`LogPos`]: a position in a sync log (cursors, acks, batches).
//! - [`grant`]: what a peer may do, as its transport authenticated it; the session
//!   checks every message against it (`authz.rs`) and binds node ids to users
//!   (`principal.rs`).

#![forbid(unsafe_code)]

mod authz;
pub mod backend;
pub mod clock;
pub mod config;
mod conn;
mod error;
mod ext;
pub mod grant;
pub mod handle;
pub mod hub;
pub mod log_limit;
pub mod merge;
pub mod node;
mod peer;
mod position;
mod principal;
pub mod proto;
mod record;
pub mod relay;
pub mod session;
pub mod store;
pub mod topology;
pub mod vv;
mod workers;
pub mod write;

pub use clock::{Hlc, NodeId, Role, WallClock};
pub use config::{ConnectionMode, SyncAdvanced, SyncConfig};
pub use conn::ConnStatus;
pub use error::{Result, SyncError};
pub use ext::EnableSync;
pub use grant::Grant;
pub use handle::{SyncHandle, SyncProgress, SyncStatus};
pub use hub::ServeHandle;
pub use merge::{DocState, Loss, MergeError};
pub use node::{BatchReport, GcReport, Part, SnapshotPage, SyncNode};
pub use position::LogPos;
pub use proto::Msg;
pub use record::{ConflictEntry, Item, LogEntry, SnapDoc, SnapshotProgress};
pub use relay::{
    Budget, Delivery, Listener, MemoryListener, MemoryRelay, Relay, RelayTarget, Wire, memory,
};
pub use session::{Session, SessionConfig, SessionStats};
pub use store::{CommitSignal, SyncStore};
pub use topology::{NodeRef, SyncMode, Topology};
pub use vv::{Dot, Vv};
pub use write::{Held, LossReason, Op, Stamp, Write};
