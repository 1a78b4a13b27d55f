//! Sync at work, in one process: a server and three clients connected through
//! in-memory relays, playing the situations of docs/semantics.md and printing who won and why.
//!
//! `cargo run --release -p blazedb --features sync --example sync`

use std::time::Duration;

use blazedb::sync::{ConnectionMode, NodeRef, Role, SyncMode, Topology};
use blazedb::{Database, DocId, Document, KdfParams, Patch};

const T: Duration = Duration::from_secs(30);

struct Demo {
    topo: Topology,
    dbs: Vec<(String, Database, NodeRef)>,
}

impl Demo {
    fn db(&self, i: usize) -> &Database {
        &self.dbs[i].1
    }

    async fn offline(&mut self, clients: &[usize]) -> Result<(), Box<dyn std::error::Error>> {
        for &c in clients {
            self.topo.disconnect(self.dbs[c].2, self.dbs[0].2).await?;
        }
        Ok(())
    }

    async fn online(&mut self, clients: &[usize]) -> Result<(), Box<dyn std::error::Error>> {
        for &c in clients {
            self.topo
                .connect_local(self.dbs[c].2, self.dbs[0].2, ConnectionMode::Bidirectional)?;
        }
        self.topo.sync_all(T).await?;
        Ok(())
    }

    fn show(&self, id: DocId) -> Result<(), Box<dyn std::error::Error>> {
        for (name, db, _) in &self.dbs {
            let doc = db.collection("tasks").get(id)?;
            let text = doc.map_or_else(
                || "(deleted)".to_owned(),
                |d| blazedb::json::fields_to_json(&d.fields).to_string(),
            );
            println!("    {name:<8} {text}");
        }
        Ok(())
    }

    fn conflicts(&self, i: usize) -> Result<(), Box<dyn std::error::Error>> {
        let node = self.topo.node(self.dbs[i].2)?;
        for c in node.conflicts(0, 100)? {
            println!(
                "    conflict log of {}: field {:?} lost ({:?}) to {:?}: {}",
                self.dbs[i].0,
                c.field.as_deref().unwrap_or("(whole write)"),
                c.lost,
                c.won,
                c.reason
            );
        }
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut topo = Topology::new();
    let mut dbs = Vec::new();
    for (name, role) in [
        ("server", Role::Server),
        ("alice", Role::Client),
        ("bob", Role::Client),
        ("carol", Role::Client),
    ] {
        let db = Database::builder().kdf(KdfParams::INSECURE_FAST).open(
            dir.path(),
            name,
            "demo password",
        )?;
        let r = topo.register(&db, name, SyncMode::LocalAndRemote, role)?;
        dbs.push((name.to_owned(), db, r));
    }
    let mut demo = Demo { topo, dbs };
    demo.online(&[1, 2, 3]).await?;
    println!("{}", demo.topo.describe());

    println!("1. Fan-out: alice creates a task; it reaches bob and carol through the server.");
    let id = DocId::new();
    demo.db(1).collection("tasks").put(
        Document::with_id(id)
            .with("title", "ship sync")
            .with("owner", "alice"),
    )?;
    demo.topo.sync_all(T).await?;
    demo.show(id)?;

    println!("2. Server vs client: both edit the title while alice is offline. The server wins.");
    demo.offline(&[1]).await?;
    demo.db(1)
        .collection("tasks")
        .patch(id, &Patch::new().set("title", "alice's title"))?;
    demo.db(0)
        .collection("tasks")
        .patch(id, &Patch::new().set("title", "server's title"))?;
    demo.online(&[1]).await?;
    demo.show(id)?;
    demo.conflicts(1)?;

    println!("3. Causality first: alice, having synced the server's title, changes it. She wins.");
    demo.db(1)
        .collection("tasks")
        .patch(id, &Patch::new().set("title", "alice, after syncing"))?;
    demo.topo.sync_all(T).await?;
    demo.show(id)?;

    println!(
        "4. Client vs client: bob and carol edit offline; the later edit wins; different fields are both kept."
    );
    demo.offline(&[2, 3]).await?;
    demo.db(2)
        .collection("tasks")
        .patch(id, &Patch::new().set("owner", "bob").set("due", "monday"))?;
    demo.db(3)
        .collection("tasks")
        .patch(id, &Patch::new().set("owner", "carol"))?;
    demo.online(&[2, 3]).await?;
    demo.show(id)?;
    demo.conflicts(2)?;

    println!(
        "5. Delete vs update: carol deletes offline while the server updates. The server's update wins: the task survives whole."
    );
    demo.offline(&[3]).await?;
    demo.db(3).collection("tasks").delete(id)?;
    demo.db(0)
        .collection("tasks")
        .patch(id, &Patch::new().set("status", "in progress"))?;
    demo.online(&[3]).await?;
    demo.show(id)?;
    demo.conflicts(3)?;

    println!("6. An offline client writes 1,000 tasks, then reconnects.");
    demo.offline(&[2]).await?;
    let mut tx = demo.db(2).begin_write()?;
    for i in 0..1000i64 {
        tx.insert("tasks", Document::new().with("n", i))?;
    }
    tx.commit()?;
    demo.online(&[2]).await?;
    for (name, db, _) in &demo.dbs {
        println!(
            "    {name:<8} holds {} tasks",
            db.collection("tasks").count()?
        );
    }
    println!();
    println!("{}", demo.topo.describe());
    demo.topo.shutdown().await;
    Ok(())
}
