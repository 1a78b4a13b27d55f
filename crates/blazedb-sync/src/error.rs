//! The sync layer's error type.

use crate::clock::{ClockSkew, Role};
use crate::merge::MergeError;
use crate::position::LogPos;

/// Everything that can go wrong in sync. Unless a variant says otherwise, a failed
/// operation changed nothing stored: applying a batch is one transaction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The local database failed (I/O, corruption, a unique index refusing a merged
    /// document, ...).
    #[error(transparent)]
    Db(#[from] blazedb_core::Error),

    /// Sync was enabled on this database with another role before; a database keeps
    /// its role.
    #[error("this database syncs as {stored}; it cannot be enabled as {requested}")]
    RoleMismatch { stored: Role, requested: Role },

    /// A peer's writes carry clock readings too far ahead of ours. Nothing of the batch
    /// was applied; the peer keeps the writes and retries.
    #[error(transparent)]
    ClockSkew(#[from] ClockSkew),

    /// A write could not be merged (non-causal delivery).
    #[error(transparent)]
    Merge(#[from] MergeError),

    /// A peer broke the protocol or sent a write it may not send. The connection should
    /// be closed; nothing of the offending batch was applied.
    #[error("protocol violation by the peer: {0}")]
    Protocol(String),

    /// A peer sent a collection name this database cannot hold: a protocol violation
    /// like [`SyncError::Protocol`] (the same text), with the engine's refusal kept.
    #[error("protocol violation by the peer: {0}")]
    BadName(#[source] blazedb_core::Error),

    /// A sync record in the local database could not be decoded (damage or a bug).
    #[error("sync record '{what}' is undecodable: {detail}")]
    Corrupt { what: &'static str, detail: String },

    /// A sync record could not be encoded (a bug): the codec's error kept.
    #[error("sync record '{what}' is undecodable: cannot encode: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },

    /// A sync record could not be decoded (damage or a bug): the codec's error kept.
    #[error("sync record '{what}' is undecodable: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },

    /// The peer asked for log entries this node no longer keeps (garbage-collected):
    /// it must bootstrap from a snapshot.
    #[error("log entries after {after} are no longer kept (kept from {floor})")]
    LogPruned { after: LogPos, floor: LogPos },

    /// The peer refused this node's writes: its credential does not allow them (a
    /// read-only user, a collection outside its permissions). Nothing of them was
    /// applied there; they stay pending here, and what the peer sends still arrives.
    #[error("the peer refused our writes: {0}")]
    Forbidden(String),

    /// A sync round did not complete in the time it was given (the peer unreachable,
    /// slow or refusing). `last_error` is the last connection error seen, if any.
    #[error("sync did not complete within {after:?}: {}", last_error.as_deref().unwrap_or("no connection"))]
    TimedOut {
        after: std::time::Duration,
        last_error: Option<String>,
    },

    /// The background task running sync work stopped (it panicked or the runtime is
    /// shutting down); the task's own error is kept.
    #[error("the sync task stopped: {0}")]
    Stopped(#[source] tokio::task::JoinError),
}

/// Shorthand for sync results.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;
