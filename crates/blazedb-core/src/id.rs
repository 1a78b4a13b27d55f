//! Document ids.
//!
//! Invariant: this module depends on no other module of the crate (the error type names
//! [`DocId`]): parsing fails with this module's own [`ParseIdError`], which the crate's
//! error type converts from, so the lower modules can all use ids without a circle of
//! imports.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A document id: a UUID, time-ordered (v7) when BlazeDB generates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocId(pub Uuid);

impl DocId {
    /// A fresh time-ordered (UUIDv7) id.
    #[must_use]
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The 16 bytes of the id, big-endian as in the UUID's text form.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Builds an id from its 16 bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

impl Default for DocId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl From<Uuid> for DocId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

/// Text that is not a document id. Converts into the crate's error as
/// `Error::InvalidValue`, so `?` works in functions returning `blazedb::Result`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a document id (a UUID): {reason}")]
pub struct ParseIdError {
    text: String,
    reason: String,
}

impl FromStr for DocId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        Uuid::parse_str(s).map(DocId).map_err(|e| ParseIdError {
            text: s.to_owned(),
            reason: e.to_string(),
        })
    }
}
