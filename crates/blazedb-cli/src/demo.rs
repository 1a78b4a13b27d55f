//! `blazedb demo`: the README's main job. Starts a real sync server (TLS on loopback,
//! self-signed certificate, auth token) on a server-role database and three client
//! databases that sync with it over TCP, plays the conflict situations of docs/semantics.md,
//! and prints what each node holds and who won each conflict and why. It ends by
//! checking that every replica exports the same bytes; a difference is an error (exit
//! code 8), so the demo is also a test.

use std::path::Path;
use std::time::Duration;

use blazedb::net::{Credentials, RemoteNode, Server};
use blazedb::sync::{ConflictEntry, Role, SyncConfig, SyncHandle};
use blazedb::{Database, DocId, Document, KdfParams, Patch};
use comfy_table::Table;

use crate::exit::{CliError, CliResult, Exit};

const COLLECTION: &str = "board";
const TOKEN: &str = "demo-token";
/// How long one sync may take before the demo reports a failure.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

struct Client {
    name: &'static str,
    db: Database,
    sync: SyncHandle,
}

struct Demo {
    server_db: Database,
    server: Server,
    clients: Vec<Client>,
}

fn open(dir: &Path, name: &str) -> CliResult<Database> {
    // The demo's databases are throwaway: a fast key derivation keeps start-up quick.
    Ok(Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "demo password")?)
}

fn text(v: Option<&blazedb::Value>) -> String {
    crate::conflict_text::value_text(v)
}

fn say(line: &str) {
    println!("{line}");
}

impl Demo {
    fn node_name(&self, node: blazedb::sync::NodeId) -> String {
        if self.server.store().is_some_and(|n| n.node_id() == node) {
            return "server".into();
        }
        self.clients
            .iter()
            .find(|c| c.sync.node().node_id() == node)
            .map_or_else(|| node.to_string(), |c| c.name.to_owned())
    }

    fn client(&self, name: &str) -> &Client {
        self.clients
            .iter()
            .find(|c| c.name == name)
            .unwrap_or(&self.clients[0])
    }

    /// Every client syncs until none receives anything new: afterwards each holds what
    /// the server holds, and every loss has reached the node whose write lost.
    async fn settle(&self) -> CliResult {
        for _round in 0..2 {
            for c in &self.clients {
                c.sync.sync_now(SYNC_TIMEOUT).await.map_err(|e| {
                    CliError::new(Exit::Sync, format!("{} could not sync: {e}", c.name))
                })?;
            }
        }
        Ok(())
    }

    fn get(db: &Database, id: DocId) -> CliResult<Option<Document>> {
        Ok(db.collection(COLLECTION).get(id)?)
    }

    /// A table: one row per node, the document's fields (or "deleted").
    fn show(&self, id: DocId, fields: &[&str]) -> CliResult {
        let mut t = Table::new();
        let mut header = vec!["node".to_owned()];
        header.extend(fields.iter().map(|f| (*f).to_owned()));
        t.set_header(header);
        let mut rows = vec![("server", &self.server_db)];
        rows.extend(self.clients.iter().map(|c| (c.name, &c.db)));
        for (name, db) in rows {
            let mut row = vec![name.to_owned()];
            match Demo::get(db, id)? {
                Some(d) => row.extend(fields.iter().map(|f| text(d.get(f)))),
                None => row.extend(fields.iter().map(|_| "(deleted)".to_owned())),
            }
            t.add_row(row);
        }
        say(&t.to_string());
        Ok(())
    }

    /// The conflict-log entries of `client` after `after`, printed as sentences.
    fn losses(&self, client: &str, after: u64) -> CliResult<Vec<ConflictEntry>> {
        let c = self.client(client);
        let entries = c.sync.conflicts(after, 100)?;
        for e in &entries {
            let line = crate::conflict_text::sentence(
                e,
                "its",
                &|n| self.node_name(n),
                crate::conflict_text::Values::Text,
            );
            say(&format!("  conflict log of {client}: {line}"));
        }
        Ok(entries)
    }

    fn last_conflict(&self, client: &str) -> CliResult<u64> {
        Ok(self
            .client(client)
            .sync
            .conflicts(0, usize::MAX)?
            .last()
            .map_or(0, |e| e.seq))
    }

    fn expect(&self, ok: bool, what: &str) -> CliResult {
        if ok {
            say(&format!("  ✓ {what}"));
            Ok(())
        } else {
            Err(CliError::new(
                Exit::Sync,
                format!("the demo expected: {what}"),
            ))
        }
    }
}

async fn start(dir: &Path) -> CliResult<Demo> {
    let server_db = open(dir, "server")?;
    let mut server = Server::new(0, &server_db, "main", Some(TOKEN), None);
    let addr = server.start().await?;
    let fp = server
        .fingerprint()
        .ok_or_else(|| CliError::new(Exit::Failure, "the server has no certificate"))?;
    say(&format!(
        "server: listening on {addr} (TLS 1.3, certificate fingerprint {fp}), auth token required"
    ));
    let remote = RemoteNode::pinned(
        "127.0.0.1",
        addr.port(),
        "main",
        fp,
        Credentials::none().token(TOKEN),
    );
    let mut clients = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let db = open(dir, name)?;
        let sync =
            SyncHandle::enable(&db, remote.relay(), Role::Client, SyncConfig::default()).await?;
        clients.push(Client { name, db, sync });
    }
    say("clients: alice, bob and carol connect to it over TLS, pinning that fingerprint\n");
    Ok(Demo {
        server_db,
        server,
        clients,
    })
}

async fn scenes(d: &Demo) -> CliResult {
    let notice = fan_out(d).await?;
    server_vs_client(d, notice).await?;
    causality_first(d, notice).await?;
    client_vs_client(d, notice).await?;
    let note = offline_client(d, notice).await?;
    delete_vs_update(d, note).await
}

/// Scene 1: the server's write reaches every client. Returns the notice's id.
async fn fan_out(d: &Demo) -> CliResult<DocId> {
    let board = d.server_db.collection(COLLECTION);
    say("1. Fan-out: the server posts a notice; every client receives it.");
    let notice = board.insert(
        Document::new()
            .with("title", "Welcome")
            .with("price", 10)
            .with("status", "open"),
    )?;
    d.settle().await?;
    d.show(notice, &["title", "price", "status"])?;
    let all = d
        .clients
        .iter()
        .all(|c| Demo::get(&c.db, notice).ok().flatten().is_some());
    d.expect(all, "all three clients hold the server's notice")?;
    Ok(notice)
}

/// Scene 2: a concurrent server write beats a client's (server priority).
async fn server_vs_client(d: &Demo, notice: DocId) -> CliResult {
    let board = d.server_db.collection(COLLECTION);
    say(
        "\n2. Server vs client: alice is offline and sets price = 12; meanwhile the server sets price = 15.",
    );
    let alice = d.client("alice");
    let before = d.last_conflict("alice")?;
    alice.sync.stop().await;
    alice
        .db
        .collection(COLLECTION)
        .patch(notice, &Patch::new().set("price", 12))?;
    board.patch(notice, &Patch::new().set("price", 15))?;
    say("   alice reconnects.");
    alice.sync.start();
    d.settle().await?;
    d.show(notice, &["title", "price", "status"])?;
    let lost = d.losses("alice", before)?;
    d.expect(
        Demo::get(&alice.db, notice)?.and_then(|x| x.get("price").cloned()) == Some(15.into())
            && !lost.is_empty(),
        "the server's price (15) won everywhere, and alice's 12 is on record in her conflict log",
    )?;
    Ok(())
}

/// Scene 3: a client's write made after seeing the server's value wins.
async fn causality_first(d: &Demo, notice: DocId) -> CliResult {
    let alice = d.client("alice");
    say("\n3. Causality first: alice, having seen 15, sets price = 16. Her write takes effect.");
    alice
        .db
        .collection(COLLECTION)
        .patch(notice, &Patch::new().set("price", 16))?;
    d.settle().await?;
    d.show(notice, &["title", "price", "status"])?;
    d.expect(
        Demo::get(&d.server_db, notice)?.and_then(|x| x.get("price").cloned()) == Some(16.into()),
        "a client's write made after seeing the server's value wins (server priority never makes values sticky)",
    )?;
    Ok(())
}

/// Scene 4: two clients' concurrent writes: the later stamp wins.
async fn client_vs_client(d: &Demo, notice: DocId) -> CliResult {
    say(
        "\n4. Client vs client: bob and carol are both offline and both retitle the notice; carol writes last.",
    );
    let (bob, carol) = (d.client("bob"), d.client("carol"));
    let before = d.last_conflict("bob")?;
    bob.sync.stop().await;
    carol.sync.stop().await;
    bob.db
        .collection(COLLECTION)
        .patch(notice, &Patch::new().set("title", "Bob's title"))?;
    carol
        .db
        .collection(COLLECTION)
        .patch(notice, &Patch::new().set("title", "Carol's title"))?;
    say("   bob reconnects first, then carol.");
    bob.sync.start();
    bob.sync
        .sync_now(SYNC_TIMEOUT)
        .await
        .map_err(|e| CliError::new(Exit::Sync, e.to_string()))?;
    carol.sync.start();
    d.settle().await?;
    d.show(notice, &["title", "price", "status"])?;
    let lost = d.losses("bob", before)?;
    d.expect(
        Demo::get(&d.server_db, notice)?.and_then(|x| x.get("title").cloned())
            == Some("Carol's title".into())
            && !lost.is_empty(),
        "carol's later write won on every node; bob's is in his conflict log",
    )?;
    Ok(())
}

/// Scene 5: an offline client's writes reach everyone. Returns its first note's id.
async fn offline_client(d: &Demo, notice: DocId) -> CliResult<DocId> {
    let carol = d.client("carol");
    say(
        "\n5. Offline client: carol goes offline, adds two notes and closes the notice's status; then reconnects.",
    );
    carol.sync.stop().await;
    let cb = carol.db.collection(COLLECTION);
    let n1 = cb.insert(Document::new().with("title", "Carol's note 1"))?;
    let n2 = cb.insert(Document::new().with("title", "Carol's note 2"))?;
    cb.patch(notice, &Patch::new().set("status", "closed"))?;
    carol.sync.start();
    d.settle().await?;
    d.show(n1, &["title"])?;
    d.show(notice, &["title", "price", "status"])?;
    d.expect(
        Demo::get(&d.server_db, n2)?.is_some()
            && d.clients
                .iter()
                .all(|c| Demo::get(&c.db, n1).ok().flatten().is_some()),
        "carol's offline writes reached the server and every other client",
    )?;
    Ok(n1)
}

/// Scene 6: the server's delete beats a client's concurrent edit, which is on record.
async fn delete_vs_update(d: &Demo, n1: DocId) -> CliResult {
    let board = d.server_db.collection(COLLECTION);
    let alice = d.client("alice");
    say(
        "\n6. Delete vs update: the server deletes carol's first note while alice, offline, edits it.",
    );
    let before = d.last_conflict("alice")?;
    alice.sync.stop().await;
    alice
        .db
        .collection(COLLECTION)
        .patch(n1, &Patch::new().set("title", "alice was here"))?;
    board.delete(n1)?;
    alice.sync.start();
    d.settle().await?;
    d.show(n1, &["title"])?;
    let lost = d.losses("alice", before)?;
    d.expect(
        d.clients
            .iter()
            .all(|c| Demo::get(&c.db, n1).ok().flatten().is_none())
            && !lost.is_empty(),
        "the server's delete won: the note is gone everywhere, and alice's edit is on record",
    )?;
    Ok(())
}

fn export(db: &Database) -> CliResult<Vec<u8>> {
    let mut out = Vec::new();
    db.export_ndjson(&mut out, None)?;
    Ok(out)
}

async fn finish(d: &Demo) -> CliResult {
    say("\nEnd: every node's documents, exported (sorted, canonical):");
    let reference = export(&d.server_db)?;
    let mut same = true;
    for c in &d.clients {
        let bytes = export(&c.db)?;
        same &= bytes == reference;
        let n = c.db.collection(COLLECTION).count()?;
        say(&format!(
            "  {:<6} {n} documents, {} bytes of export, {}",
            c.name,
            bytes.len(),
            if bytes == reference {
                "identical to the server"
            } else {
                "DIFFERENT from the server"
            }
        ));
    }
    for c in &d.clients {
        c.sync.stop().await;
    }
    d.server.stop().await?;
    d.expect(same, "all four replicas are identical, byte for byte")
}

/// Runs the demo in `keep` (or a temporary directory, removed afterwards).
///
/// # Errors
/// [`Exit::Sync`] if a situation does not end as the rules say, or a replica differs.
pub fn run(keep: Option<&Path>) -> CliResult {
    let tmp;
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.to_owned()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::new(Exit::Failure, format!("starting the runtime: {e}")))?;
    rt.block_on(async {
        say(&format!("BlazeDB demo in {}\n", dir.display()));
        let d = start(&dir).await?;
        let r = scenes(&d).await;
        if r.is_err() {
            d.server.stop().await.ok();
            return r;
        }
        finish(&d).await
    })
}
