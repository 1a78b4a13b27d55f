//! `Database::space`: where a database's bytes go, per table.

mod common;

use blazedb_engine::{Document, TableSpace};
use common::open;

fn table<'a>(report: &'a blazedb_engine::SpaceReport, name: &str) -> &'a TableSpace {
    &report
        .tables
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no table {name} in the report"))
        .1
}

#[test]
fn space_counts_each_tables_entries_and_the_file_holds_every_used_page()
-> blazedb_engine::Result<()> {
    let dir = common::scratch_dir();
    // Created in this process: the report must find the file where the database now
    // lives, not in the temporary directory it was built in.
    let db = open(dir.path(), "db")?;
    let notes = db.collection("notes");
    let ids = notes.insert_many(
        (0..500_i64).map(|i| Document::new().with("n", i).with("text", "x".repeat(100))),
    )?;
    let report = db.space()?;
    let docs = table(&report, "docs");
    assert_eq!(docs.entries, 500);
    assert!(
        docs.stored_bytes >= 500 * 100,
        "500 records of over 100 bytes each take {} bytes",
        docs.stored_bytes
    );
    assert!(docs.leaf_pages > 0);
    // Local-only: nothing is written to the change log.
    assert_eq!(table(&report, "changes").entries, 0);
    assert!(report.file_bytes >= report.used_bytes());
    assert_eq!(
        report.unused_bytes(),
        report.file_bytes - report.used_bytes()
    );

    notes.delete_many(ids)?;
    assert_eq!(table(&db.space()?, "docs").entries, 0);
    Ok(())
}

/// A database with an index, the change log on, and churn: replaced and deleted
/// documents leave free pages behind.
fn churned(dir: &std::path::Path) -> blazedb_engine::Result<blazedb_engine::Database> {
    let db = common::open_capturing(dir, "db")?;
    db.create_index(&blazedb_engine::IndexSpec::new("by_n", "notes", &["n"]))?;
    let notes = db.collection("notes");
    let ids = notes.insert_many(
        (0..3000_i64).map(|i| Document::new().with("n", i).with("text", "x".repeat(200))),
    )?;
    for (i, id) in ids.iter().enumerate().step_by(2) {
        notes.put(
            Document::with_id(*id)
                .with("n", -(i as i64))
                .with("text", "y".repeat(150)),
        )?;
    }
    notes.delete_many(ids.iter().copied().step_by(3))?;
    Ok(db)
}

/// An equality query the `by_n` index answers.
fn by_n_query() -> blazedb_engine::Result<blazedb_engine::Query> {
    Ok(blazedb_engine::Query::new("notes").filter(blazedb_engine::Filter::eq("n", -4_i64)?))
}

#[test]
fn compaction_gives_back_unused_space_and_keeps_every_record_index_and_change()
-> blazedb_engine::Result<()> {
    let dir = common::scratch_dir();
    let mut db = churned(dir.path())?;
    let before = common::contents(&db, &["notes"])?;
    let by_index = db.query(&by_n_query()?)?;
    let space_before = db.space()?;

    let report = db.compact()?;
    assert_eq!(report.before_bytes, space_before.file_bytes);
    assert!(
        report.after_bytes < report.before_bytes * 3 / 4,
        "compaction of a churned file shrank it only from {} to {} bytes",
        report.before_bytes,
        report.after_bytes
    );
    let space_after = db.space()?;
    assert_eq!(space_after.file_bytes, report.after_bytes);
    // The new file is the owner's alone, like every file of the database.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let data = blazedb_engine::database_path(dir.path(), "db").join("data.redb");
        let mode = std::fs::metadata(data)
            .expect("data file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "compacted data file mode {mode:o}");
    }
    assert!(space_after.unused_bytes() < space_before.unused_bytes());
    for ((name, b), (_, a)) in space_before.tables.iter().zip(&space_after.tables) {
        assert_eq!(b.entries, a.entries, "entries of table {name}");
        assert_eq!(
            b.stored_bytes, a.stored_bytes,
            "record bytes of table {name}"
        );
    }

    // The same handle reads and writes on the new file, indexes included.
    assert_eq!(common::contents(&db, &["notes"])?, before);
    assert_eq!(db.query(&by_n_query()?)?, by_index);
    let added = db
        .collection("notes")
        .insert(Document::new().with("n", 1_000_000_i64))?;
    drop(db);
    let db = common::open(dir.path(), "db")?;
    let after = common::contents(&db, &["notes"])?;
    assert_eq!(after.docs[0].1.len(), before.docs[0].1.len() + 1);
    assert!(db.collection("notes").get(added)?.is_some());
    assert_eq!(after.changes[..before.changes.len()], before.changes[..]);
    assert!(
        !common::dir_entries(&blazedb_engine::database_path(dir.path(), "db"))
            .iter()
            .any(|f| f.contains("compacting"))
    );
    Ok(())
}

#[test]
fn compaction_is_refused_while_another_handle_or_a_read_only_open_holds_the_database()
-> blazedb_engine::Result<()> {
    let dir = common::scratch_dir();
    let mut db = churned(dir.path())?;
    let path = blazedb_engine::database_path(dir.path(), "db");
    let clone = db.clone();
    let files = common::snapshot_files(&path);
    assert!(matches!(
        db.compact(),
        Err(blazedb_engine::Error::AlreadyOpen { .. })
    ));
    common::assert_unchanged(&path, &files, "a refused compaction");
    drop(clone);
    drop(db);
    // Closing writes the file (a clean close): compare the read-only case from here.
    let files = common::snapshot_files(&path);

    let mut ro = common::fast()
        .mode(blazedb_engine::OpenMode::ReadOnly)
        .open(dir.path(), "db", common::PASSWORD)?;
    assert!(matches!(
        ro.compact(),
        Err(blazedb_engine::Error::ReadOnly { .. })
    ));
    drop(ro);
    common::assert_unchanged(&path, &files, "a compaction refused on a read-only handle");
    Ok(())
}

#[test]
fn a_copy_left_by_an_interrupted_compaction_is_removed_at_open_and_changes_nothing()
-> blazedb_engine::Result<()> {
    let dir = common::scratch_dir();
    let db = churned(dir.path())?;
    let before = common::contents(&db, &["notes"])?;
    drop(db);
    let path = blazedb_engine::database_path(dir.path(), "db");
    let leftover = path.join("data.redb.compacting");
    std::fs::write(&leftover, vec![0xA5; 64 * 1024]).expect("write a partial copy");

    // A read-only open touches no file: the leftover stays.
    let ro = common::fast()
        .mode(blazedb_engine::OpenMode::ReadOnly)
        .open(dir.path(), "db", common::PASSWORD)?;
    assert_eq!(common::contents(&ro, &["notes"])?, before);
    drop(ro);
    assert!(leftover.exists());

    let db = common::open(dir.path(), "db")?;
    assert!(
        !leftover.exists(),
        "the read-write open removes the partial copy"
    );
    assert_eq!(common::contents(&db, &["notes"])?, before);
    Ok(())
}
