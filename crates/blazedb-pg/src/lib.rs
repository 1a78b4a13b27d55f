//! The PostgreSQL store of scale-out sync servers (SPEC: when one machine is not
//! enough, server state lives in PostgreSQL and several stateless server processes
//! share it).
//!
//! [`PgStore`] implements the sync node's storage ([`blazedb_sync::backend::NodeDb`]),
//! so a server process runs the same sync rules as over its embedded database, with
//! its state in PostgreSQL:
//!
//! - **One writer at a time, across processes.** A write transaction takes a
//!   transaction-scoped advisory lock of its database first; a second process's write
//!   waits until the first commits or rolls back. Everything a transaction reads and
//!   writes (merge states, the log, cursors, the clock) is therefore serialized by
//!   Postgres, never by process memory, and log positions are assigned under the lock
//!   in commit order: a reader's snapshot (`REPEATABLE READ`) holds every position
//!   below the newest it sees.
//! - **Encrypted as at rest.** Postgres holds keyed tags (HMAC-SHA256) of namespaces,
//!   collections, keys and ids, and values sealed with XChaCha20-Poly1305 under a key
//!   derived from the database password (Argon2id; the salt and the wrapped data key
//!   are stored): an administrator sees counts, sizes and log positions, never a
//!   document, a field name or an id (`seal.rs`).
//! - **Live across processes.** A commit that grows the log notifies the channel
//!   `blazedb_log` (payload: the database's lock key) in the same transaction; every process
//!   listens and wakes its sessions (`notify.rs`).
//! - **Schema by the server itself**, versioned migrations in one transaction under an
//!   advisory lock (`schema.rs`).

#![forbid(unsafe_code)]

mod conn;
mod notify;
mod pending;
mod pool;
mod schema;
mod seal;
mod tls;
mod tx;

use std::sync::Arc;

use blazedb_core::{Error, Result};
use blazedb_crypto::KdfParams;
use blazedb_sync::backend::{NodeDb, NodeRead, NodeTx};
use blazedb_sync::store::CommitSignal;

pub use pool::PoolOptions;
pub use tls::StoreTls;

use crate::pool::Pool;
use crate::seal::Sealer;

/// The namespace of values every server process of a database shares
/// ([`PgStore::shared`]): the self-signed TLS identity, the named users.
const SHARED_NS: &str = "server.shared";

/// The key of shared value `name`'s generation (a NUL cannot be in a value's name).
fn generation_key(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.extend_from_slice(b"\0generation");
    k
}

/// Longest database name (it is stored, and names the advisory lock).
pub const NAME_BYTES_MAX: usize = 64;

/// A sync node's state in PostgreSQL, for one served database.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    name: String,
    /// The advisory-lock key of this database's writer lock.
    lock_key: i64,
    sealer: Sealer,
    config: postgres::Config,
    tls: StoreTls,
}

/// A `postgres` error as a database error (what was being done, and Postgres's words).
pub(crate) fn pg_error(context: &'static str, e: postgres::Error) -> Error {
    Error::Io {
        context,
        source: std::io::Error::other(e),
    }
}

impl PgStore {
    /// Connects to the database `config` names, creates or migrates the schema, and
    /// opens served database `name` with `password` (creating its key the first time,
    /// with `kdf`).
    ///
    /// # Errors
    /// `Error::WrongPassword`; `Error::InvalidName` for a bad name; Postgres
    /// unreachable or refusing (`Error::Io`); `Error::UnsupportedFormat` for a schema
    /// a newer release wrote.
    pub fn open(
        config: postgres::Config,
        name: &str,
        password: &[u8],
        kdf: KdfParams,
        pool: PoolOptions,
    ) -> Result<PgStore> {
        Self::open_with(config, name, password, kdf, pool, true)
    }

    /// As [`PgStore::open`], for a served database that exists already (an
    /// administration command must not create one by a mistyped name).
    ///
    /// # Errors
    /// As [`PgStore::open`]; `Error::DatabaseNotFound` if no server made it yet.
    pub fn open_existing(
        config: postgres::Config,
        name: &str,
        password: &[u8],
        pool: PoolOptions,
    ) -> Result<PgStore> {
        Self::open_with(config, name, password, KdfParams::DEFAULT, pool, false)
    }

    fn open_with(
        mut config: postgres::Config,
        name: &str,
        password: &[u8],
        kdf: KdfParams,
        pool: PoolOptions,
        create: bool,
    ) -> Result<PgStore> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX || name.contains('\0') {
            return Err(Error::InvalidName {
                kind: blazedb_core::NameKind::Database,
                name: name.to_owned(),
                reason: "a served database name is 1 to 64 bytes, without NUL",
            });
        }
        pool.tls.apply(&mut config)?;
        pool::harden(&mut config, &pool);
        let tls = pool.tls.clone();
        let pool = Pool::new(config.clone(), pool);
        {
            let mut c = pool.get()?;
            schema::migrate(&mut c)?;
        }
        let sealer = {
            let mut c = pool.get()?;
            seal::open_keys(&mut c, name, password, kdf, create)?
        };
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                lock_key: lock_key(name),
                name: name.to_owned(),
                sealer,
                config,
                tls,
            }),
        })
    }

    /// The served database's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// What every server process of this database must share (the self-signed TLS
    /// identity, so clients pin one fingerprint whichever process they reach): the
    /// value kept as `name`, or the one `make` gives, kept now. Sealed like the node's
    /// records; made once, under the writer lock, whichever process comes first.
    ///
    /// # Errors
    /// Postgres errors; `make`'s error.
    pub fn shared(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let mut tx = self.begin_apply()?;
        if let Some(v) = tx.aux_get(SHARED_NS, name.as_bytes())? {
            return Ok(zeroize::Zeroizing::new(v));
        }
        let v = zeroize::Zeroizing::new(make()?);
        tx.aux_put(SHARED_NS, name.as_bytes(), &v)?;
        tx.commit()?;
        Ok(v)
    }

    /// The shared value kept as `name` ([`PgStore::shared`]), if any; read from one
    /// committed state, without the writer lock.
    ///
    /// # Errors
    /// Postgres errors.
    pub fn shared_get(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        let r = self.begin_read()?;
        Ok(r.aux_get(SHARED_NS, name.as_bytes())?
            .map(zeroize::Zeroizing::new))
    }

    /// Replaces the shared value kept as `name` with what `f` makes of the current one
    /// (`None`: none yet), read and written in one write transaction under the
    /// writer lock, so no concurrent update through any process is lost; durable once
    /// this returns. Also moves the value's generation ([`PgStore::shared_generation`]).
    /// `f` runs once; if it fails nothing is written and its error is returned inside.
    ///
    /// # Errors
    /// Postgres errors (the old value stays).
    pub fn shared_update<E>(
        &self,
        name: &str,
        f: impl FnOnce(Option<&[u8]>) -> std::result::Result<Vec<u8>, E>,
    ) -> Result<std::result::Result<(), E>> {
        let mut tx = self.begin_apply()?;
        let current = tx
            .aux_get(SHARED_NS, name.as_bytes())?
            .map(zeroize::Zeroizing::new);
        let next = match f(current.as_deref().map(Vec::as_slice)) {
            Ok(v) => zeroize::Zeroizing::new(v),
            Err(e) => return Ok(Err(e)),
        };
        let gen_key = generation_key(name);
        let generation = tx
            .aux_get(SHARED_NS, &gen_key)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        tx.aux_put(SHARED_NS, name.as_bytes(), &next)?;
        tx.aux_put(SHARED_NS, &gen_key, &(generation + 1).to_be_bytes())?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// How many times the shared value `name` was replaced through
    /// [`PgStore::shared_update`] (`None`: never): a cheap way to see it changed
    /// without reading it (one small record).
    ///
    /// # Errors
    /// Postgres errors.
    pub fn shared_generation(&self, name: &str) -> Result<Option<u64>> {
        let r = self.begin_read()?;
        Ok(r.aux_get(SHARED_NS, &generation_key(name))?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes))
    }

    /// Whether Postgres answers now (one round trip).
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.inner
            .pool
            .get_with("checking PostgreSQL", "SELECT 1")
            .is_ok()
    }
}

/// The writer lock's key: a stable 64-bit hash of the database name (FNV-1a; the
/// name space is small and chosen by the operator, so a collision only makes two
/// databases share one writer lock, never a wrong result).
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"blazedb:".iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_le_bytes(h.to_le_bytes())
}

impl NodeDb for PgStore {
    fn begin_read(&self) -> Result<Box<dyn NodeRead + '_>> {
        Ok(Box::new(tx::PgRead::begin(&self.inner)?))
    }

    fn begin_apply(&self) -> Result<Box<dyn NodeTx + '_>> {
        Ok(Box::new(tx::PgTx::begin(&self.inner)?))
    }

    fn commit_signal(&self) -> Result<CommitSignal> {
        notify::listen(
            self.inner.config.clone(),
            self.inner.tls.clone(),
            self.inner.lock_key.to_string(),
        )
    }

    fn engine(&self) -> Option<&blazedb_engine::Database> {
        None
    }
}

/// The connection settings of `url` (`postgres://USER@HOST:PORT/DB`, libpq's URL form)
/// with `password`.
///
/// # Errors
/// `Error::InvalidValue` for a URL that does not parse, or that holds a password (it
/// would show in process listings and configuration files; the error does not repeat
/// the URL).
pub fn config_from_url(url: &str, password: Option<&str>) -> Result<postgres::Config> {
    let mut cfg: postgres::Config =
        url.parse()
            .map_err(|e: postgres::Error| Error::InvalidValue {
                reason: format!(
                    "the store URL does not parse ({e}); expected postgres://USER@HOST:PORT/DB"
                ),
            })?;
    if cfg.get_password().is_some() {
        return Err(Error::InvalidValue {
            reason: "the store URL holds a password: give it in --store-password-file or \
                     BLAZEDB_STORE_PASSWORD instead"
                .into(),
        });
    }
    if let Some(p) = password {
        cfg.password(p);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_with_a_password_is_refused_without_repeating_it() {
        let e =
            config_from_url("postgres://u:s3cret@127.0.0.1:5432/db", None).expect_err("refused");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(e.to_string().contains("--store-password-file"), "{e}");
        let cfg = config_from_url("postgres://u@127.0.0.1:5432/db", Some("pw")).expect("parses");
        assert_eq!(cfg.get_password(), Some(&b"pw"[..]));
        assert_eq!(cfg.get_user(), Some("u"));
    }

    #[test]
    fn each_database_name_has_its_own_writer_lock() {
        assert_ne!(lock_key("main"), lock_key("other"));
        assert_eq!(lock_key("main"), lock_key("main"));
    }
}
