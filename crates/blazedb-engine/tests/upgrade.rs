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
//!
//! `tests/fixtures/format3.blazedb` was written by the library of the release before
//! format 4 (commit f2fcb81; format 3: hashed keys for the sync layer's per-document
//! records) with `KdfParams::INSECURE_FAST` and the same password: 40 notes (UUIDv7
//! ids, one deleted) and a person with an application-chosen UUIDv4 id, then sync
//! enabled as a server (every document gets a merge state), five more notes and one
//! more delete taken over into the sync log; then compacted and closed, its journal
//! left out. `format3.export.ndjson` is its export.

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
const NAME3: &str = "format3";
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
fn compact_moves_format_2_to_the_current_format_compressing_documents_with_the_same_contents()
-> Result<()> {
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

/// The per-document sync records of `db` (key → value), read through the engine.
fn doc_records(db: &Database) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use blazedb_engine::internal::{DOC_NS, SyncRead};
    db.begin_read()?.aux_scan(DOC_NS)
}

/// The six order bytes (as a number) of each raw storage key of the auxiliary
/// namespace with the most records: the per-document records in these databases.
fn doc_record_orders(db_dir: &Path) -> Vec<u64> {
    let keys = common::raw_keys(db_dir, Table::Aux);
    let mut groups: std::collections::BTreeMap<Vec<u8>, Vec<u64>> = Default::default();
    for k in keys.iter().filter(|k| k.len() == 32) {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&k[16..22]);
        groups
            .entry(k[..16].to_vec())
            .or_default()
            .push(u64::from_be_bytes(b));
    }
    groups
        .into_values()
        .max_by_key(Vec::len)
        .expect("the fixture has per-document records")
}

/// How far apart the `n` closest order values of `orders` lie (the UUIDv7 records,
/// created within a second, against the one application-chosen id placed by its tag).
fn tightest_span(orders: &[u64], n: usize) -> u64 {
    let mut o = orders.to_vec();
    o.sort_unstable();
    o.windows(n)
        .map(|w| w[n - 1] - w[0])
        .min()
        .expect("enough records")
}

#[test]
fn a_database_of_format_3_opens_and_its_sync_records_read_and_write_as_they_are() -> Result<()> {
    use blazedb_engine::internal::{DOC_NS, SyncDatabase, SyncRead, SyncWrite};
    let dir = fixture_copy_of(NAME3);
    let expected =
        std::fs::read_to_string(fixtures().join("format3.export.ndjson")).expect("fixture export");
    let db = open_named(dir.path(), NAME3)?;
    assert_eq!(export(&db)?, expected, "the previous release's export");
    let records = doc_records(&db)?;
    assert_eq!(
        records.len(),
        45,
        "one merge state per document synced (the note deleted before sync has none)"
    );
    let (key, value) = &records[0];
    assert_eq!(
        db.begin_read()?.aux_get(DOC_NS, key)?.as_ref(),
        Some(value),
        "a record is found under its format-3 key"
    );
    let mut key2 = b"notes\0".to_vec();
    key2.extend_from_slice(DocId::new().as_bytes());
    let mut tx = db.begin_apply()?;
    tx.aux_put(DOC_NS, &key2, b"written in format 3")?;
    tx.commit()?;
    drop(db);
    let db = open_named(dir.path(), NAME3)?;
    assert_eq!(
        db.begin_read()?.aux_get(DOC_NS, &key2)?.as_deref(),
        Some(&b"written in format 3"[..])
    );
    assert_eq!(doc_records(&db)?.len(), 46);
    Ok(())
}

#[test]
fn compact_moves_format_3_sync_records_to_keys_in_document_order_with_the_same_contents()
-> Result<()> {
    use blazedb_engine::internal::{DOC_NS, SyncDatabase, SyncRead, SyncWrite};
    let dir = fixture_copy_of(NAME3);
    let db_dir = database_path(dir.path(), NAME3);
    let orders_before = doc_record_orders(&db_dir);
    assert_eq!(orders_before.len(), 45);
    // Hashed keys: 44 random 48-bit values are nowhere near each other.
    assert!(tightest_span(&orders_before, 44) > 1 << 40);
    let mut db = open_named(dir.path(), NAME3)?;
    let before = export(&db)?;
    let records = doc_records(&db)?;
    db.compact()?;
    assert_eq!(export(&db)?, before, "the same documents after the upgrade");
    assert_eq!(doc_records(&db)?, records, "the same sync records");
    drop(db);
    let orders = doc_record_orders(&db_dir);
    assert_eq!(orders.len(), 45);
    // Ordered keys: the 44 records of UUIDv7 documents (created within a second of each
    // other) carry their creation milliseconds, plus one secret offset.
    assert!(
        tightest_span(&orders, 44) < 60_000,
        "records of documents created together sort together"
    );
    let db = open_named(dir.path(), NAME3)?;
    assert_eq!(doc_records(&db)?, records, "and after reopening");
    for (k, v) in &records {
        assert_eq!(db.begin_read()?.aux_get(DOC_NS, k)?.as_ref(), Some(v));
    }
    // A record written after the upgrade sorts with the others: its document's id is a
    // UUIDv7 of the same millisecond as the fixture's first note.
    let first = records[0]
        .0
        .last_chunk::<16>()
        .expect("keys end with the id");
    assert_eq!(first[6] >> 4, 7, "the first record is a note's (UUIDv7)");
    let mut id = *first;
    id[8..].copy_from_slice(&[0x80, 1, 2, 3, 4, 5, 6, 7]);
    let mut key = b"notes\0".to_vec();
    key.extend_from_slice(&id);
    let mut tx = db.begin_apply()?;
    tx.aux_put(DOC_NS, &key, b"written in format 4")?;
    tx.commit()?;
    drop(db);
    let orders = doc_record_orders(&db_dir);
    assert_eq!(orders.len(), 46);
    assert!(
        tightest_span(&orders, 45) < 60_000,
        "a new record sorts with those of its time"
    );
    // A second compaction has nothing to upgrade and changes no key.
    let keys = common::raw_keys(&db_dir, Table::Aux);
    let mut db = open_named(dir.path(), NAME3)?;
    db.compact()?;
    drop(db);
    assert_eq!(common::raw_keys(&db_dir, Table::Aux), keys);
    Ok(())
}
