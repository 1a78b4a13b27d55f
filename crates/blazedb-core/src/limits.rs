//! The bounds on what a user stores: names, value nesting, document and auxiliary record
//! sizes, writes per transaction. A limit that is hit yields a typed error
//! ([`crate::Error::TooLarge`] or [`crate::Error::InvalidValue`]), never a panic.
//!
//! Bounds that belong to one mechanism live beside the code that enforces them and
//! cite the ones here they derive from: index keys and fields (engine `index/mod.rs`),
//! subscriptions (engine `live.rs`), import lines (engine `transfer.rs`), sync batches
//! (sync `proto.rs`), frames (net `frame.rs`), connections and budgets (net
//! `listener.rs`), KDF parameters (crypto `kdf.rs`).

/// Longest database or collection name, in bytes.
pub const NAME_LEN_MAX: usize = 64;
/// Longest field name, in bytes.
pub const FIELD_NAME_LEN_MAX: usize = 256;
/// Deepest nesting of arrays and maps inside a document (top-level fields are depth 1).
/// Bounds recursion in encoders and decoders.
pub const VALUE_DEPTH_MAX: usize = 32;
/// Largest encoded document, in bytes (before padding and encryption).
pub const DOCUMENT_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest auxiliary record (the layers above the engine keep their state in them).
/// Larger than a document on purpose: the sync layer's merge state of one document holds
/// the versions concurrent writers made of it until they are settled, each up to a
/// document in size, so it can outgrow one document (`blazedb-sync`'s `merge.rs`).
pub const AUX_RECORD_BYTES_MAX: usize = 1 << 30;
/// Most writes (document changes) a single transaction may hold.
pub const TXN_WRITES_MAX: usize = 4_000_000;
/// Most change-log entries returned by one read of the change log.
pub const CHANGE_BATCH_MAX: usize = 100_000;
