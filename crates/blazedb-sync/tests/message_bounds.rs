//! A batch or snapshot page carries the principal of every writer node it names, and a
//! receiver refuses (for good: the session ends) one naming more than
//! `BATCH_WRITES_MAX` (1,000). A server whose documents were written by many clients
//! must still be able to serve its log and its snapshots: senders cut their messages
//! at 999 writer nodes (the receiver itself is the thousandth).

use std::collections::BTreeSet;

use blazedb_core::{DocId, Fields, Value};
use blazedb_engine::{Database, KdfParams};
use blazedb_sync::{
    Dot, Grant, Hlc, Item, LogPos, NodeId, Op, Role, Session, SessionConfig, SnapDoc, Stamp,
    SyncConfig, SyncNode, SyncStore, Vv, Write,
};

const RECEIVER_TAKES: usize = 1_000;

fn server(dir: &tempfile::TempDir) -> SyncNode {
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir.path(), "s", "pw")
        .expect("open");
    SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable")
}

/// A first write by client node `node`: `{field: node}` on document `id`, concurrent
/// with every other (it has seen nothing of the document).
fn write(node: u64, id: DocId, field: &str) -> Item {
    let mut fields = Fields::new();
    fields.insert(field.into(), Value::Int(node as i64));
    Item::Write(Write {
        collection: "docs".into(),
        id,
        stamp: Stamp {
            dot: Dot {
                node: NodeId(node),
                counter: 1,
            },
            hlc: Hlc {
                wall_us: blazedb_sync::clock::wall_now_us(),
                logical: 0,
            },
            role: Role::Client,
        },
        ctx: Vv::default(),
        op: Op::Put { fields },
    })
}

/// `items` applied at `node` as relayed by a trusted peer, in batches of 500.
fn relay(node: &SyncNode, items: &[Item]) {
    let relay = NodeId(7);
    for (i, chunk) in items.chunks(500).enumerate() {
        node.apply_batch(relay, Role::Server, chunk, LogPos::new(i as u64 + 1))
            .expect("apply");
    }
}

fn writer_nodes(items: &[Item]) -> BTreeSet<NodeId> {
    let mut nodes = BTreeSet::new();
    for item in items {
        match item {
            Item::Write(w) => {
                nodes.insert(w.stamp.node());
            }
            Item::State(d) => {
                nodes.extend(d.state.recs.iter().map(|r| r.stamp.node()));
                nodes.extend(
                    d.state
                        .defeated
                        .iter()
                        .flat_map(|x| [x.loser.node(), x.winner.node()]),
                );
            }
        }
    }
    nodes
}

#[test]
fn log_batches_name_no_more_writer_nodes_than_a_receiver_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = server(&dir);
    let items: Vec<Item> = (0..1_500u64)
        .map(|n| write(1_000 + n, DocId::new(), "f"))
        .collect();
    relay(&node, &items);
    let reader = NodeId(99);
    let (mut after, mut seen, mut batches) = (LogPos::ZERO, BTreeSet::new(), 0);
    loop {
        let (batch, upto) = node
            .read_log(reader, after, RECEIVER_TAKES, &|_| true)
            .expect("read_log");
        if upto <= after {
            break;
        }
        let named = writer_nodes(&batch);
        assert!(
            named.len() < RECEIVER_TAKES,
            "a batch names {}",
            named.len()
        );
        for item in &batch {
            let Item::Write(w) = item else {
                panic!("only writes were logged");
            };
            assert!(seen.insert(w.stamp.dot), "{} twice", w.stamp.dot);
        }
        (after, batches) = (upto, batches + 1);
    }
    assert_eq!(seen.len(), 1_500, "every write, once");
    assert!(batches >= 2, "the bound cut a batch");
}

#[test]
fn snapshot_pages_name_no_more_writer_nodes_than_a_receiver_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = server(&dir);
    // 300 documents, each written concurrently by five clients of its own, one field
    // each: every state keeps five records, so a page of 256 would name 1,280 nodes.
    let ids: Vec<DocId> = (0..300).map(|_| DocId::new()).collect();
    let items: Vec<Item> = ids
        .iter()
        .enumerate()
        .flat_map(|(d, id)| {
            (0..5u64).map(move |k| write(10_000 + 5 * d as u64 + k, *id, &format!("f{k}")))
        })
        .collect();
    relay(&node, &items);
    let (mut after, mut seen, mut largest) = (0, BTreeSet::new(), 0);
    loop {
        let (docs, upto, done) = node.snapshot_page(after, 256, &|_| true).expect("page");
        let states: Vec<Item> = docs.into_iter().map(Item::State).collect();
        let named = writer_nodes(&states);
        assert!(named.len() < RECEIVER_TAKES, "a page names {}", named.len());
        for s in &states {
            let Item::State(d) = s else { unreachable!() };
            assert_eq!(d.state.recs.len(), 5, "five concurrent writers kept");
            assert!(seen.insert(d.id), "{} twice", d.id);
        }
        largest = largest.max(states.len());
        after = upto;
        if done {
            break;
        }
    }
    assert_eq!(seen, ids.iter().copied().collect(), "every document, once");
    assert!(
        largest < 256,
        "the bound cut the pages ({largest} documents)"
    );
}

/// Delivers messages between two sessions until neither has anything more to say.
fn converse(a: &mut Session, b: &mut Session, now: u64) {
    let mut to_b = vec![a.hello(None, now).expect("hello a")];
    let mut to_a = vec![b.hello(None, now).expect("hello b")];
    for round in 0..1_000 {
        let mut next_a = Vec::new();
        for m in to_b.drain(..) {
            next_a.extend(b.on_message(m, now).expect("b takes every message"));
        }
        next_a.extend(b.poll(now).expect("b polls"));
        let mut next_b = Vec::new();
        for m in to_a.drain(..) {
            next_b.extend(a.on_message(m, now).expect("a takes every message"));
        }
        next_b.extend(a.poll(now).expect("a polls"));
        if next_a.is_empty() && next_b.is_empty() {
            return;
        }
        assert!(round < 999, "the sessions never went quiet");
        (to_a, to_b) = (next_a, next_b);
    }
}

#[test]
fn one_document_retaining_more_writers_than_a_message_may_name_still_reaches_a_new_client() {
    // 1,200 users each set their own field of one document: all 1,200 writes stay in its
    // merge state, so a state of it names 1,200 writer nodes and cannot be split.
    let id = DocId::new();
    let scratch_dir = tempfile::tempdir().expect("tempdir");
    let scratch = server(&scratch_dir);
    let writes: Vec<Item> = (0..1_200u64)
        .map(|k| write(10_000 + k, id, &format!("f{k}")))
        .collect();
    relay(&scratch, &writes);
    let state = scratch.doc_state("docs", id).expect("state");
    assert_eq!(state.recs.len(), 1_200);
    // The server got that document as a state (from another server's snapshot) and
    // knows every writer's user, so what it relays names all of them.
    let server_dir = tempfile::tempdir().expect("tempdir");
    let hub = server(&server_dir);
    let doc = SnapDoc {
        collection: "docs".into(),
        id,
        state,
    };
    hub.apply_batch(NodeId(7), Role::Server, &[Item::State(doc)], LogPos::new(1))
        .expect("apply the state");
    let users: Vec<(NodeId, String)> = (0..1_200u64)
        .map(|k| (NodeId(10_000 + k), format!("user{k}")))
        .collect();
    SyncStore::learn_principals(&hub, &users).expect("learn");

    let client_dir = tempfile::tempdir().expect("tempdir");
    let client_db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(client_dir.path(), "c", "pw")
        .expect("open");
    let client =
        SyncNode::enable(&client_db, Role::Client, &SyncConfig::default()).expect("enable");
    let mut at_hub = Session::new(
        hub.clone(),
        SessionConfig {
            grant: Grant::client("reader"),
            ..SessionConfig::default()
        },
    );
    let mut at_client = Session::new(client.clone(), SessionConfig::default());
    converse(
        &mut at_hub,
        &mut at_client,
        blazedb_sync::clock::wall_now_us(),
    );
    let got = client_db
        .collection("docs")
        .get(id)
        .expect("get")
        .expect("the document reached the client");
    assert_eq!(got.fields.len(), 1_200, "every user's field");
}
