//! The server's trust boundary, against the real `blazedb-server` process and clients
//! that hold valid credentials but misbehave: each test replays one attack that worked
//! before and shows it fails now (docs/security.md, "Every message a client can send").

mod common;

use std::time::Duration;

use blazedb_core::{DocId, Document};
use blazedb_net::frame::Frame;
use blazedb_net::{Credentials, FrameStream, RefuseCode};
use blazedb_sync::proto::{ErrorCode, PROTOCOL_VERSION};
use blazedb_sync::{EnableSync, LogPos, Msg, NodeId, Role, SyncError};
use common::{T, open, spawn_server};

fn hello(node: u64, role: Role) -> Frame {
    Frame::Sync(Msg::Hello {
        version: PROTOCOL_VERSION,
        node: NodeId(node),
        role,
        want_after: LogPos::ZERO,
        accept: true,
        send: true,
        now_us: blazedb_sync::clock::wall_now_us(),
        have_yours: false,
        log_last: LogPos::ZERO,
        resume: None,
    })
}

/// Frames until the server closes the connection (or `T` passes: a failure).
async fn until_closed(c: &mut FrameStream) -> Vec<Frame> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(T, async {
        while let Ok(Some(f)) = c.recv().await {
            got.push(f);
        }
    })
    .await;
    assert!(r.is_ok(), "the server never closed the connection: {got:?}");
    got
}

fn forbidden(frames: &[Frame]) -> bool {
    frames.iter().any(|f| {
        matches!(
            f,
            Frame::Sync(Msg::Error {
                code: ErrorCode::Forbidden,
                fatal: true,
                ..
            })
        )
    })
}

/// A server holding `n` documents written by an honest client.
async fn seeded(dir: &std::path::Path, p: &common::Proc, n: usize) -> Vec<DocId> {
    let db = open(dir, "seeder");
    let h = db
        .enable_sync(
            p.remote(Credentials::none().token("tok")).relay(),
            Role::Client,
        )
        .await
        .expect("enable");
    let ids = (0..n)
        .map(|i| {
            db.collection("notes")
                .insert(Document::new().with("i", i64::try_from(i).expect("small")))
                .expect("insert")
        })
        .collect();
    h.sync_now(T).await.expect("seed");
    h.stop().await;
    ids
}

/// What a fresh honest client receives from the server.
async fn fresh_client_count(dir: &std::path::Path, p: &common::Proc, name: &str) -> u64 {
    let db = open(dir, name);
    let h = db
        .enable_sync(
            p.remote(Credentials::none().token("tok")).relay(),
            Role::Client,
        )
        .await
        .expect("enable");
    h.sync_now(T).await.expect("an honest client syncs");
    h.stop().await;
    db.collection("notes").count().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_holder_cannot_erase_the_server_with_an_unrequested_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(&dir.path().join("server"), &[]).await;
    seeded(dir.path(), &p, 151).await;
    // The attack: hello, an empty batch that gives the server a cursor for us, then a
    // snapshot nobody asked for, claiming collected history and holding nothing.
    let mut c = p
        .relay(Credentials::none().token("tok"))
        .connect_frames()
        .await
        .expect("the credentials are valid");
    c.send(&hello(0xBAD, Role::Client)).await.expect("send");
    c.send(&Frame::Sync(Msg::Batch {
        after: LogPos::ZERO,
        upto: LogPos::from(3),
        items: Vec::new(),
        users: Vec::new(),
    }))
    .await
    .expect("send");
    c.send(&Frame::Sync(Msg::Snapshot {
        at: LogPos::from(1000),
        after_slot: 0,
        upto_slot: 0,
        docs: Vec::new(),
        done: true,
        collected: true,
        users: Vec::new(),
    }))
    .await
    .expect("send");
    let frames = until_closed(&mut c).await;
    assert!(
        forbidden(&frames),
        "a typed refusal, then the close: {frames:?}"
    );
    // Nothing was erased, and every other client still syncs.
    assert_eq!(fresh_client_count(dir.path(), &p, "fresh").await, 151);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_credential_never_yields_server_priority() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(&dir.path().join("server"), &[]).await;
    let ids = seeded(dir.path(), &p, 3).await;
    // A database created with the server role, holding only the shared token.
    let impostor = open(dir.path(), "impostor");
    let id = impostor
        .collection("notes")
        .insert(Document::new().with("who", "impostor"))
        .expect("insert");
    let h = impostor
        .enable_sync(
            p.remote(Credentials::none().token("tok")).relay(),
            Role::Server,
        )
        .await
        .expect("enable");
    let e = h.sync_now(T).await.expect_err("refused");
    assert!(
        matches!(&e, SyncError::Forbidden(m) if m.contains("only as a client")),
        "{e}"
    );
    h.stop().await;
    // Saying so in a hello by hand is refused the same way.
    let mut c = p
        .relay(Credentials::none().token("tok"))
        .connect_frames()
        .await
        .expect("connect");
    c.send(&hello(0xBAD2, Role::Server)).await.expect("send");
    assert!(forbidden(&until_closed(&mut c).await));
    // None of the impostor's writes reached the server.
    let db = open(dir.path(), "check");
    let h = db
        .enable_sync(
            p.remote(Credentials::none().token("tok")).relay(),
            Role::Client,
        )
        .await
        .expect("enable");
    h.sync_now(T).await.expect("sync");
    assert!(db.collection("notes").get(id).expect("get").is_none());
    for i in ids {
        assert!(db.collection("notes").get(i).expect("get").is_some());
    }
}

/// A connection that only sends: `beats` beats a second apart that echo nothing (it
/// never reads what the server sends), after a hello asking for the whole log.
async fn never_reads(p: &common::Proc, beats: bool) -> FrameStream {
    let mut c = p
        .relay(Credentials::none().token("tok"))
        .connect_frames()
        .await
        .expect("connect");
    c.send(&hello(rand_node(), Role::Client))
        .await
        .expect("send");
    if beats {
        c.send(&Frame::Beat { nonce: 1, echo: 0 })
            .await
            .expect("send");
    }
    c
}

fn rand_node() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random");
    u64::from_le_bytes(b) | 1
}

/// A client that pushed 12 MB into the server's log: more than the kernel buffers of a
/// reader that stalls.
async fn push_12_mb(
    dir: &std::path::Path,
    p: &common::Proc,
) -> (blazedb_engine::Database, blazedb_sync::SyncHandle) {
    let db = open(dir, "pusher");
    let h = db
        .enable_sync(
            p.remote(Credentials::none().token("tok")).relay(),
            Role::Client,
        )
        .await
        .expect("enable");
    for i in 0..12i64 {
        db.collection("blobs")
            .insert(
                Document::new()
                    .with("i", i)
                    .with("blob", "x".repeat(1 << 20)),
            )
            .expect("insert");
    }
    h.sync_now(T).await.expect("push");
    (db, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_closed_and_release_their_slots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(&dir.path().join("server"), &["--idle-timeout-ms", "3000"]).await;
    let (_db, h) = push_12_mb(dir.path(), &p).await;
    h.stop().await;
    let rss0 = p.rss_kib();
    // A client that asked for the log and went silent (a laptop lid closing), and one
    // that keeps sending beats but never reads.
    let mut silent = never_reads(&p, false).await;
    let mut beating = never_reads(&p, true).await;
    let beat = async {
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        for n in 2..40u64 {
            tick.tick().await;
            if beating
                .send(&Frame::Beat { nonce: n, echo: 0 })
                .await
                .is_err()
            {
                break; // closed by the server
            }
        }
    };
    beat.await;
    p.metric_becomes("blazedb_connections_open", 0).await;
    let rss1 = p.rss_kib();
    eprintln!("stalled readers: server RSS {rss0} KiB -> {rss1} KiB");
    assert!(
        rss1 < rss0 + 80 * 1024,
        "memory bounded by the send budget: {rss0} KiB -> {rss1} KiB"
    );
    // Both were told why (if they ever read it) and closed.
    for c in [&mut silent, &mut beating] {
        let frames = until_closed(c).await;
        assert!(
            !frames
                .iter()
                .any(|f| matches!(f, Frame::Refused { code, .. } if *code != RefuseCode::Timeout)),
            "{frames:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_promptly_whatever_clients_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = spawn_server(&dir.path().join("server"), &[]).await;
    let (_db, h) = push_12_mb(dir.path(), &p).await;
    // A stalled reader with the server blocked writing to it, and a half-sent frame.
    let _stalled = never_reads(&p, false).await;
    let mut half = p
        .relay(Credentials::none().token("tok"))
        .connect_frames()
        .await
        .expect("connect");
    half.send_bytes(&[0, 0, 16, 0, 1, 2, 3])
        .await
        .expect("send");
    p.metric_becomes("blazedb_connections_open", 3).await;
    let started = std::time::Instant::now();
    p.sigterm();
    let status = tokio::time::timeout(T, p.child.wait())
        .await
        .expect("it exits")
        .expect("wait");
    let took = started.elapsed();
    eprintln!("SIGTERM with stalled clients: exited {status} after {took:?}");
    assert!(status.success(), "a graceful exit: {status}");
    // The design bound is about 1.5 s (a 1 s grace for sessions, 0.5 s for farewells);
    // the margin is for a loaded CI machine.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_frames_hold_no_more_than_the_read_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(&dir.path().join("server"), &[]).await;
    let rss0 = p.rss_kib();
    // Ten connections, each announcing the largest frame and sending all but a byte.
    let len = blazedb_net::frame::FRAME_MAX;
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut c = p
            .relay(Credentials::none().token("tok"))
            .connect_frames()
            .await
            .expect("connect");
        let mut bytes = u32::try_from(len).expect("fits").to_be_bytes().to_vec();
        bytes.resize(4 + len - 1, 7);
        // The server stops reading once the budget is spent: the rest of the bytes
        // stay in this side's socket buffers, so writing them may not finish.
        let _ = tokio::time::timeout(Duration::from_millis(500), c.send_bytes(&bytes)).await;
        held.push(c);
    }
    let rss1 = p.rss_kib();
    eprintln!(
        "10 connections x {len} bytes half-sent: server RSS {rss0} KiB -> {rss1} KiB (read budget 64 MiB)"
    );
    assert!(
        rss1 < rss0 + 100 * 1024,
        "bounded by the read budget, not 10 x {len} bytes: {rss0} KiB -> {rss1} KiB"
    );
    assert!(
        p.metric("blazedb_read_budget_free_bytes").await < 64 << 20,
        "the half-sent frames hold the read budget"
    );
    drop(held);
    // Closed connections give their share back.
    p.metric_becomes("blazedb_read_budget_free_bytes", 64 << 20)
        .await;
    assert_eq!(fresh_client_count(dir.path(), &p, "fresh").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_documents_pass_through_and_the_servers_memory_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A small page cache, so what stays is what the sync path itself keeps.
    let p = spawn_server(&dir.path().join("server"), &["--cache-mib", "16"]).await;
    let db = open(dir.path(), "pusher");
    let h = db
        .enable_sync(
            p.remote(Credentials::none().token("tok")).relay(),
            Role::Client,
        )
        .await
        .expect("enable");
    h.sync_now(T).await.expect("connect");
    let rss0 = p.rss_kib();
    let mut peak = rss0;
    // Twelve documents near the 16 MiB limit, pushed one after another.
    let big = "z".repeat(blazedb_core::limits::DOCUMENT_BYTES_MAX - (64 << 10));
    for i in 0..12i64 {
        db.collection("big")
            .insert(Document::new().with("i", i).with("blob", big.as_str()))
            .expect("insert");
        h.sync_now(T).await.expect("push");
        peak = peak.max(p.rss_kib());
    }
    // Freed memory goes back to the system (not all at once: the allocator returns
    // what a thread freed when that thread next runs).
    let bound = rss0 + 96 * 1024;
    let deadline = tokio::time::Instant::now() + T;
    let mut rss1 = p.rss_kib();
    while rss1 > bound && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss1 = p.rss_kib();
    }
    eprintln!("12 x 16 MiB documents: server RSS {rss0} KiB, peak {peak} KiB, then {rss1} KiB");
    assert!(rss1 <= bound, "{rss0} KiB -> {rss1} KiB (peak {peak} KiB)");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_legal_writes_never_make_an_undeliverable_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(&dir.path().join("server"), &[]).await;
    let client = |name: &str| {
        let db = open(dir.path(), name);
        let relay = p.remote(Credentials::none().token("tok")).relay();
        (db, relay)
    };
    let (a, ra) = client("a");
    let (b, rb) = client("b");
    // The same id in both, each with a different 9 MiB field: each fits alone.
    let id = DocId::new();
    let nine = 9 << 20;
    a.collection("docs")
        .put(Document::with_id(id).with("a", "a".repeat(nine)))
        .expect("put");
    b.collection("docs")
        .put(Document::with_id(id).with("b", "b".repeat(nine)))
        .expect("put");
    let ha = a.enable_sync(ra, Role::Client).await.expect("enable");
    ha.sync_now(T).await.expect("a syncs first");
    let hb = b.enable_sync(rb, Role::Client).await.expect("enable");
    hb.sync_now(T)
        .await
        .expect("b's sync completes: its write loses instead of sticking");
    let lost = hb.conflicts(0, 10).expect("conflicts");
    assert!(
        lost.iter()
            .any(|c| c.reason == blazedb_sync::LossReason::TooLarge
                && c.field.as_deref() == Some("b")),
        "{lost:?}"
    );
    // B's later writes are not stuck behind it.
    let later = b
        .collection("notes")
        .insert(Document::new().with("after", true))
        .expect("insert");
    hb.sync_now(T).await.expect("b's later write goes through");
    ha.sync_now(T).await.expect("a pulls");
    assert!(a.collection("notes").get(later).expect("get").is_some());
    // A fresh client bootstraps, though the server's state of the document holds both
    // 9 MiB values (more than one client frame).
    let (c, rc) = client("c");
    let hc = c.enable_sync(rc, Role::Client).await.expect("enable");
    hc.sync_now(T).await.expect("a fresh client bootstraps");
    for db in [&a, &b, &c] {
        let d = db
            .collection("docs")
            .get(id)
            .expect("get")
            .expect("the document");
        assert!(
            matches!(d.fields.get("a"), Some(blazedb_core::Value::String(s)) if s.len() == nine),
            "the first write keeps its place"
        );
        assert!(
            !d.fields.contains_key("b"),
            "the write that would overflow lost"
        );
        assert!(db.collection("notes").get(later).expect("get").is_some());
    }
    for h in [ha, hb, hc] {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_sockets_hold_no_client_slot_and_a_full_server_says_busy_inside_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn_server(
        &dir.path().join("server"),
        &["--max-connections", "1", "--max-handshakes-per-ip", "4"],
    )
    .await;
    // Sockets that never start TLS, from one address: they hold handshake slots only.
    let mut anon = Vec::new();
    for _ in 0..4 {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind");
        anon.push(
            sock.connect(format!("127.0.0.1:{}", p.port).parse().expect("addr"))
                .await
                .expect("connect"),
        );
    }
    p.metric_becomes("blazedb_connections_open", 4).await;
    // An honest client (another address) still gets the one authenticated slot.
    let held = p
        .relay(Credentials::none().token("tok"))
        .connect_frames()
        .await
        .expect("a client gets in beside anonymous sockets");
    // The next one is told, inside TLS, that the server is busy: a typed refusal the
    // client reports as such, not a broken TLS stream.
    let e = p
        .relay(Credentials::none().token("tok"))
        .connect_frames()
        .await
        .expect_err("at the limit");
    assert_eq!(e.refused(), Some(RefuseCode::Busy), "{e}");
    drop((held, anon));
}
