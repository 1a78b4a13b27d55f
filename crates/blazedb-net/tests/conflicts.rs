//! The conflict rules (docs/semantics.md) over real TLS connections to a `Server`: each
//! situation ends with the winner the rules name, on the server and on every client.

use std::time::Duration;

use blazedb_core::{DocId, Document, Value};
use blazedb_engine::{Database, KdfParams, Patch};
use blazedb_net::{Credentials, RemoteNode, Server};
use blazedb_sync::{EnableSync, LossReason, Role, SyncHandle};

const T: Duration = Duration::from_secs(30);

fn open(dir: &std::path::Path, name: &str) -> Database {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open")
}

struct Net {
    _dir: tempfile::TempDir,
    server_db: Database,
    server: Server,
    clients: Vec<(Database, SyncHandle)>,
}

impl Net {
    async fn new(n: usize) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let server_db = open(dir.path(), "server");
        let mut server = Server::new(0, &server_db, "main", Some("tok"), None);
        let addr = server.start().await.expect("start");
        let fp = server.fingerprint().expect("TLS");
        let mut clients = Vec::new();
        for i in 0..n {
            let db = open(dir.path(), &format!("c{i}"));
            let remote = RemoteNode::pinned(
                "localhost",
                addr.port(),
                "main",
                fp,
                Credentials::none().token("tok"),
            );
            let h = db
                .enable_sync(remote.relay(), Role::Client)
                .await
                .expect("enable");
            clients.push((db, h));
        }
        Net {
            _dir: dir,
            server_db,
            server,
            clients,
        }
    }

    async fn sync(&self) {
        for _ in 0..2 {
            for (_, h) in &self.clients {
                h.sync_now(T).await.expect("sync");
            }
        }
    }

    async fn offline(&self) {
        for (_, h) in &self.clients {
            h.stop().await;
        }
    }

    fn online(&self) {
        for (_, h) in &self.clients {
            h.start();
        }
    }

    fn everywhere(&self, id: DocId) -> Vec<Option<Document>> {
        std::iter::once(&self.server_db)
            .chain(self.clients.iter().map(|(d, _)| d))
            .map(|db| db.collection("d").get(id).expect("get"))
            .collect()
    }
}

fn doc(id: DocId, field: &str, v: i64) -> Document {
    Document {
        id,
        fields: Document::new().with(field, v).fields,
    }
}

fn id() -> DocId {
    DocId::from_bytes([3; 16])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_server_wins_a_concurrent_edit_even_when_the_client_wrote_later() {
    let net = Net::new(1).await;
    let c = &net.clients[0].0;
    c.collection("d").put(doc(id(), "v", 0)).expect("put");
    net.sync().await;
    net.offline().await;
    net.server_db
        .collection("d")
        .patch(id(), &Patch::new().set("v", 1i64))
        .expect("patch");
    c.collection("d")
        .patch(id(), &Patch::new().set("v", 2i64))
        .expect("patch"); // later
    net.online();
    net.sync().await;
    for d in net.everywhere(id()) {
        assert_eq!(d.expect("exists").fields.get("v"), Some(&Value::Int(1)));
    }
    let lost = net.clients[0].1.conflicts(0, 10).expect("conflicts");
    assert!(
        lost.iter().any(|l| l.reason == LossReason::ServerPriority),
        "{lost:?}"
    );
    // The server counts the client write it overruled (its metrics report it).
    let rejected: u64 = net
        .server
        .connections()
        .iter()
        .map(|s| s.writes_rejected)
        .sum();
    assert_eq!(rejected, 1);
    net.server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_client_that_saw_the_servers_value_overrides_it() {
    let net = Net::new(1).await;
    net.server_db
        .collection("d")
        .put(doc(id(), "v", 1))
        .expect("put");
    net.sync().await;
    let c = &net.clients[0].0;
    c.collection("d")
        .patch(id(), &Patch::new().set("v", 2i64))
        .expect("patch");
    net.sync().await;
    for d in net.everywhere(id()) {
        assert_eq!(d.expect("exists").fields.get("v"), Some(&Value::Int(2)));
    }
    net.server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_edits_of_different_fields_are_both_kept_and_a_server_delete_beats_a_client_edit()
{
    let net = Net::new(2).await;
    let (a, b) = (&net.clients[0].0, &net.clients[1].0);
    a.collection("d").put(doc(id(), "x", 0)).expect("put");
    net.sync().await;
    net.offline().await;
    a.collection("d")
        .patch(id(), &Patch::new().set("x", 1i64))
        .expect("patch");
    b.collection("d")
        .patch(id(), &Patch::new().set("y", 2i64))
        .expect("patch");
    net.online();
    net.sync().await;
    for d in net.everywhere(id()) {
        let d = d.expect("exists");
        assert_eq!(
            (d.fields.get("x"), d.fields.get("y")),
            (Some(&Value::Int(1)), Some(&Value::Int(2)))
        );
    }
    net.offline().await;
    net.server_db.collection("d").delete(id()).expect("delete");
    a.collection("d")
        .patch(id(), &Patch::new().set("x", 9i64))
        .expect("patch");
    net.online();
    net.sync().await;
    assert!(
        net.everywhere(id()).iter().all(Option::is_none),
        "the server's delete wins"
    );
    net.server.stop().await.expect("stop");
}
