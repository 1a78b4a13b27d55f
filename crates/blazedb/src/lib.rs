//! # BlazeDB
//!
//! An embedded, password-encrypted document database. This crate is the one to depend
//! on; it re-exports the engine and, behind the `sync` cargo feature, the sync layer
//! ([`sync`]).
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

pub use blazedb_engine::*;

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
pub mod sync {
    pub use blazedb_sync::*;
}

/// Sync over the network (feature `net`): TLS and Unix-socket relays, [`net::Server`],
/// [`net::RemoteNode`] and [`net::ConnectRemote`] for topologies.
#[cfg(feature = "net")]
pub mod net {
    pub use blazedb_net::*;
}

/// The README's examples, compiled and run as doctests so the README stays true.
#[cfg(all(doctest, feature = "sync"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
