//! BlazeDB's sync layer.
//!
//! - [`clock`]: node ids, roles, the hybrid logical clock.
//! - [`vv`]: dots and version vectors.
//! - [`write`]: a write as shipped between nodes; priorities and loss reasons.
//! - [`merge`]: the conflict rules of SPEC §3.2 over one document's writes.

#![forbid(unsafe_code)]

pub mod clock;
pub mod merge;
pub mod vv;
pub mod write;

pub use clock::{Hlc, NodeId, Role};
pub use merge::{DocState, Loss, MergeError};
pub use vv::{Dot, Vv};
pub use write::{Held, LossReason, Op, Stamp, Write};
