//! The storage page cache size (`OpenOptions::cache_size`) changes only speed and
//! memory: with a cache far smaller than the data, and than one transaction's changes,
//! every document round-trips, across reopens and read-only opens.

mod common;

use blazedb_engine::{DocId, Document, OpenMode, Result, Value};

const NAME: &str = "db";
const TINY: usize = 1 << 20;

/// A document of about `len` bytes whose content is determined by `i`.
fn doc(i: u64, len: usize) -> Document {
    let pattern: Vec<u8> = (0..26u8)
        .map(|j| b'a' + (j + (i % 26) as u8) % 26)
        .collect();
    let body: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
    Document::new()
        .with("i", i as i64)
        .with("body", Value::Bytes(body))
}

#[test]
fn a_one_mib_cache_round_trips_many_documents_across_reopens_and_read_only_opens() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = || common::fast().cache_size(TINY);
    let mut ids: Vec<(DocId, u64, usize)> = Vec::new();
    {
        let db = tiny().open(dir.path(), NAME, common::PASSWORD)?;
        // 500 small documents in 5 transactions (about 1 MiB stored with their change
        // entries), then one transaction of 12 documents of 64 KiB (1.5 MiB stored: more
        // than the cache), then a document of 1 MiB (2 MiB stored).
        for batch in 0..5u64 {
            let mut tx = db.begin_write()?;
            for k in 0..100u64 {
                let i = batch * 100 + k;
                ids.push((tx.insert("small", doc(i, 1_000))?, i, 1_000));
            }
            tx.commit()?;
        }
        let mut tx = db.begin_write()?;
        for i in 10_000..10_012u64 {
            ids.push((tx.insert("big", doc(i, 64 << 10))?, i, 64 << 10));
        }
        tx.commit()?;
        let i = 20_000;
        ids.push((db.collection("huge").insert(doc(i, 1 << 20))?, i, 1 << 20));
    }
    let check = |db: &blazedb_engine::Database| -> Result<()> {
        let r = db.begin_read()?;
        for &(id, i, len) in &ids {
            let coll = match len {
                1_000 => "small",
                l if l == 64 << 10 => "big",
                _ => "huge",
            };
            let got = r.get(coll, id)?;
            assert_eq!(got.as_ref().map(|d| &d.fields), Some(&doc(i, len).fields));
        }
        assert_eq!(r.count("small")?, 500);
        assert_eq!(r.count("big")?, 12);
        assert_eq!(r.count("huge")?, 1);
        Ok(())
    };
    check(&tiny().open(dir.path(), NAME, common::PASSWORD)?)?;
    check(
        &tiny()
            .mode(OpenMode::ReadOnly)
            .open(dir.path(), NAME, common::PASSWORD)?,
    )?;
    // The default cache reads what a tiny one wrote.
    check(&common::open(dir.path(), NAME)?)?;
    Ok(())
}
