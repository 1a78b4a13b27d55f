//! A client that authenticates, asks for the whole log and then never reads: while it
//! stays connected, other clients write and receive tens of thousands of documents
//! through the same server, and what the server produces for the stalled one stays
//! bounded: its session sends at most a window of unacknowledged batches (resent after
//! the resend timeout), and each message waits for its share of the shared send
//! budget, so the session stops producing while the socket is full. Measured here:
//! ~13.6 MB produced for it against ~89 MB of log in fast mode.
//!
//! Fast mode (CI): 40,000 documents of ~2 KiB (~90 MB of log). Long mode:
//! `BLAZEDB_STALL_DOCS=100000`.

use std::net::SocketAddr;
use std::time::Duration;

use blazedb_core::Document;
use blazedb_engine::{Database, KdfParams};
use blazedb_net::frame::Frame;
use blazedb_net::{Credentials, ListenOptions, Liveness, NetListener, Security, TcpRelay};
use blazedb_sync::proto::PROTOCOL_VERSION;
use blazedb_sync::{EnableSync, LogPos, Msg, NodeId, Role, ServeHandle, SyncConfig, SyncNode};

const T: Duration = Duration::from_secs(600);
/// The server's send budget (all connections together).
const SEND_BUDGET: usize = 20 << 20;

fn open(dir: &std::path::Path, name: &str) -> Database {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open")
}

fn relay(addr: SocketAddr) -> TcpRelay {
    TcpRelay::new(
        "127.0.0.1",
        addr.port(),
        "main",
        Security::PlainTcpInsecure,
        Credentials::none().token("tok"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_holds_a_bounded_share_while_other_clients_sync_everything() {
    let docs: usize = std::env::var("BLAZEDB_STALL_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = open(dir.path(), "server");
    let mut o = ListenOptions::plain_tcp_insecure("main", Some("tok"), None);
    o.send_budget = SEND_BUDGET;
    // Long enough that the stalled reader stays connected for the whole test: what
    // is shown is that others are served meanwhile, not that it is closed.
    o.liveness = Liveness {
        heartbeat: Duration::from_secs(300),
        idle_timeout: Duration::from_secs(900),
    };
    let listener = NetListener::bind_tcp("127.0.0.1:0".parse().expect("addr"), o)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("tcp");
    let node = SyncNode::enable(&server, Role::Server, &SyncConfig::default()).expect("enable");
    let serve = ServeHandle::start(node, listener, &SyncConfig::default(), 64).expect("serve");

    // The stalled reader: authenticated, hello asking for everything, then silence.
    let stalled_node = NodeId(0x57a1_1ed0);
    let mut stalled = relay(addr).connect_frames().await.expect("connect");
    stalled
        .send(&Frame::Sync(Msg::Hello {
            version: PROTOCOL_VERSION,
            node: stalled_node,
            role: Role::Client,
            want_after: LogPos::ZERO,
            accept: true,
            send: true,
            now_us: blazedb_sync::clock::wall_now_us(),
            have_yours: false,
            log_last: LogPos::ZERO,
            resume: None,
        }))
        .await
        .expect("hello");

    // A writer pushes the documents, a reader receives them all.
    let writer = open(dir.path(), "writer");
    let reader = open(dir.path(), "reader");
    let hw = writer
        .enable_sync(relay(addr), Role::Client)
        .await
        .expect("writer");
    let hr = reader
        .enable_sync(relay(addr), Role::Client)
        .await
        .expect("reader");
    let body = "lorem ipsum dolor sit amet ".repeat(80);
    let mut written = 0usize;
    while written < docs {
        let mut tx = writer.begin_write().expect("begin");
        for i in written..(written + 1_000).min(docs) {
            tx.insert(
                "notes",
                Document::new()
                    .with("i", i64::try_from(i).expect("small"))
                    .with("body", body.as_str()),
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
        written = (written + 1_000).min(docs);
    }
    let pushed = hw.sync_now(T).await.expect("the writer is served");
    assert_eq!(pushed.pending_local_writes, 0);
    let got = hr.sync_now(T).await.expect("the reader is served");
    assert_eq!(
        reader.collection("notes").count().expect("count"),
        docs as u64,
        "the reader received every document"
    );
    assert!(got.bytes_received > (docs * body.len()) as u64, "{got:?}");

    // The stalled reader is still connected, and the server produced for it no more
    // than the budget and what the sockets between them hold, not the whole log.
    let conns = serve.connections();
    let st = conns
        .iter()
        .find(|c| c.peer.is_some_and(|p| p.node == stalled_node))
        .expect("the stalled reader is still connected");
    let log_bytes = got.bytes_received;
    eprintln!(
        "stalled reader: {} bytes produced for it, against {log_bytes} bytes of log",
        st.bytes_sent
    );
    let bound = (SEND_BUDGET + (24 << 20)) as u64;
    assert!(
        st.bytes_sent < bound && st.bytes_sent * 2 < log_bytes,
        "held for the stalled reader: {} bytes (bound {bound}, log {log_bytes})",
        st.bytes_sent
    );
    drop(stalled);
    hw.stop().await;
    hr.stop().await;
}
