//! The BlazeDB engine: an embedded, password-encrypted document database.
//!
//! Layout:
//! - [`database`]: [`Database`] — open/create (key file, lock), flush, backup, password;
//!   the handle itself and its shared state are in `handle`, below everything that uses it.
//! - [`options`]: [`OpenOptions`], [`Durability`], [`OpenMode`].
//! - [`txn`]: [`ReadTxn`] and [`WriteTxn`] — snapshots, CRUD, change capture.
//! - [`Collection`] / [`TypedCollection`] ([`typed`]): per-collection handles, untyped and
//!   serde-typed.
//! - [`changes`]: the change log read by the sync layer.
//! - [`transfer`]: NDJSON export and import jobs; their record format, options and
//!   reports in `ndjson`, below the handle.
//! - `codec` (record formats), `vault` (sealing, tags), `keyfile`, `raw` (shared reads),
//!   `private` (files 0600 and directories 0700 from their creation on).
//!
//! The internal surface: [`internal`] (hidden from the documentation) holds what only
//! the sync layer may use — writes without change capture (`begin_apply`), the sync
//! layer's auxiliary records and logs, change-log pruning, merged puts that override
//! this database's index refusals, and the serde helpers of the sync formats. Each can
//! break an invariant applications rely on (an uncaptured write never replicates; a
//! merged put may share a unique value), so none is an inherent public method: they are
//! methods of sealed traits (`SyncDatabase`, `SyncWrite`, `SyncRead`) that a caller
//! must import by name, and no type outside the engine can implement. The rule: anything
//! the sync layer needs that an application must not call goes there, never into the
//! public types' inherent methods or public modules.
//!
//! Architecture invariants:
//! - Storage only ever receives sealed values and keyed tags: no document id, collection
//!   name or field value is written in plaintext (see `docs/security.md`).
//! - Every committed write has its change-log entry in the same storage commit.
//! - A wrong password never opens the data file, so it cannot modify it.
//! - The modules import each other one way (types a handle method names live below the
//!   handle; `index::maintain` above `index`), except the handle and the per-collection
//!   handles it makes (`collection`, `typed`): see `handle`.

#![forbid(unsafe_code)]

pub mod changes;
mod codec;
mod collection;
pub mod database;
mod decode;
mod format;
mod handle;
pub mod hooks;
pub mod index;
#[doc(hidden)]
pub mod internal;
pub mod json;
mod keyfile;
pub mod live;
mod ndjson;
pub mod options;
mod poison;
mod private;
pub mod query;
mod raw;
mod serde_fields;
mod space;
mod sync_records;
pub mod transfer;
pub mod txn;
pub mod typed;
mod vault;

pub use blazedb_core::{
    CorruptionSite, DocId, Document, Error, Fields, NameKind, ParseIdError, Result, Timestamp,
    Value,
};
pub use blazedb_crypto::KdfParams;
pub use blazedb_storage::TableSpace;
pub use changes::{Change, ChangeOp};
pub use database::{Database, database_path};
pub use handle::{Collection, TypedCollection};
pub use hooks::{CommitHook, Committed};
pub use index::{IndexInfo, IndexNote, IndexSpec};
pub use live::{Event, EventKind, Subscription, SubscriptionError};
pub use ndjson::{ExportReport, ImportOptions, ImportReport};
pub use options::{
    DEFAULT_CACHE_BYTES, DEFAULT_CHECKPOINT_BYTES, Durability, OpenMode, OpenOptions,
};
pub use query::{Filter, Order, Plan, Query};
pub use space::{CompactReport, SpaceReport};
pub use txn::{Patch, ReadTxn, WriteTxn};
pub use typed::{from_document_fields, to_document_fields};
