//! Hostile input at a sync server: random bytes, oversized and truncated frames, garbage
//! after authentication, peers that send nothing, and a thousand connections at once.
//! Each is refused or bounded with a typed refusal where the peer can still read one;
//! the server keeps serving honest clients and no stored data changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use blazedb_core::Document;
use blazedb_engine::{Database, KdfParams};
use blazedb_net::frame::{Frame, HANDSHAKE_FRAME_MAX, MAGIC, NET_VERSION};
use blazedb_net::handshake::encode_frame;
use blazedb_net::{
    Credentials, ListenOptions, ListenerStats, NetListener, RefuseCode, Security, ServerIdentity,
    TcpRelay,
};
use blazedb_sync::relay::Relay;
use blazedb_sync::{Role, ServeHandle, SyncConfig, SyncNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Served {
    db: Database,
    _serve: ServeHandle,
    addr: SocketAddr,
    stats: Arc<ListenerStats>,
    _dir: tempfile::TempDir,
}

async fn serve(opts: impl FnOnce(&mut ListenOptions)) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir.path(), "server", "pw")
        .expect("open");
    for i in 0..10i64 {
        db.collection("notes")
            .insert(Document::new().with("i", i))
            .expect("insert");
    }
    let mut o = ListenOptions::plain_tcp_insecure("main", Some("tok"), None);
    o.handshake_timeout = Duration::from_millis(300);
    opts(&mut o);
    let listener = NetListener::bind_tcp("127.0.0.1:0".parse().expect("addr"), o)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("tcp");
    let stats = listener.stats();
    let node = SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable");
    let serve = ServeHandle::start(node, listener, &SyncConfig::default(), 4096).expect("serve");
    Served {
        db,
        _serve: serve,
        addr,
        stats,
        _dir: dir,
    }
}

fn snapshot(db: &Database) -> Vec<Document> {
    db.collection("notes").all().expect("all")
}

/// Reads until the server closes; returns the first frame it sent, if any decodes.
async fn until_closed(s: &mut TcpStream) -> Option<Frame> {
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all).await;
    blazedb_net::frame::decode_stream(&all, HANDSHAKE_FRAME_MAX)
        .ok()
        .and_then(|v| v.into_iter().next())
}

fn honest_relay(s: &Served) -> TcpRelay {
    TcpRelay::new(
        "127.0.0.1",
        s.addr.port(),
        "main",
        Security::PlainTcpInsecure,
        Credentials::none().token("tok"),
    )
}

async fn honest_client_works(s: &Served) {
    honest_relay(s)
        .connect()
        .await
        .expect("an honest client still gets in");
}

fn hello() -> Frame {
    Frame::ClientHello {
        magic: MAGIC,
        versions: (NET_VERSION, NET_VERSION),
        caps: vec![],
        database: "main".into(),
        nonce: [5; 32],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_oversized_and_truncated_frames_are_refused_and_change_nothing() {
    let s = serve(|_| {}).await;
    let before = snapshot(&s.db);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..20 {
        let mut noise = vec![0u8; 64 + round * 97];
        for b in &mut noise {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        let _ = c.write_all(&noise).await;
        // Whatever came back, it was at most a refusal, never data.
        if let Some(f) = until_closed(&mut c).await {
            assert!(matches!(f, Frame::Refused { .. }), "{f:?}");
        }
    }
    // A length prefix of 4 GiB: refused from the prefix alone.
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    assert!(matches!(
        until_closed(&mut c).await,
        Some(Frame::Refused {
            code: RefuseCode::Protocol,
            ..
        })
    ));
    // A truncated hello, then silence: closed at the handshake deadline.
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    let h = encode_frame(&hello());
    c.write_all(&h[..h.len() / 2]).await.expect("write");
    assert!(until_closed(&mut c).await.is_none());
    // A hello whose body is cut, closed by the client: the server drops it.
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&h[..h.len() - 3]).await.expect("write");
    c.shutdown().await.expect("shutdown");
    assert!(until_closed(&mut c).await.is_none());
    honest_client_works(&s).await;
    assert_eq!(snapshot(&s.db), before);
    assert!(s.stats.handshake_failed.load(Ordering::Relaxed) >= 22);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_authentication_closes_that_connection_only() {
    use blazedb_crypto::auth::{CredentialKey, ProofRole, Transcript};
    let s = serve(|_| {}).await;
    let before = snapshot(&s.db);
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&encode_frame(&hello())).await.expect("write");
    let mut len = [0u8; 4];
    c.read_exact(&mut len).await.expect("len");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    c.read_exact(&mut body).await.expect("body");
    let Ok(Frame::ServerHello { nonce, version, .. }) = Frame::decode(&body) else {
        panic!("expected a server hello");
    };
    let tr = Transcript {
        version,
        database: "main",
        client_nonce: &[5; 32],
        server_nonce: &nonce,
        channel: None,
    }
    .hash();
    let proof = CredentialKey::from_token("tok").prove(ProofRole::ClientToken, &tr);
    c.write_all(&encode_frame(&Frame::Auth {
        identity: blazedb_net::Identity::Token(proof),
        secret_proof: None,
    }))
    .await
    .expect("write");
    // Authenticated now: a frame whose body is not a frame.
    c.write_all(&[0, 0, 0, 5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        .await
        .expect("write");
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all).await;
    let frames =
        blazedb_net::frame::decode_stream(&all, blazedb_net::frame::FRAME_MAX).unwrap_or_default();
    assert!(
        matches!(frames.first(), Some(Frame::Welcome { .. })),
        "{frames:?}"
    );
    assert!(
        frames.iter().any(|f| matches!(
            f,
            Frame::Refused {
                code: RefuseCode::Protocol,
                ..
            }
        )),
        "{frames:?}"
    );
    honest_client_works(&s).await;
    assert_eq!(snapshot(&s.db), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_nothing_is_closed_at_the_handshake_deadline() {
    let s = serve(|_| {}).await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    let started = std::time::Instant::now();
    assert!(
        until_closed(&mut c).await.is_none(),
        "nothing is sent to a silent peer"
    );
    eprintln!("silent peer closed after {:?}", started.elapsed());
    assert_eq!(
        s.stats.open.load(Ordering::Relaxed),
        0,
        "its slot is free again"
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_are_bounded_and_the_rest_closed_unanswered() {
    // Client and server ends live in this process: 2 descriptors per connection.
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("rlimit");
    rlimit::Resource::NOFILE
        .set(hard, hard)
        .expect("raise the descriptor limit");
    assert!(
        hard >= 2_600,
        "this test needs 2,600 file descriptors; the hard limit is {hard}"
    );
    let s = serve(|o| {
        o.max_handshakes = 1_000;
        o.max_handshakes_per_ip = 1_000;
        o.handshake_timeout = Duration::from_secs(30);
    })
    .await;
    let before = snapshot(&s.db);
    let rss0 = rss_kib();
    let mut held = Vec::new();
    for _ in 0..1_000 {
        held.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    // The accept loop admits each in turn; one past the handshake limit is closed
    // before anything is sent (a TLS client could not read a refusal anyway).
    let mut extra = Vec::new();
    for _ in 0..100 {
        extra.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    for mut c in extra {
        assert!(until_closed(&mut c).await.is_none(), "closed unanswered");
    }
    let rss1 = rss_kib();
    eprintln!(
        "1,000 silent connections: open {}, refused {}, RSS +{} KiB ({} bytes each, client ends included)",
        s.stats.open.load(Ordering::Relaxed),
        s.stats.refused_busy.load(Ordering::Relaxed),
        rss1.saturating_sub(rss0),
        rss1.saturating_sub(rss0) * 1024 / 1_000
    );
    assert_eq!(s.stats.open.load(Ordering::Relaxed), 1_000);
    assert_eq!(s.stats.refused_busy.load(Ordering::Relaxed), 100);
    assert!(
        rss1.saturating_sub(rss0) < 100 * 1024,
        "memory bounded: +{} KiB",
        rss1 - rss0
    );
    // Freeing the slots lets honest clients in again.
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match honest_relay(&s).connect().await {
            Ok(_) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "never got in: {e}"),
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(snapshot(&s.db), before);
}

/// A TCP connection from `ip` (any 127.x.y.z is loopback on Linux).
async fn connect_from(ip: [u8; 4], to: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from((ip, 0))).expect("bind");
    sock.connect(to).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_sockets_cannot_take_the_place_of_authenticated_clients() {
    let s = serve(|o| {
        o.max_connections = 2;
        o.max_handshakes = 8;
        o.max_handshakes_per_ip = 4;
        o.handshake_timeout = Duration::from_secs(30);
    })
    .await;
    // Two honest clients hold the two authenticated slots.
    let a = honest_relay(&s).connect().await.expect("first client");
    let b = honest_relay(&s).connect().await.expect("second client");
    // Anonymous sockets from one address: four get a handshake slot, the rest are
    // closed unanswered.
    let mut anon = Vec::new();
    for _ in 0..4 {
        anon.push(connect_from([127, 0, 0, 2], s.addr).await);
    }
    let mut over = connect_from([127, 0, 0, 2], s.addr).await;
    assert!(
        until_closed(&mut over).await.is_none(),
        "over the per-address limit"
    );
    // A third honest client (from another address) still gets through the handshake,
    // and is told the server is busy: a typed refusal, not a broken connection.
    let Err(e) = honest_relay(&s).dial().await else {
        panic!("at the connection limit: refused");
    };
    assert_eq!(e.refused(), Some(RefuseCode::Busy), "{e}");
    // The clients in place were never disturbed: the server still answers them.
    for mut w in [a, b] {
        w.tx.send(blazedb_sync::Delivery::new(blazedb_sync::Msg::Ping {
            token: 1,
        }))
        .await
        .expect("the connection is alive");
        let answered = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(d) = w.rx.recv().await {
                if matches!(d.msg, blazedb_sync::Msg::Pong { token: 1, .. }) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(answered, Ok(true), "the server answers a client in place");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match honest_relay(&s).connect().await {
            Ok(_) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "never got in: {e}"),
        }
        tokio::task::yield_now().await;
    }
    drop(anon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_at_a_tls_port_fail_the_tls_handshake_and_are_counted() {
    let s = serve(|o| {
        o.identity = Some(Arc::new(
            ServerIdentity::self_signed(&["localhost"]).expect("identity"),
        ));
    })
    .await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all).await;
    assert!(
        Frame::decode(&all).is_err(),
        "no frame is ever sent before TLS"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.stats.handshake_failed.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the failure is counted"
        );
        tokio::task::yield_now().await;
    }
}
