//! A database written by an earlier release opens in this one, and `compact` moves it
//! to the current format with the same contents.
//!
//! The fixture `tests/fixtures/format1.blazedb` was written by the `blazedb` CLI of the
//! release before format 2 (commit 4b44baf; format 1: hashed document keys), with the
//! password `fixture password` and the default KDF: 40 notes inserted in one
//! transaction (one then deleted), an index `by_n` on `notes.n`, and two people, one
//! with a UUIDv7 id and one with an application-chosen UUIDv4 id; then compacted and
//! closed. `tests/fixtures/format1.export.ndjson` is its canonical export from that
//! release.
//!
//! `tests/fixtures/format2.blazedb` was made the same way by the `blazedb` CLI of the
//! release before format 3 (commit f29bfa2; format 2: ordered keys, no compressed
//! records), the notes with a 60-word body that compresses well; its journal, empty
//! after the clean close, is left out. `format2.export.ndjson` is its export.

mod common;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use blazedb_engine::{
    Database, DocId, Document, Filter, OpenMode, OpenOptions, Query, Result, database_path,
};
use blazedb_storage::Table;

const NAME: &str = "format1";
const NAME2: &str = "format2";
const PASSWORD: &str = "fixture password";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A private copy of the format 1 fixture database (opening may write to it).
fn fixture_copy() -> tempfile::TempDir {
    fixture_copy_of(NAME)
}

/// A private copy of fixture database `name`.
fn fixture_copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = fixtures().join(format!("{name}.blazedb"));
    let dst = database_path(dir.path(), name);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for entry in std::fs::read_dir(&src).expect("fixture directory") {
        let name = entry.expect("entry").file_name();
        std::fs::copy(src.join(&name), dst.join(&name)).expect("copy a fixture file");
    }
    dir
}

fn open(dir: &Path) -> Result<Database> {
    open_named(dir, NAME)
}

fn open_named(dir: &Path, name: &str) -> Result<Database> {
    OpenOptions::new()
        .mode(OpenMode::OpenExisting)
        .open(dir, name, PASSWORD)
}

fn export(db: &Database) -> Result<String> {
    let mut out = Vec::new();
    db.export_ndjson(&mut out, None)?;
    Ok(String::from_utf8(out).expect("NDJSON is UTF-8"))
}

/// The millisecond timestamp of a UUIDv7 id (`None` for other versions).
fn v7_millis(id: DocId) -> Option<u64> {
    let b = id.as_bytes();
    (b[6] >> 4 == 7).then(|| u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]))
}

/// The ids of `collection` in storage order.
fn storage_order(db: &Database, collection: &str) -> Result<Vec<DocId>> {
    let mut ids = Vec::new();
    db.begin_read()?.scan(collection, |d| {
        ids.push(d.id);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(ids)
}

fn by_n(db: &Database, n: i64) -> Result<Vec<Document>> {
    db.query(&Query::new("notes").filter(Filter::eq("n", n)?))
}

#[test]
fn a_database_of_the_previous_format_opens_reads_and_writes_as_it_is() -> Result<()> {
    let dir = fixture_copy();
    let db = open(dir.path())?;
    let expected =
        std::fs::read_to_string(fixtures().join("format1.export.ndjson")).expect("fixture export");
    assert_eq!(
        export(&db)?,
        expected,
        "the previous release's export, byte for byte"
    );
    assert_eq!(by_n(&db, 39)?.len(), 1, "its index answers");
    assert!(
        by_n(&db, 7)?.is_empty(),
        "its deleted document stays deleted"
    );
    let added = db
        .collection("notes")
        .insert(Document::new().with("n", 41i64))?;
    drop(db);
    let db = open(dir.path())?;
    assert_eq!(db.collection("notes").count()?, 40);
    assert!(db.collection("notes").get(added)?.is_some());
    assert_eq!(by_n(&db, 41)?.len(), 1);
    Ok(())
}

#[test]
fn compact_moves_a_database_of_the_previous_format_to_time_ordered_keys_with_the_same_contents()
-> Result<()> {
    let dir = fixture_copy();
    let db_dir = database_path(dir.path(), NAME);
    let keys_before = common::raw_keys(&db_dir, Table::Docs);
    let mut db = open(dir.path())?;
    let before = export(&db)?;
    db.compact()?;
    assert_eq!(export(&db)?, before, "the same documents after the upgrade");
    drop(db);
    let keys_after = common::raw_keys(&db_dir, Table::Docs);
    assert_eq!(keys_after.len(), keys_before.len());
    // Every document with a UUIDv7 id has a new key; the one with an application-chosen
    // id keeps its keyed-tag key, which is the same in both layouts.
    assert_eq!(
        keys_after.intersection(&keys_before).count(),
        1,
        "only the UUIDv4 document keeps its key"
    );
    let db = open(dir.path())?;
    assert_eq!(export(&db)?, before, "and after reopening");
    assert_eq!(by_n(&db, 39)?.len(), 1);
    // Time-ordered keys: documents with UUIDv7 ids come in creation order.
    let notes = storage_order(&db, "notes")?;
    let times: Vec<u64> = notes.iter().filter_map(|id| v7_millis(*id)).collect();
    assert_eq!(times.len(), notes.len());
    assert!(times.is_sorted(), "storage order follows creation time");
    // Writes after the upgrade go in the new layout and read back.
    let later: BTreeSet<DocId> = (0..5)
        .map(|i| {
            db.collection("notes")
                .insert(Document::new().with("n", 100 + i))
        })
        .collect::<Result<_>>()?;
    let order = storage_order(&db, "notes")?;
    assert_eq!(
        order[order.len() - 5..]
            .iter()
            .copied()
            .collect::<BTreeSet<_>>(),
        later,
        "new documents sort after the old ones"
    );
    drop(db);
    // A second compaction has nothing to upgrade and changes no key.
    let keys = common::raw_keys(&db_dir, Table::Docs);
    let mut db = open(dir.path())?;
    db.compact()?;
    drop(db);
    assert_eq!(common::raw_keys(&db_dir, Table::Docs), keys);
    Ok(())
}

/// The total sealed size of the document records of the database in `dir/name`.
fn doc_bytes(dir: &Path, name: &str) -> usize {
    common::raw_value_lens(&database_path(dir, name), Table::Docs)
        .values()
        .sum()
}

#[test]
fn a_database_of_format_2_opens_and_stays_format_2_until_compacted() -> Result<()> {
    let dir = fixture_copy_of(NAME2);
    let expected =
        std::fs::read_to_string(fixtures().join("format2.export.ndjson")).expect("fixture export");
    let db = open_named(dir.path(), NAME2)?;
    assert_eq!(export(&db)?, expected, "the previous release's export");
    assert_eq!(by_n(&db, 39)?.len(), 1, "its index answers");
    assert!(
        by_n(&db, 7)?.is_empty(),
        "its deleted document stays deleted"
    );
    // A write keeps the old format's record kind: no compressed record appears in a file
    // an earlier release must still read.
    let long = db.collection("notes").all()?.remove(0);
    let copy = Document::new().with("n", 41i64).with(
        "body",
        long.get("body")
            .cloned()
            .expect("the fixture's notes have a body"),
    );
    drop(db);
    let before = doc_bytes(dir.path(), NAME2);
    let db = open_named(dir.path(), NAME2)?;
    let added = db.collection("notes").insert(copy)?;
    drop(db);
    let grew = doc_bytes(dir.path(), NAME2) - before;
    let per_note = before / 41;
    assert!(
        grew * 10 >= per_note * 9,
        "a note written into format 2 is as large as the old ones ({grew} vs ~{per_note} bytes)"
    );
    let db = open_named(dir.path(), NAME2)?;
    assert!(db.collection("notes").get(added)?.is_some());
    Ok(())
}

#[test]
fn compact_moves_format_2_to_3_compressing_documents_with_the_same_contents() -> Result<()> {
    let dir = fixture_copy_of(NAME2);
    let db_dir = database_path(dir.path(), NAME2);
    let keys_before = common::raw_keys(&db_dir, Table::Docs);
    let bytes_before = doc_bytes(dir.path(), NAME2);
    let mut db = open_named(dir.path(), NAME2)?;
    let before = export(&db)?;
    db.compact()?;
    assert_eq!(export(&db)?, before, "the same documents after the upgrade");
    drop(db);
    assert_eq!(
        common::raw_keys(&db_dir, Table::Docs),
        keys_before,
        "format 2 keys are already the current layout"
    );
    let bytes_after = doc_bytes(dir.path(), NAME2);
    assert!(
        bytes_after * 10 < bytes_before * 7,
        "the notes' repetitive bodies are stored compressed: {bytes_before} -> {bytes_after} bytes"
    );
    let db = open_named(dir.path(), NAME2)?;
    assert_eq!(export(&db)?, before, "and after reopening");
    assert_eq!(by_n(&db, 39)?.len(), 1);
    Ok(())
}
