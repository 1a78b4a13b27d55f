//! Domain types shared by every BlazeDB crate.
//!
//! - [`value`]: the document value model ([`Value`], [`Timestamp`]).
//! - [`id`]: [`DocId`] (depends on nothing else here).
//! - [`document`]: [`Document`] and its field validation.
//! - [`name`]: validation of database, collection and field names.
//! - [`limits`]: every bound the engine enforces, as named constants.
//! - [`error`]: the umbrella [`Error`] returned by the public API.
//!
//! Architecture invariant: nothing here knows about storage, encryption or the wire.
//! These types are not serde types; disk and wire formats convert to and from them
//! explicitly, so a format change is a visible decision.

pub mod document;
pub mod error;
pub mod id;
pub mod limits;
pub mod name;
pub mod value;

pub use document::{Document, Fields};
pub use error::{CorruptionSite, Error, NameKind, Result};
pub use id::{DocId, ParseIdError};
pub use value::{Timestamp, Value};
