//! The storage boundary: the only crate that names the storage engine (redb).
//!
//! - [`Store`]: one database file, its fixed set of byte→byte [`Table`]s, group commit;
//!   read-only stores ([`Store::open_read_only`]) leave the file's bytes untouched.
//! - [`ReadTx`] / [`WriteTx`]: snapshot reads and the single writer.
//! - [`group`]: group commit (many non-durable commits made durable by one fsync).
//!
//! Rooms, each importing only rooms below it (no circle of module imports): `error`,
//! `table` (the [`Table`] set), `group`, `overlay`, `cache` (decoded values of committed
//! records, see [`ReadTx::get_cached`]), `snapshot` (the read snapshot readers share
//! until the next commit) at the bottom; `shared` (the open
//! file, group-commit state and writer mark that a store and its write transaction
//! share); `tx` (transactions, over `shared`); `store` (opening, flushing, backups,
//! over `tx` and `shared`). Rooms import each other's items from the defining room,
//! never through this crate root.
//!
//! Architecture invariants:
//! - Keys and values are opaque bytes here; this crate never sees plaintext user data
//!   (the engine seals everything before it arrives).
//! - No redb type crosses this crate's public API; errors are [`StorageError`].
//! - A panic inside the storage engine (possible on a corrupted file) is caught at this
//!   boundary and reported as [`StorageError::Corrupted`]; after one, the store refuses
//!   further writes.

#![forbid(unsafe_code)]

mod cache;
mod error;
pub mod group;
mod journal;
mod overlay;
mod shared;
mod snapshot;
mod store;
mod table;
mod tx;

pub use error::StorageError;
pub use journal::DEFAULT_CHECKPOINT_BYTES;
pub use store::{Store, StoreOptions};
pub use table::Table;
pub use tx::{Bounds, Entry, ReadTx, TableSpace, WriteTx, prefix_upper};
