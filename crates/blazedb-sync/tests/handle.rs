//! The user-facing handles: `db.enable_sync(relay, role)` against a serving node, its
//! status through offline periods, stop and start, and clock hygiene.

use std::sync::Arc;
use std::time::Duration;

use blazedb_core::Document;
use blazedb_engine::{Database, KdfParams};
use blazedb_sync::clock::wall_now_us;
use blazedb_sync::{EnableSync, Role, ServeHandle, SyncAdvanced, SyncConfig, SyncNode, memory};

const T: Duration = Duration::from_secs(20);

/// `server` enabled as the sync server and served in memory: the relay a client dials,
/// and the serving handle (serving stops when it drops).
fn serve(server: &Database) -> (blazedb_sync::MemoryRelay, ServeHandle) {
    let node = SyncNode::enable(server, Role::Server, &SyncConfig::default()).expect("enable");
    let (relay, listener) = memory("server");
    let serve = ServeHandle::start(node, listener, &SyncConfig::default(), 16).expect("serve");
    (relay, serve)
}

fn open(dir: &std::path::Path, name: &str) -> Database {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_sync_reports_status_through_offline_periods_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = (open(dir.path(), "server"), open(dir.path(), "client"));
    let (relay, serve) = serve(&server);
    let sync = client
        .enable_sync(relay, Role::Client)
        .await
        .expect("enable_sync");
    let id = client
        .collection("notes")
        .insert(Document::new().with("n", 1i64))
        .expect("insert");
    let status = sync.sync_now(T).await.expect("sync now");
    assert!(
        status.connected && status.pending_local_writes == 0,
        "{status:?}"
    );
    assert!(
        status.writes_sent >= 1 && status.bytes_sent > 0 && status.last_sync.is_some(),
        "{status:?}"
    );
    assert!(server.collection("notes").get(id).expect("get").is_some());
    assert_eq!(serve.connections().len(), 1);

    sync.stop().await;
    for i in 0..5i64 {
        client
            .collection("notes")
            .insert(Document::new().with("offline", i))
            .expect("insert");
    }
    let offline = sync.status();
    assert!(!offline.connected, "{offline:?}");
    assert_eq!(offline.pending_local_writes, 5, "{offline:?}");

    sync.start();
    let back = sync.sync_now(T).await.expect("sync now");
    assert_eq!(back.pending_local_writes, 0, "{back:?}");
    assert_eq!(server.collection("notes").count().expect("count"), 6);
    sync.stop().await;
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_far_ahead_is_refused_and_the_skew_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = (open(dir.path(), "server"), open(dir.path(), "client"));
    let (relay, serve) = serve(&server);
    let ahead_us: u64 = 10 * 60 * 1_000_000; // beyond the 5-minute default bound
    let fast = SyncConfig {
        advanced: SyncAdvanced {
            clock: Arc::new(move || wall_now_us() + ahead_us),
            stamp_with_write_time: false,
            ..SyncAdvanced::default()
        },
        ..SyncConfig::default()
    };
    let sync = client
        .enable_sync_with(relay, Role::Client, fast)
        .await
        .expect("enable_sync");
    let id = client
        .collection("notes")
        .insert(Document::new().with("n", 1i64))
        .expect("insert");
    let refused = sync.sync_now(Duration::from_secs(3)).await;
    assert!(
        refused.is_err(),
        "a write stamped 10 minutes ahead must not be accepted"
    );
    // The round runs out of time, typed, with the refusal that held it up.
    match refused {
        Err(blazedb_sync::SyncError::TimedOut { after, last_error }) => {
            assert_eq!(after, Duration::from_secs(3));
            assert!(
                last_error.as_deref().is_some_and(|e| e.contains("ahead")),
                "{last_error:?}"
            );
        }
        other => panic!("expected SyncError::TimedOut, got {other:?}"),
    }
    assert!(server.collection("notes").get(id).expect("get").is_none());
    let status = sync.status();
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("ahead")),
        "{status:?}"
    );
    let skew = status.clock_skew_us.expect("skew measured");
    assert!(
        skew < -(9 * 60 * 1_000_000),
        "the server's clock is ~10 minutes behind ours: {skew}"
    );
    let seen_by_server = serve.connections()[0].clock_skew_us.expect("skew measured");
    assert!(seen_by_server > 9 * 60 * 1_000_000, "{seen_by_server}");
    sync.stop().await;
    serve.stop().await;
}

/// Waits (blocking pool) for the next event of `sub`, up to `T`.
async fn next_event(
    sub: blazedb_engine::Subscription,
) -> (blazedb_engine::Subscription, blazedb_engine::Event) {
    tokio::task::spawn_blocking(move || {
        let e = sub.recv_timeout(T).expect("an event arrives");
        (sub, e)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_periodic_policies_both_deliver_without_being_asked() {
    for policy in [
        SyncConfig::default(),
        SyncConfig::default().periodic(Duration::from_millis(300)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server, client) = (open(dir.path(), "server"), open(dir.path(), "client"));
        let (relay, serve) = serve(&server);
        let sync = client
            .enable_sync_with(relay, Role::Client, policy.clone())
            .await
            .expect("enable_sync");
        // Subscribed on the server: the applied remote write is delivered like a local one.
        let sub = server.subscribe("notes", 16).expect("subscribe");
        let id = client
            .collection("notes")
            .insert(Document::new().with("n", 1i64))
            .expect("insert");
        let (_sub, event) = next_event(sub).await;
        assert_eq!(event.id, id, "policy {policy:?}");
        assert_eq!(event.kind, blazedb_engine::EventKind::Added);
        sync.stop().await;
        serve.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_compacts_once_its_sync_is_stopped_and_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut client) = (open(dir.path(), "server"), open(dir.path(), "client"));
    let (relay, _serve) = serve(&server);
    let sync = client
        .enable_sync(relay, Role::Client)
        .await
        .expect("enable_sync");
    let id = client
        .collection("notes")
        .insert(Document::new().with("n", 1i64))
        .expect("insert");
    sync.sync_now(T).await.expect("sync now");
    // While sync runs it holds the database: compaction is refused, nothing changes.
    assert!(matches!(
        client.compact(),
        Err(blazedb_core::Error::AlreadyOpen { .. })
    ));
    sync.stop().await;
    drop(sync);
    let report = client
        .compact()
        .expect("compact once sync is stopped and dropped");
    assert!(report.after_bytes > 0);
    assert!(client.collection("notes").get(id).expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_how_much_of_the_servers_log_has_arrived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = (open(dir.path(), "server"), open(dir.path(), "client"));
    let mut tx = server.begin_write().expect("begin");
    for i in 0..600i64 {
        tx.insert("notes", Document::new().with("n", i))
            .expect("insert");
    }
    tx.commit().expect("commit");
    let (relay, _serve) = serve(&server);
    let sync = client
        .enable_sync(relay, Role::Client)
        .await
        .expect("enable_sync");
    let status = sync.sync_now(T).await.expect("sync now");
    let server_log = SyncNode::enable(&server, Role::Server, &SyncConfig::default())
        .expect("enabled")
        .log_last()
        .expect("log_last");
    let p = sync.progress();
    assert!(p.connected && p.peer.is_some(), "{p:?}");
    assert_eq!(
        p.peer_log_last,
        Some(server_log),
        "the server told its log's length"
    );
    assert_eq!(p.cursor, server_log, "and all of it arrived");
    assert_eq!(p.writes_received, 600);
    assert!(p.bytes_received > 600 * 10, "{p:?}");
    assert_eq!(status.peer_log_last, Some(server_log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_that_passes_leaves_no_error_once_the_writes_get_through() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, client) = (open(dir.path(), "server"), open(dir.path(), "client"));
    // The server's clock lags the client's by 10 minutes until it is set right.
    let lag = Arc::new(AtomicU64::new(10 * 60 * 1_000_000));
    let server_config = {
        let lag = Arc::clone(&lag);
        SyncConfig {
            advanced: SyncAdvanced {
                clock: Arc::new(move || wall_now_us() - lag.load(Ordering::Relaxed)),
                ..SyncAdvanced::default()
            },
            ..SyncConfig::default()
        }
    };
    let node = SyncNode::enable(&server, Role::Server, &server_config).expect("enable");
    let (relay, listener) = memory("server");
    let serve = ServeHandle::start(node, listener, &server_config, 16).expect("serve");
    let sync = client
        .enable_sync_with(relay, Role::Client, SyncConfig::default())
        .await
        .expect("enable_sync");
    client
        .collection("notes")
        .insert(Document::new().with("n", 1i64))
        .expect("insert");
    assert!(
        sync.sync_now(Duration::from_secs(3)).await.is_err(),
        "refused while the clocks disagree"
    );
    assert!(
        sync.status()
            .last_error
            .is_some_and(|e| e.contains("ahead"))
    );
    lag.store(0, Ordering::Relaxed);
    let through = sync
        .sync_now(T)
        .await
        .expect("accepted once the clocks agree");
    assert_eq!(through.pending_local_writes, 0);
    assert_eq!(sync.status().last_error, None, "{:?}", sync.status());
    assert_eq!(server.collection("notes").count().expect("count"), 1);
    sync.stop().await;
    serve.stop().await;
}
