//! Concurrent writers and readers: every durable commit of every thread is present, and a
//! long-lived reader neither blocks writers nor sees their later commits.

mod common;

use std::sync::Barrier;

use blazedb_engine::{DocId, Document, Value};

#[test]
fn concurrent_durable_writers_all_commit_and_nothing_is_lost() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open_capturing(dir.path(), "db")?;
    const THREADS: u64 = 8;
    const EACH: u64 = 40;
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (db, barrier) = (db.clone(), &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..EACH {
                    let id = DocId::from_bytes(
                        (t * 1000 + i)
                            .to_be_bytes()
                            .repeat(2)
                            .try_into()
                            .expect("16 bytes"),
                    );
                    db.collection("c")
                        .insert(Document::with_id(id).with("t", t as i64))
                        .expect("insert");
                }
            });
        }
    });
    assert_eq!(db.collection("c").count()?, THREADS * EACH);
    let changes = db.begin_read()?.changes_after(0, usize::MAX)?;
    assert_eq!(changes.len() as u64, THREADS * EACH);
    assert!(
        changes
            .iter()
            .enumerate()
            .all(|(i, c)| c.seq == i as u64 + 1),
        "consecutive sequence numbers"
    );
    drop(db);
    let db = common::open(dir.path(), "db")?;
    assert_eq!(
        db.collection("c").count()?,
        THREADS * EACH,
        "all present after reopen"
    );
    Ok(())
}

#[test]
fn a_long_lived_reader_does_not_block_writers_or_see_their_commits() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let id = db.collection("c").insert(Document::new().with("v", 0i64))?;
    let reader = db.begin_read()?;
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || -> blazedb_engine::Result<()> {
            for v in 1..=50i64 {
                db.collection("c")
                    .patch(id, &blazedb_engine::Patch::new().set("v", v))?;
            }
            Ok(())
        })
    };
    // The writer finishes while the reader is still open: it was never blocked by it.
    writer.join().expect("writer thread")?;
    assert_eq!(
        reader.get("c", id)?.and_then(|d| d.get("v").cloned()),
        Some(Value::Int(0))
    );
    assert_eq!(
        db.collection("c")
            .get(id)?
            .and_then(|d| d.get("v").cloned()),
        Some(Value::Int(50))
    );
    Ok(())
}

#[test]
fn a_second_write_from_the_thread_holding_the_writer_is_an_error_not_a_deadlock()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let mut tx = db.begin_write()?;
    tx.insert("c", Document::new())?;
    assert!(matches!(
        db.collection("c").insert(Document::new()),
        Err(blazedb_engine::Error::TransactionInProgress)
    ));
    assert!(matches!(
        db.flush(),
        Err(blazedb_engine::Error::TransactionInProgress)
    ));
    tx.commit()?;
    db.collection("c").insert(Document::new())?;
    assert_eq!(db.collection("c").count()?, 2);
    Ok(())
}
