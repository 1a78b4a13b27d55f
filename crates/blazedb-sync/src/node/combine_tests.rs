//! Tests of `combine.rs` against real nodes: parts handed in while a round runs are
//! applied together, each exactly once, with the outcome (documents, reports, conflict
//! log) of applying them one by one; a part that fails its check stays out; a round
//! that fails gives every part back with nothing applied; a round that panics, before
//! its commit or after it (a commit hook), hands the leader's role on and applies
//! nothing twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use blazedb_core::{DocId, Document, Value};
use blazedb_engine::{Database, KdfParams};

use super::Part;
use crate::clock::Role;
use crate::config::SyncConfig;
use crate::node::SyncNode;
use crate::position::LogPos;
use crate::record::Item;

struct Node {
    db: Database,
    sync: SyncNode,
}

fn node(dir: &tempfile::TempDir, name: &str, role: Role) -> Node {
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir.path(), name, "pw")
        .expect("open");
    let sync = SyncNode::enable(&db, role, &SyncConfig::default()).expect("enable");
    Node { db, sync }
}

/// Client `k`'s writes: 40 documents of its own in two commits, then the first one
/// again, and a field of the shared documents (concurrent with every other client's), read from its log for
/// `to` in batches of at most 25 entries.
fn client_batches(
    dir: &tempfile::TempDir,
    k: usize,
    shared: &[DocId],
    to: &Node,
) -> (Node, Vec<(Vec<Item>, LogPos)>) {
    let c = node(dir, &format!("c{k}"), Role::Client);
    let mut ids = Vec::new();
    for half in 0..2 {
        let docs = (0..20).map(|i| {
            Document::new()
                .with("k", k as i64)
                .with("i", (half * 20 + i) as i64)
        });
        ids.extend(c.db.collection("docs").insert_many(docs).expect("insert"));
    }
    // A write whose past is the first batch's (it follows the first document).
    c.db.collection("docs")
        .put(
            Document::with_id(ids[0])
                .with("k", k as i64)
                .with("i", -1i64),
        )
        .expect("put");
    for id in shared {
        c.db.collection("shared")
            .put(Document::with_id(*id).with("by", k as i64))
            .expect("put");
    }
    c.sync.absorb().expect("absorb");
    let mut batches = Vec::new();
    let mut after = LogPos::ZERO;
    loop {
        let (items, upto) = c
            .sync
            .read_log(to.sync.node_id(), after, 25, &|_| true)
            .expect("read_log");
        if items.is_empty() {
            break;
        }
        batches.push((items, upto));
        after = upto;
    }
    (c, batches)
}

fn docs_of(n: &Node, collection: &str) -> Vec<Document> {
    let mut docs = n.db.collection(collection).all().expect("all");
    docs.sort_by_key(|d| d.id);
    docs
}

#[test]
fn parts_handed_in_during_a_round_are_applied_together_once_each_as_one_by_one() {
    const CLIENTS: usize = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = node(&dir, "server", Role::Server);
    let serial = node(&dir, "serial", Role::Server);
    let shared: Vec<DocId> = (0..5).map(|_| DocId::new()).collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| client_batches(&dir, k, &shared, &server))
        .collect();
    // The reference: every client's batches applied one at a time.
    for (c, batches) in &clients {
        for (items, upto) in batches {
            serial
                .sync
                .apply_batch(c.sync.node_id(), Role::Client, items, *upto)
                .expect("serial apply");
        }
    }
    let commits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&commits);
    let _hook = server
        .db
        .on_commit(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .expect("hook");
    // The test holds the server's writer: the first part's round waits for it, and
    // every other part is handed in meanwhile, so they make one round after it.
    let held = server.db.begin_write().expect("hold the writer");
    let start = Barrier::new(CLIENTS);
    let reports = std::thread::scope(|s| {
        let threads: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(k, (c, batches))| {
                let (sync, start) = (&server.sync, &start);
                s.spawn(move || {
                    if k > 0 {
                        start.wait();
                    }
                    sync.apply_combined(Part {
                        peer: c.sync.node_id(),
                        role: Role::Client,
                        batches: batches.clone(),
                    })
                })
            })
            .collect();
        // Client 0 leads, blocked on the writer; the others then queue behind it.
        while !server.sync.combiner.lock().leading {
            std::thread::yield_now();
        }
        start.wait();
        while server.sync.combiner.lock().waiting.len() < CLIENTS - 1 {
            std::thread::yield_now();
        }
        drop(held);
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect::<Vec<_>>()
    });
    for ((part, report), (c, batches)) in reports.iter().zip(&clients) {
        assert_eq!(part.peer, c.sync.node_id());
        assert_eq!(&part.batches, batches, "the part comes back whole");
        let report = report.as_ref().expect("applied");
        let writes: usize = batches.iter().map(|(items, _)| items.len()).sum();
        assert_eq!(report.applied, writes as u64);
        assert_eq!(report.duplicates, 0);
    }
    // Two transactions: the first part's round, then all the others together.
    assert_eq!(commits.load(Ordering::SeqCst), 2);
    for collection in ["docs", "shared"] {
        assert_eq!(docs_of(&server, collection), docs_of(&serial, collection));
    }
    assert_eq!(docs_of(&server, "docs").len(), CLIENTS * 40);
    // Each peer's cursor moved to the end of its batches.
    for (c, batches) in &clients {
        let upto = batches.last().expect("batches").1;
        assert_eq!(
            server.sync.recv_cursor(c.sync.node_id()).expect("cursor"),
            upto
        );
    }
}

#[test]
fn a_part_that_fails_its_check_stays_out_and_a_failed_round_applies_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = node(&dir, "server", Role::Server);
    let (a, a_batches) = client_batches(&dir, 0, &[], &server);
    let (b, b_batches) = client_batches(&dir, 1, &[], &server);
    // A client's own writes handed in as a server's fail the check: the part comes
    // back unapplied, the other one in its round is applied.
    let forged = Part {
        peer: a.sync.node_id(),
        role: Role::Server,
        batches: a_batches.clone(),
    };
    let good = Part {
        peer: b.sync.node_id(),
        role: Role::Client,
        batches: b_batches[..1].to_vec(),
    };
    let outcome = server.sync.apply_round(vec![(0, forged), (1, good)]);
    assert!(outcome[0].2.is_none(), "the forged part is not applied");
    assert!(outcome[1].2.is_some(), "the good part is applied");
    assert_eq!(docs_of(&server, "docs").len(), 25);
    // A part that skips its peer's first batch fails inside the transaction (its
    // writes' past is missing here): the whole round fails, nothing of it applies.
    let before = docs_of(&server, "docs");
    let skipping = Part {
        peer: a.sync.node_id(),
        role: Role::Client,
        batches: a_batches[1..].to_vec(),
    };
    let rest = Part {
        peer: b.sync.node_id(),
        role: Role::Client,
        batches: b_batches[1..].to_vec(),
    };
    let outcome = server.sync.apply_round(vec![(2, rest), (3, skipping)]);
    assert!(outcome.iter().all(|(_, _, r)| r.is_none()));
    assert_eq!(docs_of(&server, "docs"), before);
    // Each part alone: the good one applies.
    let (_, report) = server
        .sync
        .apply_combined(outcome.into_iter().next().expect("part").1);
    assert!(report.is_some());
    assert_eq!(docs_of(&server, "docs").len(), 40);
    assert!(
        docs_of(&server, "docs")
            .iter()
            .all(|d| d.fields.get("k") == Some(&Value::Int(1)))
    );
}

/// A server whose injected clock panics while `panicking` is set.
fn node_with_clock(
    dir: &tempfile::TempDir,
    name: &str,
    panicking: &Arc<std::sync::atomic::AtomicBool>,
) -> Node {
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir.path(), name, "pw")
        .expect("open");
    let mut config = SyncConfig::default();
    let flag = Arc::clone(panicking);
    config.advanced.clock = Arc::new(move || {
        assert!(!flag.load(Ordering::SeqCst), "the injected clock failed");
        crate::clock::wall_now_us()
    });
    let sync = SyncNode::enable(&db, Role::Server, &config).expect("enable");
    Node { db, sync }
}

/// The leader reads the clock (`apply_round`'s `now_us`) outside the `catch_unwind`
/// that guards the transaction: a panic there unwinds out of `apply_combined` with
/// `leading` still set, so every later part waits for a round nobody runs.
#[test]
fn a_leader_whose_clock_panics_hands_its_role_on_and_later_parts_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let panicking = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = node_with_clock(&dir, "server", &panicking);
    let (a, a_batches) = client_batches(&dir, 0, &[], &server);
    let (b, b_batches) = client_batches(&dir, 1, &[], &server);
    panicking.store(true, Ordering::SeqCst);
    // The clock panics in the leader's round, before its transaction: the part comes
    // back unapplied, and the call returns instead of unwinding.
    let (_, report) = server.sync.apply_combined(Part {
        peer: a.sync.node_id(),
        role: Role::Client,
        batches: a_batches.clone(),
    });
    assert!(report.is_none());
    panicking.store(false, Ordering::SeqCst);
    assert!(
        !server.sync.combiner.lock().leading,
        "a leader whose round panicked still leads: every later apply_combined waits forever"
    );
    // (With the role left taken, this would block forever.)
    let (_, report) = server.sync.apply_combined(Part {
        peer: b.sync.node_id(),
        role: Role::Client,
        batches: b_batches,
    });
    assert!(report.is_some());
}

/// A commit hook that panics after the round's commit: the part comes back unapplied
/// (its batches were not acknowledged), and handing it in again applies nothing twice:
/// every write is found as a duplicate, the documents are there once, and the cursor
/// is at the part's end.
#[test]
fn a_part_committed_before_a_hook_panicked_comes_back_unapplied_and_reapplies_as_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = node(&dir, "server", Role::Server);
    let (a, a_batches) = client_batches(&dir, 0, &[], &server);
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = Arc::clone(&fired);
    let _hook = server
        .db
        .on_commit(move |_| {
            if !once.swap(true, Ordering::SeqCst) {
                panic!("a commit hook failed");
            }
        })
        .expect("hook");
    let part = Part {
        peer: a.sync.node_id(),
        role: Role::Client,
        batches: a_batches.clone(),
    };
    let (part, report) = server.sync.apply_combined(part);
    assert!(fired.load(Ordering::SeqCst));
    assert!(
        report.is_none(),
        "a round that panicked is reported unapplied"
    );
    assert!(!server.sync.combiner.lock().leading);
    let (_, again) = server.sync.apply_combined(part);
    let again = again.expect("applied the second time");
    let writes: usize = a_batches.iter().map(|(items, _)| items.len()).sum();
    assert_eq!((again.applied, again.duplicates), (0, writes as u64));
    assert_eq!(docs_of(&server, "docs").len(), 40);
    assert_eq!(
        server.sync.recv_cursor(a.sync.node_id()).expect("cursor"),
        a_batches.last().expect("batches").1
    );
}

/// Two parts whose writes touch the same documents, where the server has concurrent
/// writes of its own (so losses are recorded): one round gives the same documents,
/// the same report per part and the same conflict log as one transaction per part in
/// the round's order.
#[test]
fn a_round_over_shared_documents_reports_and_logs_as_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = node(&dir, "server", Role::Server);
    let serial = node(&dir, "serial", Role::Server);
    let shared: Vec<DocId> = (0..6).map(|_| DocId::new()).collect();
    // The servers' own writes to the shared documents concurrent with the clients':
    // half before them (they lose: losses recorded), half after (the clients' lose on
    // arrival: rejected).
    let local = |from: usize| {
        for n in [&server, &serial] {
            for id in shared.iter().skip(from).step_by(2) {
                n.db.collection("shared")
                    .put(Document::with_id(*id).with("by", 99i64))
                    .expect("put");
            }
        }
    };
    local(0);
    let clients: Vec<_> = (0..2)
        .map(|k| client_batches(&dir, k, &shared, &server))
        .collect();
    local(1);
    let mut want = Vec::new();
    for (c, batches) in &clients {
        let refs: Vec<(&[Item], LogPos)> =
            batches.iter().map(|(i, u)| (i.as_slice(), *u)).collect();
        want.push(
            serial
                .sync
                .apply_batches(c.sync.node_id(), Role::Client, &refs)
                .expect("serial apply"),
        );
    }
    let round: Vec<(u64, Part)> = clients
        .iter()
        .enumerate()
        .map(|(t, (c, batches))| {
            (
                t as u64,
                Part {
                    peer: c.sync.node_id(),
                    role: Role::Client,
                    batches: batches.clone(),
                },
            )
        })
        .collect();
    let got: Vec<_> = server
        .sync
        .apply_round(round)
        .into_iter()
        .map(|(_, _, r)| r.expect("applied"))
        .collect();
    assert_eq!(got, want);
    for collection in ["docs", "shared"] {
        assert_eq!(docs_of(&server, collection), docs_of(&serial, collection));
    }
    let strip = |n: &Node| {
        n.sync
            .conflicts(0, 1000)
            .expect("conflicts")
            .into_iter()
            .map(|e| {
                let own = e.loser.node() == n.sync.node_id();
                format!(
                    "{:?}",
                    (e.collection, e.id, e.field, own, e.winner, e.reason)
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&server), strip(&serial));
}
