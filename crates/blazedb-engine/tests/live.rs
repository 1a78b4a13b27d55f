//! Live queries: every committed change reaches each subscriber exactly once, in commit
//! order; a stalled subscriber never stalls writers; query subscriptions report
//! membership changes; sync-applied writes are delivered too.

mod common;

use std::collections::HashMap;
use std::sync::Barrier;
use std::time::Duration;

use blazedb_engine::internal::SyncDatabase;
use blazedb_engine::{
    ChangeOp, DocId, Document, EventKind, Filter, Patch, Query, SubscriptionError,
};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn concurrent_writers_every_subscriber_sees_every_change_once_in_commit_order()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::fast()
        .durability(blazedb_engine::Durability::Eventual)
        .open(dir.path(), "db", common::PASSWORD)?;
    // Capturing: the change log is the commit order the events are checked against.
    common::capture_changes(&db)?;
    let subs: Vec<_> = (0..3)
        .map(|_| db.subscribe("c", 100_000))
        .collect::<Result<_, _>>()?;
    const THREADS: usize = 4;
    const EACH: usize = 60;
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (db, barrier) = (db.clone(), &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..EACH {
                    let id = db
                        .collection("c")
                        .insert(Document::new().with("t", t as i64).with("i", i as i64))
                        .expect("insert");
                    if i % 3 == 0 {
                        db.collection("c")
                            .patch(id, &Patch::new().set("p", true))
                            .expect("patch");
                    }
                    if i % 5 == 0 {
                        db.collection("c").delete(id).expect("delete");
                    }
                    // Writes to another collection interleave and must not be delivered.
                    db.collection("other")
                        .insert(Document::new())
                        .expect("insert other");
                }
            });
        }
    });
    // The change log is the commit order; events must follow it exactly.
    let log: Vec<(DocId, EventKind)> = db
        .begin_read()?
        .changes_after(0, usize::MAX)?
        .into_iter()
        .filter(|c| c.collection == "c")
        .map(|c| {
            let kind = match c.op {
                ChangeOp::Insert { .. } => EventKind::Added,
                ChangeOp::Update { .. } | ChangeOp::Replace { .. } => EventKind::Changed,
                ChangeOp::Delete => EventKind::Removed,
            };
            (c.id, kind)
        })
        .collect();
    for sub in &subs {
        let mut seen = Vec::new();
        let mut last_commit = 0;
        while seen.len() < log.len() {
            let e = sub.recv_timeout(WAIT).expect("event");
            assert!(e.commit > last_commit, "commit order");
            last_commit = e.commit;
            assert_eq!(e.collection, "c");
            seen.push((e.id, e.kind));
        }
        assert_eq!(seen, log);
        assert_eq!(
            sub.try_recv(),
            Err(SubscriptionError::Timeout),
            "nothing extra"
        );
    }
    Ok(())
}

#[test]
fn a_stalled_subscriber_does_not_stall_writers_and_learns_it_lagged() -> blazedb_engine::Result<()>
{
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::fast()
        .durability(blazedb_engine::Durability::Eventual)
        .open(dir.path(), "db", common::PASSWORD)?;
    let stalled = db.subscribe("c", 4)?;
    let healthy = db.subscribe("c", 1000)?;
    for i in 0..200i64 {
        db.collection("c").insert(Document::new().with("i", i))?;
    }
    // The writer finished all 200 commits with a full mailbox in the way.
    let mut got = 0;
    let lag = loop {
        match stalled.try_recv() {
            Ok(_) => got += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(got, 4, "events queued before the overflow are kept");
    assert!(
        matches!(lag, SubscriptionError::Lagged { after_commit: 4 }),
        "{lag:?}"
    );
    for _ in 0..200 {
        healthy
            .recv_timeout(WAIT)
            .expect("healthy subscriber gets everything");
    }
    Ok(())
}

#[test]
fn a_query_subscription_reports_documents_entering_changing_and_leaving_the_results()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let sub = db.subscribe_query(
        &Query::new("bugs").filter(Filter::eq("status", "open")?),
        100,
    )?;
    let c = db.collection("bugs");
    let a = c.insert(Document::new().with("status", "closed"))?; // not in results: nothing
    let b = c.insert(Document::new().with("status", "open"))?; // Added
    c.patch(b, &Patch::new().set("title", "x"))?; // Changed
    c.patch(a, &Patch::new().set("status", "open"))?; // Added
    c.patch(b, &Patch::new().set("status", "closed"))?; // Removed
    c.delete(a)?; // Removed
    let mut events = HashMap::new();
    let got: Vec<(DocId, EventKind)> = (0..5)
        .map(|_| {
            let e = sub.recv_timeout(WAIT).expect("event");
            events.insert(e.id, e.doc.clone());
            (e.id, e.kind)
        })
        .collect();
    use EventKind::{Added, Changed, Removed};
    assert_eq!(
        got,
        vec![
            (b, Added),
            (b, Changed),
            (a, Added),
            (b, Removed),
            (a, Removed)
        ]
    );
    assert_eq!(sub.try_recv(), Err(SubscriptionError::Timeout));
    Ok(())
}

#[test]
fn applied_remote_writes_are_delivered_and_rolled_back_ones_are_not() -> blazedb_engine::Result<()>
{
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let sub = db.subscribe("c", 10)?;
    let mut tx = db.begin_write()?;
    tx.insert("c", Document::new())?;
    drop(tx);
    let mut tx = db.begin_apply()?;
    let id = tx.insert("c", Document::new())?;
    tx.commit()?;
    let e = sub.recv_timeout(WAIT).expect("event");
    assert_eq!((e.id, e.kind), (id, EventKind::Added));
    assert_eq!(sub.try_recv(), Err(SubscriptionError::Timeout));
    Ok(())
}

#[test]
fn subscriptions_end_when_the_database_closes_and_are_per_database() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = common::open(dir.path(), "one")?;
    let two = common::open(dir.path(), "two")?;
    let sub = one.subscribe("c", 10)?;
    two.collection("c").insert(Document::new())?;
    assert_eq!(
        sub.try_recv(),
        Err(SubscriptionError::Timeout),
        "another database's writes are not seen"
    );
    assert!(db_subscribe_rejects_bad_capacity(&one));
    drop(one);
    assert_eq!(sub.recv_timeout(WAIT), Err(SubscriptionError::Closed));
    Ok(())
}

fn db_subscribe_rejects_bad_capacity(db: &blazedb_engine::Database) -> bool {
    matches!(
        db.subscribe("c", 0),
        Err(blazedb_engine::Error::InvalidValue { .. })
    )
}
