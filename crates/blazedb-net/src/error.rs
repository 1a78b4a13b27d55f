//! Network errors. A relay's `dial` returns them typed; the sync layer, which knows no
//! transport, gets them through `Relay::connect` as an [`std::io::Error`] for its logs
//! and retries. Callers that act on the reason call `dial`.

use crate::frame::RefuseCode;

/// What went wrong on a sync connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Operating-system I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed (including a certificate that does not match the pin).
    #[error("TLS: {0}")]
    Tls(String),
    /// The other side refused the connection or closed it for a typed reason.
    #[error("refused by the peer ({}): {message}", code.as_str())]
    Refused { code: RefuseCode, message: String },
    /// The other side broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The other side sent nothing for too long.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Authentication failed on this side: missing credentials, or a server that could
    /// not prove it knows the shared secret.
    #[error("authentication: {0}")]
    Auth(String),
    /// The server closed the connection before it could say why (during TLS): it is
    /// at its limit of connections being set up, shutting down, or not a BlazeDB
    /// server. Try again later.
    #[error("the server is unavailable: {0}")]
    Unavailable(String),
    /// Bad configuration (addresses, certificates, credentials).
    #[error("configuration: {0}")]
    Config(String),
    /// The sync layer or the database refused (a server starting up, for instance).
    #[error(transparent)]
    Sync(#[from] blazedb_sync::SyncError),
}

impl From<blazedb_core::Error> for NetError {
    fn from(e: blazedb_core::Error) -> Self {
        NetError::Sync(blazedb_sync::SyncError::Db(e))
    }
}

impl NetError {
    /// The refusal code, if the peer refused.
    #[must_use]
    pub fn refused(&self) -> Option<RefuseCode> {
        match self {
            NetError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<NetError> for std::io::Error {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Io(io) => io,
            other => std::io::Error::other(other),
        }
    }
}
