//! Records are compressed before sealing where that makes them smaller on disk, and
//! only there; every handle reads both kinds; compression can be turned off.

mod common;

use std::path::Path;

use blazedb_engine::{Database, Document, Result, Value, database_path};
use blazedb_storage::Table;

fn open(dir: &Path, compression: bool) -> Result<Database> {
    common::fast()
        .compression(compression)
        .open(dir, "c", common::PASSWORD)
}

/// A document whose text repeats (as notes, logs and JSON blobs do).
fn repetitive(i: i64) -> Document {
    let body = "the same budget review meeting notes, again and again; ".repeat(40);
    Document::new().with("i", i).with("body", body)
}

/// A document whose bytes do not compress (random).
fn random_bytes(i: i64) -> Document {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64);
    let bytes: Vec<u8> = (0..2012)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    Document::new()
        .with("i", i)
        .with("blob", Value::Bytes(bytes))
}

/// Writes `docs` into a fresh database with compression on or off; returns the sealed
/// lengths of the document records (sorted) and the documents read back (by id).
fn write_and_measure(compression: bool, docs: &[Document]) -> Result<(Vec<usize>, Vec<Document>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), compression)?;
    db.collection("notes").insert_many(docs.iter().cloned())?;
    let mut back = db.collection("notes").all()?;
    back.sort_by_key(|d| d.id);
    drop(db);
    let mut lens: Vec<usize> = common::raw_value_lens(&database_path(dir.path(), "c"), Table::Docs)
        .into_values()
        .collect();
    lens.sort_unstable();
    Ok((lens, back))
}

#[test]
fn repetitive_documents_are_stored_smaller_and_read_back_the_same() -> Result<()> {
    let docs: Vec<Document> = (0..20).map(repetitive).collect();
    let (on, back_on) = write_and_measure(true, &docs)?;
    let (off, back_off) = write_and_measure(false, &docs)?;
    let mut want = docs.clone();
    want.sort_by_key(|d| d.id);
    assert_eq!(back_on, want);
    assert_eq!(back_off, want);
    let total = |v: &[usize]| v.iter().sum::<usize>();
    assert!(
        total(&on) * 4 < total(&off),
        "compressed records are a fraction of the plain ones: {} vs {} bytes",
        total(&on),
        total(&off)
    );
    Ok(())
}

#[test]
fn records_that_would_not_shrink_are_stored_as_they_are() -> Result<()> {
    let docs: Vec<Document> = (0..10).map(random_bytes).collect();
    let (on, back_on) = write_and_measure(true, &docs)?;
    let (off, _) = write_and_measure(false, &docs)?;
    let mut want = docs.clone();
    want.sort_by_key(|d| d.id);
    assert_eq!(back_on, want);
    assert_eq!(on, off, "the same size buckets with and without");
    Ok(())
}

#[test]
fn a_handle_with_compression_off_reads_compressed_records_and_writes_plain_ones() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_dir = database_path(dir.path(), "c");
    let first = repetitive(1);
    let db = open(dir.path(), true)?;
    db.collection("notes").insert(first.clone())?;
    drop(db);
    let compressed = common::raw_value_lens(&db_dir, Table::Docs);

    let db = open(dir.path(), false)?;
    assert_eq!(db.collection("notes").get(first.id)?, Some(first.clone()));
    let second = repetitive(2);
    db.collection("notes").insert(second.clone())?;
    drop(db);
    let lens = common::raw_value_lens(&db_dir, Table::Docs);
    let added: Vec<usize> = lens
        .iter()
        .filter(|(k, _)| !compressed.contains_key(*k))
        .map(|(_, n)| *n)
        .collect();
    let old = *compressed.values().next().expect("one record");
    assert_eq!(added.len(), 1);
    assert!(
        added[0] > 4 * old,
        "written plain ({} bytes) beside the compressed one ({old} bytes)",
        added[0]
    );
    let db = open(dir.path(), true)?;
    let mut all = db.collection("notes").all()?;
    all.sort_by_key(|d| d.id);
    let mut want = vec![first, second];
    want.sort_by_key(|d| d.id);
    assert_eq!(all, want);
    Ok(())
}

#[test]
fn short_records_are_not_tried_however_repetitive() -> Result<()> {
    // ~200 encoded bytes that would compress to a few: below the size worth an attempt.
    let docs: Vec<Document> = (0..5)
        .map(|i| Document::new().with("i", i).with("pad", "z".repeat(170)))
        .collect();
    let (on, back) = write_and_measure(true, &docs)?;
    let (off, _) = write_and_measure(false, &docs)?;
    let mut want = docs.clone();
    want.sort_by_key(|d| d.id);
    assert_eq!(back, want);
    assert_eq!(on, off, "stored as they are");
    Ok(())
}
