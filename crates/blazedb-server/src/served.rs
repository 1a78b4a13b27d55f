//! What the server serves: the database in its data directory (the default), or the
//! served database's state in PostgreSQL (`--store`), shared with every server process
//! given the same store, database name and password. With a store, the self-signed
//! TLS identity and the named users are kept in it too (one fingerprint and one users
//! list for all processes: a user added or revoked through one holds for all).

use std::sync::Arc;

use anyhow::{Context, Result};
use blazedb::net::{Server, ServerIdentity, TlsSetup, UsersEdit, UsersFile, UsersPlace};
use blazedb_pg::{PgStore, PoolOptions, StoreTls};
use zeroize::Zeroizing;

use crate::config::{Settings, Store, Tls};
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
                let store = store.clone();
                let pg =
                    tokio::task::spawn_blocking(move || open_store(&store, &name, &password, true))
                        .await??;
                Ok(Served::Store(pg))
            }
        }
    }

    /// A users file left in the data directory by an earlier release of store mode,
    /// which kept named users there: ignored now (they live in the store).
    pub fn ignored_users_file(&self, settings: &Settings) -> Option<std::path::PathBuf> {
        let Served::Store(_) = self else {
            return None;
        };
        let f = blazedb::net::users_path(&blazedb::database_path(
            &settings.data_dir,
            &settings.database,
        ));
        f.exists().then_some(f)
    }

    /// Where the served state lives, for the start-up log (never a secret: a store URL
    /// holding a password is refused before this).
    pub fn describe(&self, settings: &Settings) -> String {
        match (self, &settings.store) {
            (Served::Database(db), _) => format!("the database at {}", db.path().display()),
            (Served::Store(_), Some(store)) => format!(
                "PostgreSQL at {} ({})",
                store.url,
                if store.ca_file.is_some() {
                    "TLS, certificate verified"
                } else {
                    "plain TCP"
                }
            ),
            (Served::Store(_), None) => "PostgreSQL".into(),
        }
    }

    /// Where the named users are kept.
    pub fn users(&self) -> Arc<dyn UsersPlace> {
        match self {
            Served::Database(db) => Arc::new(UsersFile::new(&blazedb::net::users_path(db.path()))),
            Served::Store(pg) => Arc::new(StoreUsers(pg.clone())),
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

/// Opens (migrating the schema, and creating the database the first time when
/// `create`) served database `name` in `store` with the database `password`. Blocking.
///
/// # Errors
/// A wrong password, an unreachable or refusing Postgres, an unreadable CA file; no
/// such database without `create`.
pub fn open_store(store: &Store, name: &str, password: &str, create: bool) -> Result<PgStore> {
    let cfg =
        blazedb_pg::config_from_url(&store.url, store.password.as_deref().map(String::as_str))?;
    let tls = match &store.ca_file {
        None => StoreTls::Off,
        Some(f) => {
            let pem = std::fs::read(f)
                .with_context(|| format!("reading the store's CA file {}", f.display()))?;
            StoreTls::from_roots_pem(&pem)?
        }
    };
    let pool = PoolOptions {
        tls,
        ..PoolOptions::default()
    };
    if create {
        PgStore::open(
            cfg,
            name,
            password.as_bytes(),
            blazedb::KdfParams::DEFAULT,
            pool,
        )
    } else {
        PgStore::open_existing(cfg, name, password.as_bytes(), pool)
    }
    .with_context(|| format!("opening database {name:?} in the store"))
}

/// The named users of a database in a store: the sealed users list kept as one of the
/// store's shared values, so every server process reads and changes the same list.
pub struct StoreUsers(pub PgStore);

/// The shared value's name.
const USERS_SHARED: &str = "users";

impl std::fmt::Debug for StoreUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUsers({:?})", self.0.name())
    }
}

impl UsersPlace for StoreUsers {
    fn describe(&self) -> String {
        format!("users of database {:?} in the store", self.0.name())
    }

    fn read(&self) -> std::result::Result<Option<Vec<u8>>, String> {
        self.0
            .shared_get(USERS_SHARED)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| e.to_string())
    }

    fn write(&self, bytes: &[u8]) -> std::result::Result<(), String> {
        self.update(&mut |_| Ok(bytes.to_vec()))
    }

    fn update(&self, f: &mut UsersEdit<'_>) -> std::result::Result<(), String> {
        self.0
            .shared_update(USERS_SHARED, f)
            .map_err(|e| e.to_string())?
    }

    /// The list's generation (one small record), not the list: every process looks
    /// once a second and at every user handshake.
    fn stamp(&self) -> Option<Vec<u8>> {
        match self.0.shared_generation(USERS_SHARED) {
            Ok(Some(g)) => Some(g.to_be_bytes().to_vec()),
            Ok(None) => self.read().ok().flatten(),
            Err(_) => None,
        }
    }
}
