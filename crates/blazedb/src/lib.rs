//! # BlazeDB
//!
//! An embedded, password-encrypted document database. This crate is the one to depend
//! on: every type an application needs, each under one path — the database and its
//! documents at the root, [`json`] for exact JSON mapping, and behind cargo features
//! the sync layer ([`sync`], feature `sync`) and sync over the network ([`net`],
//! feature `net`). The crates behind it (`blazedb-engine`, `blazedb-sync`,
//! `blazedb-net`) also hold what only the layers above them use; nothing here leads
//! there.
//!
//! Errors: [`Error`] and [`Result`] for the database; [`sync::SyncError`] for sync;
//! [`net::NetError`] for connections.
//!
//! ```
//! # fn main() -> blazedb::Result<()> {
//! use blazedb::{Database, Document, Patch};
//!
//! let dir = tempfile::tempdir().expect("tempdir");
//! let db = Database::open(dir.path(), "notes", "correct horse battery staple")?;
//! let todo = db.collection("todo");
//! let id = todo.insert(Document::new().with("title", "write docs").with("done", false))?;
//! todo.patch(id, &Patch::new().set("done", true))?;
//!
//! // Several writes across collections, atomically:
//! let mut tx = db.begin_write()?;
//! tx.insert("log", Document::new().with("event", "done"))?;
//! tx.delete("todo", id)?;
//! tx.commit()?;
//! assert_eq!(todo.count()?, 0);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Opening a database.
pub use blazedb_engine::{
    DEFAULT_CACHE_BYTES, DEFAULT_CHECKPOINT_BYTES, Database, Durability, KdfParams, OpenMode,
    OpenOptions, database_path,
};
// Where a database's bytes go, and compaction.
pub use blazedb_engine::{CompactReport, SpaceReport, TableSpace};
// Documents and values.
pub use blazedb_engine::{DocId, Document, Fields, ParseIdError, Timestamp, Value};
// Reading and writing.
pub use blazedb_engine::{Collection, Patch, ReadTxn, WriteTxn};
// Documents as Rust types (serde).
pub use blazedb_engine::{TypedCollection, from_document_fields, to_document_fields};
// Queries and indexes.
pub use blazedb_engine::query::{Access, Cmp, FieldPath};
pub use blazedb_engine::{Filter, IndexInfo, IndexNote, IndexSpec, Order, Plan, Query};
// Live queries and commit hooks.
pub use blazedb_engine::{CommitHook, Event, EventKind, Subscription, SubscriptionError};
// Export and import.
pub use blazedb_engine::{ExportReport, ImportOptions, ImportReport};
// Errors.
pub use blazedb_engine::{CorruptionSite, Error, NameKind, Result};

/// Values ↔ JSON, exactly (the mapping export, import and the CLI use).
pub mod json {
    pub use blazedb_engine::json::{fields_from_json, fields_to_json, from_json, to_json};
}

/// The sync layer (feature `sync`): roles, the conflict rules, relays, topologies.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use blazedb::sync::{ConnectionMode, Role, SyncMode, Topology};
/// use blazedb::{Database, Document, KdfParams};
///
/// let dir = tempfile::tempdir()?;
/// let open = |name: &str| Database::builder().kdf(KdfParams::INSECURE_FAST).open(dir.path(), name, "pw");
/// let (server, client) = (open("server")?, open("client")?);
/// let mut topo = Topology::new();
/// let s = topo.register(&server, "server", SyncMode::LocalAndRemote, Role::Server)?;
/// let c = topo.register(&client, "client", SyncMode::LocalAndRemote, Role::Client)?;
/// topo.connect_local(c, s, ConnectionMode::Bidirectional)?;
/// let id = client.collection("notes").insert(Document::new().with("text", "hello"))?;
/// topo.sync_all(std::time::Duration::from_secs(10)).await?;
/// assert!(server.collection("notes").get(id)?.is_some());
/// # topo.shutdown().await;
/// # Ok(()) }
/// ```
#[cfg(feature = "sync")]
#[cfg_attr(docsrs, doc(cfg(feature = "sync")))]
pub mod sync {
    // Turning sync on, and watching it.
    pub use blazedb_sync::{ConnStatus, SessionStats};
    pub use blazedb_sync::{
        EnableSync, SyncAdvanced, SyncConfig, SyncHandle, SyncProgress, SyncStatus, WallClock,
    };
    // Roles and identities.
    pub use blazedb_sync::{NodeId, Role};
    // What a write carries, and what lost.
    pub use blazedb_sync::{ConflictEntry, Dot, Held, Hlc, LossReason, Stamp};
    // A database's sync state.
    pub use blazedb_sync::{GcReport, LogPos, SyncNode};
    // Several databases in one process.
    pub use blazedb_sync::{ConnectionMode, NodeRef, SyncMode, Topology};
    // Transports: implement [`Relay`] and [`Listener`] for another one.
    pub use blazedb_sync::{
        Budget, Delivery, Grant, Listener, MemoryListener, MemoryRelay, Msg, Relay, Wire, memory,
    };
    // Errors.
    pub use blazedb_sync::SyncError;
}

/// Sync over the network (feature `net`): TLS and Unix-socket relays, [`net::Server`],
/// [`net::RemoteNode`] and [`net::ConnectRemote`] for topologies.
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub mod net {
    // Serving a database.
    pub use blazedb_net::server::PORT_DEFAULT;
    pub use blazedb_net::{Server, ServerConfig, ServerIdentity, TlsSetup};
    // Connecting to a server.
    #[cfg(unix)]
    pub use blazedb_net::UnixRelay;
    pub use blazedb_net::{ConnectRemote, Credentials, DialOptions, RemoteNode, Security};
    pub use blazedb_net::{Fingerprint, ServerTrust, TcpRelay};
    // The listener's limits and controls.
    pub use blazedb_net::listener::{
        CONNECTIONS_MAX_DEFAULT, HANDSHAKES_MAX_DEFAULT, HANDSHAKES_PER_IP_DEFAULT,
        READ_BUDGET_DEFAULT, SEND_BUDGET_DEFAULT,
    };
    pub use blazedb_net::{ListenOptions, ListenerControl, ListenerStats, Liveness, NetListener};
    // Named users.
    pub use blazedb_net::users::users_path;
    pub use blazedb_net::{Permissions, UserDirectory, UserFile, UsersEdit, UsersFile, UsersPlace};
    // Errors.
    pub use blazedb_net::{NetError, RefuseCode};
}

/// The README's examples, compiled and run as doctests so the README stays true.
#[cfg(all(doctest, feature = "sync"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
