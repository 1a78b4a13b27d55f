//! CRUD, transactions and change capture, scenario by scenario.

mod common;

use blazedb_engine::internal::{SyncDatabase, SyncRead, SyncWrite};
use blazedb_engine::{ChangeOp, DocId, Document, Error, Patch, Value};
use common::open;

#[test]
fn inserted_documents_read_back_with_every_value_type() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), "db")?;
    let mut nested = std::collections::BTreeMap::new();
    nested.insert("city".to_owned(), Value::from("Oslo"));
    let doc = Document::new()
        .with("null", Value::Null)
        .with("bool", true)
        .with("int", -7i64)
        .with("float", 2.5)
        .with("string", "héllo")
        .with("bytes", vec![0u8, 255, 0])
        .with("ts", blazedb_engine::Timestamp(-1_000))
        .with("uuid", uuid_of(3))
        .with("array", vec![Value::Int(1), Value::from("two")])
        .with("map", Value::Map(nested));
    let id = db.collection("things").insert(doc.clone())?;
    assert_eq!(db.collection("things").get(id)?, Some(doc));
    Ok(())
}

fn uuid_of(n: u8) -> Value {
    Value::Uuid(DocId::from_bytes([n; 16]).0)
}

#[test]
fn insert_of_an_existing_id_is_already_exists_and_changes_nothing() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), "db")?;
    let c = db.collection("c");
    let doc = Document::new().with("v", 1i64);
    c.insert(doc.clone())?;
    let again = Document {
        id: doc.id,
        fields: Document::new().with("v", 2i64).fields,
    };
    assert!(matches!(c.insert(again), Err(Error::AlreadyExists { .. })));
    assert_eq!(c.get(doc.id)?, Some(doc));
    Ok(())
}

#[test]
fn put_replaces_whole_documents_and_patch_sets_and_unsets_fields() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), "db")?;
    let c = db.collection("c");
    let id = DocId::new();
    assert!(c.put(Document::with_id(id).with("a", 1i64).with("b", 2i64))?);
    assert!(!c.put(Document::with_id(id).with("c", 3i64))?);
    assert_eq!(c.get(id)?, Some(Document::with_id(id).with("c", 3i64)));
    let after = c.patch(id, &Patch::new().set("d", 4i64).unset("c").unset("absent"))?;
    assert_eq!(after, Document::with_id(id).with("d", 4i64));
    assert_eq!(c.get(id)?, Some(after));
    Ok(())
}

#[test]
fn patch_and_delete_of_missing_documents_are_not_found() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open_capturing(dir.path(), "db")?;
    let c = db.collection("c");
    let id = DocId::new();
    assert!(matches!(
        c.patch(id, &Patch::new().set("a", 1i64)),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(c.delete(id), Err(Error::NotFound { .. })));
    assert_eq!(
        db.begin_read()?.last_seq()?,
        0,
        "failed writes captured nothing"
    );
    Ok(())
}

#[test]
fn invalid_names_and_values_are_typed_errors_that_write_nothing() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open_capturing(dir.path(), "db")?;
    assert!(matches!(
        db.collection("bad/name").insert(Document::new()),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        db.collection("c").insert(Document::new().with("a.b", 1i64)),
        Err(Error::InvalidName { .. })
    ));
    let mut deep = Value::Null;
    for _ in 0..40 {
        deep = Value::Array(vec![deep]);
    }
    assert!(matches!(
        db.collection("c")
            .insert(Document::new().with("deep", deep)),
        Err(Error::InvalidValue { .. })
    ));
    let both = Patch::new().set("x", 1i64).unset("x");
    let id = db.collection("c").insert(Document::new())?;
    assert!(matches!(
        db.collection("c").patch(id, &both),
        Err(Error::InvalidValue { .. })
    ));
    let huge = Document::new().with("blob", vec![0u8; blazedb_core_limit() + 1]);
    assert!(matches!(
        db.collection("c").insert(huge),
        Err(Error::TooLarge { .. })
    ));
    let r = db.begin_read()?;
    assert_eq!(r.collections()?, vec!["c".to_owned()]);
    assert_eq!(r.count("c")?, 1);
    assert_eq!(r.last_seq()?, 1);
    Ok(())
}

fn blazedb_core_limit() -> usize {
    16 * 1024 * 1024
}

#[test]
fn transactions_commit_across_collections_atomically_and_drop_rolls_back()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), "db")?;
    let (a, b) = (DocId::new(), DocId::new());
    {
        let mut tx = db.begin_write()?;
        tx.insert("x", Document::with_id(a))?;
        tx.insert("y", Document::with_id(b))?;
        assert!(
            tx.get("x", a)?.is_some(),
            "a transaction reads its own writes"
        );
        // dropped without commit
    }
    assert_eq!(db.collection("x").get(a)?, None);
    assert_eq!(
        db.begin_read()?.last_seq()?,
        0,
        "rollback leaves no change entry"
    );
    assert!(db.begin_read()?.collections()?.is_empty());
    let mut tx = db.begin_write()?;
    tx.insert("x", Document::with_id(a))?;
    tx.insert("y", Document::with_id(b))?;
    tx.commit()?;
    assert!(db.collection("x").get(a)?.is_some() && db.collection("y").get(b)?.is_some());
    Ok(())
}

#[test]
fn a_read_snapshot_does_not_see_later_commits() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), "db")?;
    let c = db.collection("c");
    let id = c.insert(Document::new().with("v", 1i64))?;
    let snapshot = db.begin_read()?;
    c.patch(id, &Patch::new().set("v", 2i64))?;
    c.insert(Document::new())?;
    assert_eq!(
        snapshot.get("c", id)?.and_then(|d| d.get("v").cloned()),
        Some(Value::Int(1))
    );
    assert_eq!(snapshot.count("c")?, 1);
    assert_eq!(c.count()?, 2);
    Ok(())
}

#[test]
fn every_write_is_captured_once_in_commit_order_with_what_it_changed() -> blazedb_engine::Result<()>
{
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open_capturing(dir.path(), "db")?;
    let c = db.collection("c");
    let id = c.insert(Document::new().with("a", 1i64))?;
    c.put(Document::with_id(id).with("b", 2i64))?;
    c.patch(id, &Patch::new().set("c", 3i64).unset("b"))?;
    let mut tx = db.begin_write()?;
    tx.delete("c", id)?;
    tx.insert("d", Document::with_id(id))?;
    tx.commit()?;
    let changes = db.begin_read()?.changes_after(0, 100)?;
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        changes[0].op,
        ChangeOp::Insert {
            fields: Document::new().with("a", 1i64).fields
        }
    );
    assert_eq!(
        changes[1].op,
        ChangeOp::Replace {
            fields: Document::new().with("b", 2i64).fields,
        }
    );
    assert_eq!(
        changes[2].op,
        ChangeOp::Update {
            set: Document::new().with("c", 3i64).fields,
            unset: vec!["b".into()]
        }
    );
    assert_eq!(changes[3].op, ChangeOp::Delete);
    assert_eq!(
        (changes[3].txn, changes[4].txn),
        (4, 4),
        "one transaction, one txn id"
    );
    assert_eq!(changes[4].collection, "d");
    assert_eq!(db.begin_read()?.changes_after(3, 1)?.len(), 1);
    Ok(())
}

#[test]
fn applied_writes_are_not_captured_but_commit_with_their_aux_records() -> blazedb_engine::Result<()>
{
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open_capturing(dir.path(), "db")?;
    let mut tx = db.begin_apply()?;
    let id = tx.insert("c", Document::new())?;
    tx.aux_put("sync", b"cursor", b"42")?;
    tx.commit()?;
    let r = db.begin_read()?;
    assert!(r.get("c", id)?.is_some());
    assert_eq!(r.last_seq()?, 0);
    assert_eq!(r.aux_get("sync", b"cursor")?, Some(b"42".to_vec()));
    assert_eq!(
        r.aux_scan("sync")?,
        vec![(b"cursor".to_vec(), b"42".to_vec())]
    );
    Ok(())
}

#[test]
fn aux_records_may_outgrow_a_document() -> blazedb_engine::Result<()> {
    use blazedb_core::limits::DOCUMENT_BYTES_MAX;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), "db")?;
    let big = vec![7u8; DOCUMENT_BYTES_MAX + (2 << 20)];
    let mut tx = db.begin_apply()?;
    tx.aux_put("sync", b"state", &big)?;
    tx.commit()?;
    assert_eq!(db.begin_read()?.aux_get("sync", b"state")?, Some(big));
    Ok(())
}

#[test]
fn data_survives_close_and_reopen() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = {
        let db = common::open_capturing(dir.path(), "db")?;
        db.collection("c").insert(Document::new().with("k", "v"))?
    };
    let db = open(dir.path(), "db")?;
    assert_eq!(
        db.collection("c")
            .get(id)?
            .and_then(|d| d.get("k").cloned()),
        Some(Value::from("v"))
    );
    assert_eq!(db.begin_read()?.last_seq()?, 1);
    db.collection("c").insert(Document::new())?;
    assert_eq!(
        db.begin_read()?.last_seq()?,
        2,
        "sequence numbers continue after reopen"
    );
    Ok(())
}

#[test]
fn a_panic_in_a_scan_callback_reaches_the_caller_and_the_database_stays_usable()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), "db")?;
    db.collection("c").insert(Document::new())?;
    let r = db.begin_read()?;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.scan("c", |_| panic!("bug in the caller's callback"))
    }));
    let payload = caught.expect_err("the caller's panic propagates, not an Error");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"bug in the caller's callback")
    );
    db.collection("c").insert(Document::new())?;
    assert_eq!(db.collection("c").count()?, 2);
    Ok(())
}

#[test]
fn a_new_database_keeps_no_change_log_and_capture_once_enabled_survives_reopen()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = open(dir.path(), "db")?;
        let c = db.collection("c");
        let id = c.insert(Document::new().with("a", 1i64))?;
        c.patch(id, &Patch::new().set("a", 2i64))?;
        c.delete(id)?;
        c.insert(Document::new())?;
        let r = db.begin_read()?;
        assert_eq!(r.last_seq()?, 0, "local-only: no change-log entry");
        assert!(r.changes_after(0, 100)?.is_empty());
    }
    {
        let db = open(dir.path(), "db")?;
        db.collection("c").insert(Document::new())?;
        assert_eq!(
            db.begin_read()?.last_seq()?,
            0,
            "still local-only after reopen"
        );
        common::capture_changes(&db)?;
        db.collection("c").insert(Document::new())?;
        assert_eq!(db.begin_read()?.last_seq()?, 1, "captured once enabled");
    }
    let db = open(dir.path(), "db")?;
    let id = db.collection("c").insert(Document::new())?;
    let changes = db.begin_read()?.changes_after(0, 100)?;
    assert_eq!(changes.len(), 2, "capture is kept across reopens");
    assert_eq!(changes[1].id, id);
    assert_eq!(db.collection("c").count()?, 4);
    Ok(())
}
