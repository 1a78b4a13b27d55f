//! Shared by the PostgreSQL store's tests: a cluster's connection settings, a server
//! "process" (a store and its node), clients, and the log's gap check.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use blazedb_crypto::KdfParams;
use blazedb_engine::Database;
use blazedb_pg::{PgStore, PoolOptions};
use blazedb_sync::backend::NodeDb as _;
use blazedb_sync::{EnableSync, Role, SyncConfig, SyncHandle, SyncNode};
use blazedb_testpg::Cluster;

pub const T: Duration = Duration::from_secs(60);

pub fn pg_config(c: &Cluster) -> postgres::Config {
    let mut cfg = postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(c.port())
        .user(blazedb_testpg::USER)
        .password(c.password())
        .dbname("postgres");
    cfg
}

/// A server process's store and node (blocking work, off the async threads).
pub async fn server_node(
    cfg: postgres::Config,
    password: &'static [u8],
) -> blazedb_core::Result<(PgStore, SyncNode)> {
    tokio::task::spawn_blocking(move || {
        let store = PgStore::open(
            cfg,
            "main",
            password,
            KdfParams::INSECURE_FAST,
            PoolOptions::default(),
        )?;
        let node = SyncNode::enable_on(
            Arc::new(store.clone()),
            Role::Server,
            &SyncConfig::default(),
        )
        .map_err(|e| blazedb_core::Error::InvalidValue {
            reason: e.to_string(),
        })?;
        Ok((store, node))
    })
    .await
    .expect("joined")
}

pub fn client_db(dir: &std::path::Path, name: &str) -> Database {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open")
}

pub async fn client(db: &Database, relay: blazedb_sync::relay::MemoryRelay) -> SyncHandle {
    db.enable_sync(relay, Role::Client)
        .await
        .expect("enable sync")
}

/// The sync log's positions are consecutive: no gap a reader could skip.
pub async fn assert_log_has_no_gap(store: &PgStore) {
    let store = store.clone();
    let seqs = tokio::task::spawn_blocking(move || {
        let r = store.begin_read().expect("read");
        r.aux_log_range("sync.log", 0, 100_000).expect("log")
    })
    .await
    .expect("joined");
    let positions: Vec<u64> = seqs.iter().map(|(s, _)| *s).collect();
    assert!(!positions.is_empty());
    assert_eq!(
        positions,
        (positions[0]..positions[0] + positions.len() as u64).collect::<Vec<_>>(),
        "no gap in the log"
    );
}
