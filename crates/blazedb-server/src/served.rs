//! What the server serves: the database in its data directory (the default), or the
//! served database's state in PostgreSQL (`--store`), shared with every server process
//! given the same store, database name and password. Either way the data directory
//! keeps what is this process's own: the self-signed certificate and the named users'
//! file (processes that share a store share these by being given the same files).

use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use blazedb::net::Server;
use blazedb_pg::{PgStore, PoolOptions};
use zeroize::Zeroizing;

use crate::config::Settings;
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
