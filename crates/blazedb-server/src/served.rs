//! What the server serves: the database in its data directory (the default), or the
//! served database's state in PostgreSQL (`--store`), shared with every server process
//! given the same store, database name and password. With a store, the self-signed
//! TLS identity is shared through it (one fingerprint for all processes); the named
//! users' file stays in each process's data directory (processes that share a store
//! share it by being given the same file).

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use blazedb::net::{Server, ServerIdentity, TlsSetup};
use blazedb_pg::{PgStore, PoolOptions};
use zeroize::Zeroizing;

use crate::config::{Settings, Tls};
use crate::metrics::Health;

/// The served state, opened.
pub enum Served {
    Database(blazedb::Database),
    Store(PgStore),
}

impl Served {
    /// Opens what `settings` name with the database `password`.
    ///
    /// # Errors
    /// A wrong password, an unreachable or refusing Postgres, a damaged database.
    pub async fn open(settings: &Settings, password: Zeroizing<String>) -> Result<Served> {
        let name = settings.database.clone();
        match &settings.store {
            None => {
                let dir = settings.data_dir.clone();
                let cache = settings.cache_mib << 20;
                let db = tokio::task::spawn_blocking(move || {
                    blazedb::Database::builder().cache_size(cache).open(
                        &dir,
                        &name,
                        password.as_bytes(),
                    )
                })
                .await?
                .with_context(|| {
                    format!(
                        "opening database {:?} in {}",
                        settings.database,
                        settings.data_dir.display()
                    )
                })?;
                Ok(Served::Database(db))
            }
            Some(store) => {
                let cfg = blazedb_pg::config_from_url(
                    &store.url,
                    store.password.as_deref().map(String::as_str),
                )?;
                let pg = tokio::task::spawn_blocking(move || {
                    PgStore::open(
                        cfg,
                        &name,
                        password.as_bytes(),
                        blazedb::KdfParams::DEFAULT,
                        PoolOptions::default(),
                    )
                })
                .await?
                .with_context(|| {
                    format!("opening database {:?} in the store", settings.database)
                })?;
                // This process's own files (the users file) live where the embedded
                // database would.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(self::local_dir(settings))
                    .context("creating the database's local directory")?;
                Ok(Served::Store(pg))
            }
        }
    }

    /// The named users' file.
    pub fn users_file(&self, settings: &Settings) -> PathBuf {
        match self {
            Served::Database(db) => blazedb::net::users_path(db.path()),
            Served::Store(_) => blazedb::net::users_path(&local_dir(settings)),
        }
    }

    /// A sync server for it.
    pub fn server(
        &self,
        settings: &Settings,
        auth_token: Option<&str>,
        shared_secret: Option<&str>,
    ) -> Server {
        let port = settings.listen.port();
        match self {
            Served::Database(db) => {
                Server::new(port, db, &settings.database, auth_token, shared_secret)
            }
            Served::Store(pg) => Server::with_store(
                port,
                Arc::new(pg.clone()),
                &settings.database,
                auth_token,
                shared_secret,
            ),
        }
    }

    /// The TLS set-up: for a store, the self-signed identity is one for all processes,
    /// kept sealed in the store (made by the first), so clients pin one fingerprint
    /// and may reconnect to any process; certificate files given are used as given.
    ///
    /// # Errors
    /// Unreadable or mismatched certificate files; the store's errors.
    pub async fn tls(&self, settings: &Settings) -> Result<TlsSetup> {
        Ok(match (&settings.tls, self) {
            (Tls::SelfSigned, Served::Store(pg)) => {
                let pg = pg.clone();
                let pem = tokio::task::spawn_blocking(move || {
                    pg.shared("tls-identity", || {
                        let (cert, key) = ServerIdentity::self_signed_pem().map_err(|e| {
                            blazedb::Error::InvalidValue {
                                reason: e.to_string(),
                            }
                        })?;
                        postcard::to_allocvec(&(cert, key.as_str())).map_err(|e| {
                            blazedb::Error::InvalidValue {
                                reason: e.to_string(),
                            }
                        })
                    })
                })
                .await??;
                let (cert, key): (String, zeroize::Zeroizing<String>) =
                    postcard::from_bytes::<(String, String)>(&pem)
                        .map(|(c, k)| (c, zeroize::Zeroizing::new(k)))
                        .context("the shared TLS identity is malformed")?;
                TlsSetup::Identity(Arc::new(ServerIdentity::from_pem(
                    cert.as_bytes(),
                    key.as_bytes(),
                )?))
            }
            (Tls::SelfSigned, Served::Database(_)) => {
                TlsSetup::SelfSigned(settings.data_dir.join("tls"))
            }
            (Tls::Files { cert, key }, _) => {
                TlsSetup::Identity(Arc::new(ServerIdentity::from_pem_files(cert, key)?))
            }
            (Tls::PlainTcpInsecure, _) => TlsSetup::PlainTcpInsecure,
        })
    }

    /// Whether the served state answers (`/health`): the embedded database always
    /// does; a store when Postgres answers a query now.
    pub fn health(&self) -> Health {
        match self {
            Served::Database(_) => Arc::new(|| true),
            Served::Store(pg) => {
                let pg = pg.clone();
                Arc::new(move || pg.healthy())
            }
        }
    }
}

/// Where the embedded database would be: `DATA_DIR/NAME.blazedb`.
fn local_dir(settings: &Settings) -> PathBuf {
    blazedb::database_path(&settings.data_dir, &settings.database)
}
