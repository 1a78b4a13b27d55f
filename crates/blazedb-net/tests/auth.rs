//! Who gets in: sync over TLS with a pinned certificate and an auth token, plain TCP and
//! Unix sockets with a shared secret; and every wrong or missing credential, a wrong
//! pin and a replayed proof refused with a typed error while nothing is read or written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use blazedb_core::Document;
use blazedb_engine::{Database, KdfParams};
use blazedb_net::frame::{Frame, MAGIC, NET_VERSION};
use blazedb_net::handshake::encode_frame;
use blazedb_net::{
    Credentials, Fingerprint, ListenOptions, NetError, NetListener, RefuseCode, Security,
    ServerIdentity, ServerTrust, TcpRelay,
};
use blazedb_sync::relay::Relay;
use blazedb_sync::{EnableSync, Role, ServeHandle, SyncConfig, SyncNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(20);

fn open(dir: &std::path::Path, name: &str) -> Database {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open")
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

struct Served {
    db: Database,
    serve: ServeHandle,
    addr: SocketAddr,
    fingerprint: Fingerprint,
    stats: Arc<blazedb_net::ListenerStats>,
}

async fn serve(
    dir: &std::path::Path,
    opts: impl FnOnce(Arc<ServerIdentity>) -> ListenOptions,
) -> Served {
    let db = open(dir, "server");
    db.collection("notes")
        .insert(Document::new().with("from", "server"))
        .expect("insert");
    let identity = Arc::new(ServerIdentity::self_signed(&["localhost"]).expect("identity"));
    let fingerprint = identity.fingerprint();
    let listener = NetListener::bind_tcp(local(), opts(identity))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("tcp");
    let stats = listener.stats();
    let node = SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable");
    let serve = ServeHandle::start(node, listener, &SyncConfig::default(), 64).expect("serve");
    Served {
        db,
        serve,
        addr,
        fingerprint,
        stats,
    }
}

fn tls(s: &Served, creds: Credentials) -> TcpRelay {
    TcpRelay::new(
        "localhost",
        s.addr.port(),
        "main",
        Security::Tls(ServerTrust::Pinned(s.fingerprint)),
        creds,
    )
}

async fn refusal(relay: &TcpRelay) -> NetError {
    match relay.dial().await {
        Ok(_) => panic!("must be refused"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_token_syncs_over_tls_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path(), |id| {
        ListenOptions::tls("main", id, Some("tok"), None)
    })
    .await;
    let client = open(dir.path(), "client");
    client
        .collection("notes")
        .insert(Document::new().with("from", "client"))
        .expect("insert");
    let sync = client
        .enable_sync(tls(&s, Credentials::none().token("tok")), Role::Client)
        .await
        .expect("enable");
    let st = sync.sync_now(T).await.expect("sync now");
    assert!(st.connected && st.pending_local_writes == 0, "{st:?}");
    assert_eq!(client.collection("notes").count().expect("count"), 2);
    assert_eq!(s.db.collection("notes").count().expect("count"), 2);
    assert_eq!(s.serve.connections().len(), 1);
    assert!(st.target.starts_with("tls://localhost:"), "{st:?}");
    assert_eq!(
        s.stats.accepted.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_and_unix_sockets_sync_with_a_shared_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path(), |_| {
        ListenOptions::plain_tcp_insecure("main", None, Some("s3cret"))
    })
    .await;
    let client = open(dir.path(), "client");
    let relay = TcpRelay::new(
        "127.0.0.1",
        s.addr.port(),
        "main",
        Security::PlainTcpInsecure,
        Credentials::none().secret("s3cret"),
    );
    let sync = client
        .enable_sync(relay, Role::Client)
        .await
        .expect("enable");
    sync.sync_now(T).await.expect("sync now");
    assert_eq!(client.collection("notes").count().expect("count"), 1);

    let sock = dir.path().join("sync.sock");
    let listener = NetListener::bind_unix(
        &sock,
        ListenOptions::plain_tcp_insecure("main", None, Some("s3cret")),
    )
    .expect("bind unix");
    let node = sync.node().clone();
    drop(sync);
    let _serve_unix =
        ServeHandle::start(node, listener, &SyncConfig::default(), 4).expect("serve unix");
    let third = open(dir.path(), "third");
    let via_unix = blazedb_net::UnixRelay::new(&sock, "main", Credentials::none().secret("s3cret"));
    let sync3 = third
        .enable_sync(via_unix, Role::Client)
        .await
        .expect("enable");
    sync3
        .sync_now(T)
        .await
        .expect("sync now over the unix socket");
    assert_eq!(third.collection("notes").count().expect("count"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_and_a_wrong_pin_are_typed_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path(), |id| {
        ListenOptions::tls("main", id, Some("tok"), Some("sec"))
    })
    .await;
    let before = s.db.collection("notes").count().expect("count");
    let both = || Credentials::none().token("tok").secret("sec");

    let wrong_token = refusal(&tls(&s, Credentials::none().token("nope").secret("sec"))).await;
    assert_eq!(
        wrong_token.refused(),
        Some(RefuseCode::Auth),
        "{wrong_token}"
    );
    let wrong_secret = refusal(&tls(&s, Credentials::none().token("tok").secret("nope"))).await;
    assert_eq!(
        wrong_secret.refused(),
        Some(RefuseCode::Auth),
        "{wrong_secret}"
    );
    let missing = refusal(&tls(&s, Credentials::none().token("tok"))).await;
    assert!(
        matches!(missing, NetError::Auth(ref m) if m.contains("shared secret")),
        "{missing}"
    );
    let other_db = refusal(&TcpRelay::new(
        "localhost",
        s.addr.port(),
        "other",
        Security::Tls(ServerTrust::Pinned(s.fingerprint)),
        both(),
    ))
    .await;
    assert_eq!(
        other_db.refused(),
        Some(RefuseCode::UnknownDatabase),
        "{other_db}"
    );
    let impostor = ServerIdentity::self_signed(&["localhost"])
        .expect("identity")
        .fingerprint();
    let pin = refusal(&TcpRelay::new(
        "localhost",
        s.addr.port(),
        "main",
        Security::Tls(ServerTrust::Pinned(impostor)),
        both(),
    ))
    .await;
    assert!(
        matches!(pin, NetError::Tls(ref m) if m.contains("fingerprint")),
        "{pin}"
    );
    let plain_to_tls = refusal(&TcpRelay::new(
        "127.0.0.1",
        s.addr.port(),
        "main",
        Security::PlainTcpInsecure,
        both(),
    ))
    .await;
    assert!(
        !matches!(
            plain_to_tls,
            NetError::Refused {
                code: RefuseCode::Busy,
                ..
            }
        ),
        "{plain_to_tls}"
    );

    // The right credentials still work, and the refused attempts changed nothing.
    assert!(tls(&s, both()).connect().await.is_ok());
    assert_eq!(s.db.collection("notes").count().expect("count"), before);
    assert_eq!(
        s.stats
            .refused_auth
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// A raw plain-TCP client speaking the handshake by hand.
struct Raw(tokio::net::TcpStream);

impl Raw {
    async fn send(&mut self, f: &Frame) {
        self.0.write_all(&encode_frame(f)).await.expect("write");
    }

    async fn recv(&mut self) -> Option<Frame> {
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.0.read_exact(&mut body).await.ok()?;
        Frame::decode(&body).ok()
    }
}

fn hello(nonce: [u8; 32]) -> Frame {
    Frame::ClientHello {
        magic: MAGIC,
        versions: (NET_VERSION, NET_VERSION),
        caps: vec![],
        database: "main".into(),
        nonce,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_captured_from_one_session_is_refused_on_the_next() {
    use blazedb_crypto::auth::{CredentialKey, ProofRole, Transcript};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path(), |_| {
        ListenOptions::plain_tcp_insecure("main", None, Some("sec"))
    })
    .await;
    let key = CredentialKey::from_secret("sec", "main");

    // Session 1: an honest proof (as an eavesdropper on plain TCP would capture it).
    let mut a = Raw(tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect"));
    a.send(&hello([1; 32])).await;
    let Some(Frame::ServerHello {
        nonce: server_nonce,
        version,
        ..
    }) = a.recv().await
    else {
        panic!("expected a server hello");
    };
    let tr = Transcript {
        version,
        database: "main",
        client_nonce: &[1; 32],
        server_nonce: &server_nonce,
        channel: None,
    }
    .hash();
    let proof = key.prove(ProofRole::ClientSecret, &tr);
    a.send(&Frame::Auth {
        identity: blazedb_net::Identity::None,
        secret_proof: Some(proof),
    })
    .await;
    assert!(matches!(
        a.recv().await,
        Some(Frame::Welcome {
            server_proof: Some(_)
        })
    ));

    // Session 2: the same hello and the captured proof.
    let mut b = Raw(tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect"));
    b.send(&hello([1; 32])).await;
    let Some(Frame::ServerHello { nonce: fresh, .. }) = b.recv().await else {
        panic!("expected a server hello");
    };
    assert_ne!(
        fresh, server_nonce,
        "every session gets a fresh server nonce"
    );
    b.send(&Frame::Auth {
        identity: blazedb_net::Identity::None,
        secret_proof: Some(proof),
    })
    .await;
    assert!(
        matches!(
            b.recv().await,
            Some(Frame::Refused {
                code: RefuseCode::Auth,
                ..
            })
        ),
        "a replayed proof is refused"
    );
    assert!(b.recv().await.is_none(), "and the connection is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_peer_that_skips_the_proofs_reads_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(dir.path(), |_| {
        ListenOptions::plain_tcp_insecure("main", Some("tok"), None)
    })
    .await;
    let before = s.db.collection("notes").count().expect("count");
    let mut raw = Raw(tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect"));
    raw.send(&hello([3; 32])).await;
    assert!(matches!(
        raw.recv().await,
        Some(Frame::ServerHello {
            wants_identity: true,
            ..
        })
    ));
    // Straight to sync traffic, no proofs.
    raw.send(&Frame::Sync(blazedb_sync::Msg::Want {
        after: blazedb_sync::LogPos::ZERO,
    }))
    .await;
    assert!(matches!(
        raw.recv().await,
        Some(Frame::Refused {
            code: RefuseCode::Protocol,
            ..
        })
    ));
    assert!(raw.recv().await.is_none());
    // Proofs of nothing.
    let mut raw = Raw(tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect"));
    raw.send(&hello([4; 32])).await;
    raw.recv().await.expect("server hello");
    raw.send(&Frame::Auth {
        identity: blazedb_net::Identity::None,
        secret_proof: None,
    })
    .await;
    assert!(matches!(
        raw.recv().await,
        Some(Frame::Refused {
            code: RefuseCode::Auth,
            ..
        })
    ));
    assert_eq!(s.db.collection("notes").count().expect("count"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_credentials_refuses_to_start() {
    let e = NetListener::bind_tcp(
        local(),
        ListenOptions::plain_tcp_insecure("main", None, None),
    )
    .await
    .expect_err("no credentials");
    assert!(matches!(e, NetError::Config(_)), "{e}");
}
