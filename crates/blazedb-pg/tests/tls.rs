//! TLS to PostgreSQL: against a cluster that accepts TLS connections only, a store
//! with the certificate's root connects, serves and is woken by notifications (the
//! listener connects over TLS too); without TLS it is refused by Postgres; with
//! another root, or to a host name the certificate does not name, it is refused by
//! our verification; and a URL that asks for TLS while TLS is off is refused before
//! any connection is tried.

mod common;

use blazedb_crypto::KdfParams;
use blazedb_pg::{PgStore, PoolOptions, StoreTls};
use blazedb_sync::SyncNode;
use blazedb_sync::backend::NodeDb as _;
use blazedb_testpg::Cluster;
use common::pg_config;

fn self_signed() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

fn open(cfg: postgres::Config, tls: StoreTls) -> blazedb_core::Result<PgStore> {
    PgStore::open(
        cfg,
        "main",
        b"server-pw",
        KdfParams::INSECURE_FAST,
        PoolOptions {
            tls,
            ..PoolOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_reaches_a_tls_only_postgres_with_verified_tls_and_nothing_else() {
    let (cert, key) = self_signed();
    let verified = StoreTls::from_roots_pem(cert.as_bytes()).expect("roots");
    let pg = tokio::task::spawn_blocking(move || {
        Cluster::start_tls_only(&cert, &key).expect("a TLS-only cluster")
    })
    .await
    .expect("joined");
    let cfg = pg_config(&pg);

    tokio::task::spawn_blocking(move || {
        // Plain TCP: Postgres refuses (no pg_hba entry for a non-TLS connection).
        let e = open(cfg.clone(), StoreTls::Off)
            .err()
            .expect("refused without TLS");
        assert!(e.to_string().contains("PostgreSQL"), "{e}");

        // TLS with another root: our verification refuses Postgres's certificate.
        let (other, _) = self_signed();
        let wrong = StoreTls::from_roots_pem(other.as_bytes()).expect("roots");
        let e = open(cfg.clone(), wrong)
            .err()
            .expect("refused: unknown issuer");
        assert!(e.to_string().contains("PostgreSQL"), "{e}");

        // Verified TLS: the store opens, a node runs on it, and its commit signal
        // (the listener's own connection) is woken by a commit.
        let store = open(cfg.clone(), verified).expect("verified TLS");
        let node = SyncNode::enable_on(
            std::sync::Arc::new(store.clone()),
            blazedb_sync::Role::Server,
            &blazedb_sync::SyncConfig::default(),
        )
        .expect("node");
        let signal = store.commit_signal().expect("listener");
        let seen = signal.subscribe();
        // The listener moves the signal once it is connected and listening (over TLS:
        // a plain connection would be refused and it would keep retrying).
        let deadline = std::time::Instant::now() + common::T;
        while *seen.borrow() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the listener never connected"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let before = *seen.borrow();
        let mut tx = store.begin_apply().expect("begin");
        tx.aux_log_put("sync.test", 1, b"x").expect("put");
        tx.signal_listeners();
        tx.commit().expect("commit");
        let deadline = std::time::Instant::now() + common::T;
        while *seen.borrow() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no notification over TLS"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(node);

        // A URL asking for TLS with TLS off is refused, naming the flag to give.
        let mut wants_tls = cfg.clone();
        wants_tls.ssl_mode(postgres::config::SslMode::Require);
        let e = open(wants_tls, StoreTls::Off).err().expect("refused");
        assert!(e.to_string().contains("--store-ca-file"), "{e}");
    })
    .await
    .expect("joined");
    tokio::task::spawn_blocking(move || drop(pg))
        .await
        .expect("joined");
}
