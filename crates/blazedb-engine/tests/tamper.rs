//! Tampering with a closed database: flipped bytes anywhere in either file, swapped,
//! moved or replayed values, truncated files. Every attempt must end in a typed error or
//! in exactly the data that was written: never a panic, never other data.
//!
//! Flip positions are seeded (printed; rerun with `BLAZEDB_TAMPER_SEED=<seed>`);
//! `BLAZEDB_TAMPER_POSITIONS=N` adds every Nth byte of the data file (long mode). The
//! database is rebuilt per run (fresh keys and ids), so a seed reproduces positions and
//! masks, not the bytes under them.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use blazedb_engine::internal::{SyncDatabase, SyncRead, SyncWrite};
use blazedb_engine::{
    CorruptionSite, DocId, Document, Error, Fields, OpenMode, Patch, Result, Timestamp, Value,
    database_path,
};
use blazedb_storage::Table;
use common::{
    Contents, PASSWORD, SplitMix, Tally, Verdict, insert_and_find_key, is_corrupt_record, raw_edit,
    raw_get, raw_keys, same,
};

const NAME: &str = "db";
const COLLECTIONS: [&str; 3] = ["notes", "people", "tasks"];
const AUX_NS: &str = "sync";
const KEY_FILE: &str = "blazedb.key";
const DATA_FILE: &str = "data.redb";
const PAGE: usize = 4096;
/// redb's file header (magic, god byte, two commit slots): every byte of it is tried.
const REDB_HEADER: usize = 320;
/// Offsets tried in every page: its start and end, a leaf's first key (100), the middle.
const PAGE_OFFSETS: [usize; 4] = [0, 100, 2048, 4095];
/// Seeded random positions per series, on top of the systematic ones.
const RANDOM_FLIPS: usize = 200;

/// The files of a closed database and everything it must read back as.
struct Pristine {
    key: Vec<u8>,
    data: Vec<u8>,
    expected: Contents,
    aux: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every 4th live document (decryption dominates the run time), for point reads:
    /// they take another B-tree path than scans.
    live: Vec<(String, Document)>,
    /// Deleted ids: they must never read back as present.
    deleted: Vec<(&'static str, DocId)>,
}

fn varied_doc(i: usize) -> Document {
    let n = i as i64;
    let inner = vec![
        Value::Null,
        Value::Bool(i.is_multiple_of(3)),
        format!("é{i}").into(),
    ];
    let nested = Fields::from([
        ("level".into(), Value::Int(n % 5)),
        ("in".into(), inner.into()),
    ]);
    let mut doc = Document::new()
        .with("n", n)
        .with("title", format!("{i}:{}", "abcdefgh".repeat(i % 12)))
        .with("score", n as f64 / 7.0)
        .with("done", i.is_multiple_of(2))
        .with("blob", vec![(i % 251) as u8; i * 7 % 41])
        .with("when", Timestamp(n * 86_400_000 - 1_000_000))
        .with("ref", DocId::new().0)
        .with("tags", vec![Value::from("a"), Value::Int(n)])
        .with("meta", nested)
        .with("nothing", Value::Null);
    if i.is_multiple_of(100) {
        doc.set("body", "lorem ipsum ".repeat(500)); // > 1 page: redb overflow pages
    }
    doc
}

/// ~200 documents in 3 collections, patched, replaced and deleted, a dropped collection
/// and an aux record; then closed.
fn build_pristine() -> Result<Pristine> {
    let root = tempfile::tempdir().expect("tempdir");
    // Capturing, so the change log is part of what tampering must not get past.
    let db = common::open_capturing(root.path(), NAME)?;
    let mut ids = Vec::new();
    for batch in 0..10 {
        let mut tx = db.begin_write()?;
        for i in batch * 20..batch * 20 + 20 {
            let coll = COLLECTIONS[i % 3];
            ids.push((coll, tx.insert(coll, varied_doc(i))?));
        }
        tx.commit()?;
    }
    let mut deleted = Vec::new();
    for (k, &(coll, id)) in ids.iter().enumerate() {
        let c = db.collection(coll);
        match k % 9 {
            0 => drop(c.patch(id, &Patch::new().set("patched", k as i64).unset("blob"))?),
            4 => drop(c.put(Document::with_id(id).with("replaced", true))?),
            7 => c.delete(id).map(|()| deleted.push((coll, id)))?,
            _ => {}
        }
    }
    let gone = db
        .collection("scratch")
        .insert_many((0..5).map(varied_doc))?;
    db.collection("scratch").drop_all()?;
    deleted.extend(gone.into_iter().map(|id| ("scratch", id)));
    let mut tx = db.begin_apply()?;
    tx.aux_put(AUX_NS, b"cursor", b"42")?;
    tx.commit()?;
    // The last commit adds a document: a file silently rolled back to its previous
    // commit would miss it, and the comparison would say so.
    db.collection("notes").insert(varied_doc(1000))?;
    let expected = common::contents(&db, &COLLECTIONS)?;
    let aux = db.begin_read()?.aux_scan(AUX_NS)?;
    drop(db);
    let all_docs = expected.docs.iter();
    let live = all_docs.flat_map(|(c, docs)| docs.iter().map(|d| (c.clone(), d.clone())));
    let dir = database_path(root.path(), NAME);
    Ok(Pristine {
        key: fs::read(dir.join(KEY_FILE)).expect("read key file"),
        data: fs::read(dir.join(DATA_FILE)).expect("read data file"),
        live: live.step_by(4).collect(),
        expected,
        aux,
        deleted,
    })
}

/// Opens the database in `dir` and reads everything; every read that succeeds must
/// return exactly what the pristine database held.
fn read_back(dir: &Path, verify: bool, p: &Pristine) -> Result<(), Verdict> {
    let opts = common::fast()
        .mode(OpenMode::OpenExisting)
        .verify_on_open(verify);
    let db = opts
        .open(dir, NAME, PASSWORD)
        .map_err(|e| Verdict::NotOpened(e, true))?;
    let r = db.begin_read().map_err(Verdict::Refused)?;
    for (coll, doc) in &p.live {
        same("get", r.get(coll, doc.id), &Some(doc.clone()))?;
    }
    for (coll, id) in &p.deleted {
        same("get of a deleted id", r.get(coll, *id), &None)?;
    }
    same("aux scan", r.aux_scan(AUX_NS), &p.aux)?;
    // A census of what differs: (documents per collection, change-log entries).
    let census = |c: &Contents| {
        (
            c.docs.iter().map(|d| d.1.len()).collect::<Vec<_>>(),
            c.changes.len(),
        )
    };
    match common::contents(&db, &COLLECTIONS) {
        Ok(c) if c == p.expected => Ok(()),
        Ok(c) => Err(Verdict::WrongData(format!(
            "full read: {:?} not {:?}",
            census(&c),
            census(&p.expected)
        ))),
        Err(e) => Err(Verdict::Refused(e)),
    }
}

/// Writes `key` and `data` as a fresh database directory, then opens and reads it
/// inside `catch_unwind`. `Err` carries a panic's message.
fn attempt(p: &Pristine, verify: bool, key: &[u8], data: &[u8]) -> Result<Verdict, String> {
    let work = common::scratch_dir();
    let dir = database_path(work.path(), NAME);
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join(KEY_FILE), key).expect("write key file");
    fs::write(dir.join(DATA_FILE), data).expect("write data file");
    let read = || read_back(work.path(), verify, p).map_or_else(|v| v, |()| Verdict::Identical);
    let verdict = catch_unwind(AssertUnwindSafe(read)).map_err(common::panic_message)?;
    let unchanged = |f: &str, bytes: &[u8]| fs::read(dir.join(f)).is_ok_and(|b| b == bytes);
    Ok(match verdict {
        Verdict::NotOpened(e, _) => {
            Verdict::NotOpened(e, unchanged(KEY_FILE, key) && unchanged(DATA_FILE, data))
        }
        other => other,
    })
}

/// Damage to the data file may be reported by the storage engine's checks or by a
/// record failing authentication (a damaged format record reads as a key mismatch: it
/// is the proof that key file and data file belong together).
fn data_file_error(e: Option<&Error>) -> bool {
    use CorruptionSite::{KeyMismatch, Record, Storage};
    let site = |e: &Error| {
        matches!(
            e,
            Error::Corruption {
                site: Storage | Record { .. } | KeyMismatch,
                ..
            }
        )
    };
    e.is_none_or(site)
}

/// The key file is checksummed whole: a flipped version field (bytes 8..10) is an
/// unsupported format, any other flip a key-file corruption (never WrongPassword).
fn key_file_error(pos: usize) -> impl Fn(Option<&Error>) -> bool {
    let version = (8..10).contains(&pos);
    move |e| match e {
        Some(Error::UnsupportedFormat { what, .. }) => version && *what == "key file",
        Some(Error::Corruption { site, .. }) => !version && *site == CorruptionSite::KeyFile,
        _ => false,
    }
}

fn seeded() -> SplitMix {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    let seed = std::env::var("BLAZEDB_TAMPER_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let seed = seed.unwrap_or_else(|| now.map_or(1, |d| d.as_nanos() as u64));
    println!("tamper seed: {seed} (rerun with BLAZEDB_TAMPER_SEED={seed})");
    SplitMix(seed)
}

/// A non-zero XOR mask.
fn mask(rng: &mut SplitMix) -> u8 {
    (rng.next_u64() % 255) as u8 + 1
}

/// Positions covering the whole data file: all of redb's header, several offsets in
/// every page, seeded random ones, and every Nth byte in long mode.
fn data_positions(len: usize, rng: &mut SplitMix) -> BTreeSet<usize> {
    let mut pos: BTreeSet<usize> = (0..REDB_HEADER.min(len)).collect();
    for page in (0..len).step_by(PAGE) {
        pos.extend(PAGE_OFFSETS.iter().map(|o| page + o).filter(|&p| p < len));
    }
    pos.extend((0..RANDOM_FLIPS).map(|_| rng.below(len)));
    let long = std::env::var("BLAZEDB_TAMPER_POSITIONS").ok();
    if let Some(step) = long.and_then(|s| s.parse::<usize>().ok()) {
        pos.extend((0..len).step_by(step.max(1)));
    }
    pos
}

/// Opens a copy of the pristine files with data-file byte `pos` XORed with `mask`, and
/// records whether the outcome is allowed (a data-file error, or exactly the data).
fn flip_and_record(p: &Pristine, verify: bool, pos: usize, mask: u8, tally: &mut Tally) {
    let mut data = p.data.clone();
    data[pos] ^= mask;
    let what = format!("data.redb byte {pos} ^ {mask:#04x}");
    tally.record(&what, attempt(p, verify, &p.key, &data), data_file_error);
}

/// Flips data-file bytes at the seeded positions, from the `from`-th on (the masks of
/// the ones before are drawn all the same, so every position gets the same mask in any
/// run of the seed), printing `flipped #i` after each.
fn flip_data_file(verify: bool, from: usize) -> Result<()> {
    let p = build_pristine()?;
    let mut rng = seeded();
    let positions = data_positions(p.data.len(), &mut rng);
    println!(
        "data.redb: {} bytes, {} positions",
        p.data.len(),
        positions.len()
    );
    // Without the open-time check, redb verifies no page checksum on read: a damaged
    // key can make a lookup miss or a scan end early (documented: verify_on_open(false)
    // is for trusted storage). Authentication still guarantees no *different* data.
    let mut tally = Tally {
        tolerate_incomplete: !verify,
        ..Tally::default()
    };
    for (i, pos) in positions.into_iter().enumerate() {
        let mask = mask(&mut rng);
        if i >= from {
            let before = tally.violations.len();
            flip_and_record(&p, verify, pos, mask, &mut tally);
            // Printed at once: a run that aborts later never reaches `finish`.
            for v in &tally.violations[before..] {
                println!("VIOLATION {v}");
            }
            println!("flipped #{i}");
        }
    }
    tally.finish(&format!("data.redb flips, verify_on_open({verify})"));
    Ok(())
}

/// Set in a child run of the verify-off flips: the index of its first position.
const CHILD_FROM: &str = "BLAZEDB_TAMPER_CHILD_FROM";
/// Most flips of one run that may end in the known redb abort (below).
const REDB_ABORTS_MAX: usize = 3;

/// The verify-off flips, in child processes of this test binary. Without the open-time
/// check redb 4.6 walks damaged pages unchecked, and on rare flips (a page its commit
/// walks for freed pages, at close) a panic inside redb unwinds into one of its own
/// destructors, which panics again: the process aborts, and no `catch_unwind` can stop
/// that (docs/security.md). A child that aborts so is counted and a new one goes on
/// from the next position; any other failure fails the test, and so do more than
/// [`REDB_ABORTS_MAX`] such aborts.
#[cfg(unix)]
fn flip_data_file_in_children(test: &str) -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(from) = std::env::var(CHILD_FROM).ok().and_then(|v| v.parse().ok()) {
        return flip_data_file(false, from);
    }
    let seed = seeded().0;
    let (mut from, mut aborted) = (0usize, Vec::new());
    loop {
        let child = common::spawn_child_test(
            test,
            &[
                (CHILD_FROM, from.to_string()),
                ("BLAZEDB_TAMPER_SEED", seed.to_string()),
            ],
        );
        let out = child.wait_with_output().expect("wait for the child run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let violations: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("VIOLATION"))
            .collect();
        assert!(
            violations.is_empty(),
            "flips broke the rules:\n{}",
            violations.join("\n")
        );
        if out.status.success() {
            print!("{stdout}");
            break;
        }
        let last = stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("flipped #")?.trim().parse::<usize>().ok());
        let redb_abort = out.status.signal() == Some(6)
            && stderr.contains("panic in a destructor during cleanup")
            && stderr.contains("redb");
        if !redb_abort {
            panic!(
                "a child run of the flips failed ({}):\n{stdout}\n{stderr}",
                out.status
            );
        }
        let at = last.map_or(from, |i| i + 1);
        aborted.push(at);
        from = at + 1;
    }
    println!(
        "{} flips (by index) ended in the known redb abort: {aborted:?}",
        aborted.len()
    );
    assert!(
        aborted.len() <= REDB_ABORTS_MAX,
        "{} flips aborted the process inside redb: {aborted:?}",
        aborted.len()
    );
    Ok(())
}

#[test]
fn an_untampered_copy_reads_back_exactly_in_both_verification_modes() -> Result<()> {
    let p = build_pristine()?;
    let mut tally = Tally::default();
    for verify in [true, false] {
        let result = attempt(&p, verify, &p.key, &p.data);
        tally.record(&format!("verify {verify}"), result, |e| e.is_none());
    }
    tally.finish("control");
    Ok(())
}

#[test]
fn flipping_any_data_file_byte_gives_a_typed_error_or_exactly_the_data() -> Result<()> {
    flip_data_file(true, 0)
}

/// Without the open-time check a damaged page can go unnoticed (documents missing from a
/// read: counted, tolerated, documented), but there is never a panic that escapes,
/// never another document's data, and a refused open never modifies a file. The one
/// exception is redb's own abort on rare flips, counted and bounded (see
/// [`flip_data_file_in_children`]).
#[cfg(unix)]
#[test]
fn flipping_data_file_bytes_without_open_verification_never_panics_or_returns_other_data()
-> Result<()> {
    flip_data_file_in_children(
        "flipping_data_file_bytes_without_open_verification_never_panics_or_returns_other_data",
    )
}

#[test]
fn flipping_any_key_file_byte_is_a_typed_key_file_error() -> Result<()> {
    let p = build_pristine()?;
    let mut rng = seeded();
    let mut tally = Tally::default();
    for pos in 0..p.key.len() {
        let mask = mask(&mut rng);
        let mut key = p.key.clone();
        key[pos] ^= mask;
        let what = format!("blazedb.key byte {pos} ^ {mask:#04x}");
        tally.record(&what, attempt(&p, true, &key, &p.data), key_file_error(pos));
    }
    tally.finish("blazedb.key flips");
    Ok(())
}

#[test]
fn truncated_files_give_typed_errors_never_a_panic_or_wrong_data() -> Result<()> {
    let p = build_pristine()?;
    let len = p.data.len();
    let key_file = |e: Option<&Error>| {
        matches!(
            e,
            Some(Error::Corruption {
                site: CorruptionSite::KeyFile,
                ..
            })
        )
    };
    for verify in [true, false] {
        let mut tally = Tally::default();
        for n in [0, 1, PAGE - 1, len / 2, len - 1] {
            let result = attempt(&p, verify, &p.key, &p.data[..n]);
            // Cutting the last byte may only cut unused space: then the data is intact.
            let allowed = |e: Option<&Error>| (e.is_some() || n == len - 1) && data_file_error(e);
            tally.record(&format!("data.redb cut to {n} of {len}"), result, allowed);
        }
        for n in [0, 100, p.key.len() - 1] {
            let result = attempt(&p, verify, &p.key[..n], &p.data);
            tally.record(&format!("blazedb.key cut to {n}"), result, key_file);
        }
        tally.finish(&format!("truncations, verify_on_open({verify})"));
    }
    Ok(())
}

// ---- Edits through the storage layer: intact pages, misplaced or stale values ----

/// A fresh copy of the pristine database: (temp root, database directory).
fn fresh_copy(p: &Pristine) -> (tempfile::TempDir, PathBuf) {
    let work = common::scratch_dir();
    let dir = database_path(work.path(), NAME);
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join(KEY_FILE), &p.key).expect("write key file");
    fs::write(dir.join(DATA_FILE), &p.data).expect("write data file");
    (work, dir)
}

#[test]
fn swapped_documents_fail_authentication_instead_of_reading_as_each_other() -> Result<()> {
    let p = build_pristine()?;
    for (coll_a, coll_b) in [("notes", "notes"), ("notes", "people")] {
        let (work, dir) = fresh_copy(&p);
        let a = Document::new()
            .with("owner", "alice")
            .with("balance", 100i64);
        let b = Document::new().with("owner", "bob").with("balance", 0i64);
        let ka = insert_and_find_key(&dir, NAME, coll_a, a.clone());
        let kb = insert_and_find_key(&dir, NAME, coll_b, b.clone());
        raw_edit(&dir, |tx| {
            let va = tx.get(Table::Docs, &ka)?.expect("a stored");
            let vb = tx.get(Table::Docs, &kb)?.expect("b stored");
            tx.insert(Table::Docs, &ka, &vb)?;
            tx.insert(Table::Docs, &kb, &va)
        });
        let db = common::open(work.path(), NAME)?;
        for (coll, id) in [(coll_a, a.id), (coll_b, b.id)] {
            let got = db.collection(coll).get(id);
            assert!(is_corrupt_record(&got, "docs"), "{coll}/{id}: {got:?}");
            let all = db.collection(coll).all();
            assert!(is_corrupt_record(&all, "docs"), "scan of {coll}: {all:?}");
        }
        // The damage is contained: an untouched collection reads back exactly.
        assert_eq!(p.expected.docs[2].0, "tasks");
        assert_eq!(db.collection("tasks").all()?, p.expected.docs[2].1);
    }
    Ok(())
}

#[test]
fn swapped_or_removed_change_log_entries_fail_authentication() -> Result<()> {
    let p = build_pristine()?;
    let (work, dir) = fresh_copy(&p);
    raw_edit(&dir, |tx| {
        let (k3, k10) = (3u64.to_be_bytes(), 10u64.to_be_bytes());
        let v3 = tx.get(Table::Changes, &k3)?.expect("entry 3");
        let v10 = tx.get(Table::Changes, &k10)?.expect("entry 10");
        tx.insert(Table::Changes, &k3, &v10)?;
        tx.insert(Table::Changes, &k10, &v3)
    });
    let db = common::open(work.path(), NAME)?;
    let r = db.begin_read()?;
    for after in [0, 2, 5] {
        let got = r.changes_after(after, usize::MAX);
        assert!(is_corrupt_record(&got, "changes"), "after {after}: {got:?}");
    }
    // Entries past the damage still read, exactly.
    assert_eq!(r.changes_after(10, usize::MAX)?, p.expected.changes[10..]);
    // A removed entry inside the log is a gap, not a silently shorter history.
    let (work, dir) = fresh_copy(&p);
    raw_edit(&dir, |tx| {
        tx.remove(Table::Changes, &7u64.to_be_bytes()).map(drop)
    });
    let got = common::open(work.path(), NAME)?
        .begin_read()?
        .changes_after(0, usize::MAX);
    assert!(is_corrupt_record(&got, "changes"), "gap: {got:?}");
    Ok(())
}

#[test]
fn a_document_value_moved_into_another_table_fails_authentication() -> Result<()> {
    let p = build_pristine()?;
    let (_work, dir) = fresh_copy(&p);
    let key = insert_and_find_key(&dir, NAME, "notes", Document::new().with("secret", "moved"));
    let sealed = raw_get(&dir, Table::Docs, &key);
    let aux_key = raw_keys(&dir, Table::Aux)
        .into_iter()
        .next()
        .expect("aux key");
    // Onto: the aux record, the catalog entry of "notes" (a document key starts with its
    // collection's tag), the format record.
    let targets = [
        (Table::Aux, aux_key),
        (Table::Catalog, key[..16].to_vec()),
        (Table::Meta, b"format".to_vec()),
    ];
    for (table, target) in targets {
        let (work, copy) = fresh_copy(&p);
        fs::copy(dir.join(DATA_FILE), copy.join(DATA_FILE)).expect("copy");
        raw_edit(&copy, |tx| tx.insert(table, &target, &sealed));
        let opened = common::open(work.path(), NAME);
        if target == b"format" {
            let mismatch = matches!(
                &opened,
                Err(Error::Corruption {
                    site: CorruptionSite::KeyMismatch,
                    ..
                })
            );
            assert!(mismatch, "format record replaced: {opened:?}");
            continue;
        }
        let db = opened?;
        let r = db.begin_read()?;
        let (got, table_name) = match table {
            Table::Catalog => (r.collections().map(drop), "catalog"),
            _ => (r.aux_get(AUX_NS, b"cursor").map(drop), "aux"),
        };
        assert!(is_corrupt_record(&got, table_name), "{table_name}: {got:?}");
    }
    Ok(())
}

/// A damaged byte in one document's storage key: the default open refuses the file;
/// with `verify_on_open(false)` (trusted storage only) the document can go missing from
/// reads but is never replaced by another. Pinned so a change in either is noticed.
#[test]
fn a_damaged_document_key_is_refused_at_open_and_can_only_hide_data_without_verification()
-> Result<()> {
    let p = build_pristine()?;
    let (work, dir) = fresh_copy(&p);
    let doc = Document::new().with("k", 1i64);
    let key = insert_and_find_key(&dir, NAME, "notes", doc.clone());
    let notes = common::open(work.path(), NAME)?.collection("notes").all()?;
    let mut data = fs::read(dir.join(DATA_FILE)).expect("read");
    // Every copy of the key (live leaf page; older pages may hold it too).
    let at: Vec<usize> = (0..data.len() - key.len())
        .filter(|&i| data[i..].starts_with(&key))
        .collect();
    at.iter().for_each(|&i| data[i] ^= 0x01); // the collection-tag part of the key
    fs::write(dir.join(DATA_FILE), &data).expect("write");
    let db = common::fast()
        .verify_on_open(false)
        .open(work.path(), NAME, PASSWORD)?;
    let (got, all) = (
        db.collection("notes").get(doc.id),
        db.collection("notes").all(),
    );
    println!(
        "key flipped at {at:?}: get -> {got:?}; all -> {:?} of {}",
        all.as_ref().map(Vec::len),
        notes.len()
    );
    assert!(
        matches!(&got, Ok(Some(d)) if *d == doc) || matches!(got, Ok(None)) || got.is_err(),
        "get: {got:?}"
    );
    assert!(
        matches!(&all, Ok(v) if v.iter().all(|d| notes.contains(d))) || all.is_err(),
        "all returned a document that was not stored: {:?}",
        all.map(|v| v.len())
    );
    drop(db);
    let verified = common::fast().open(work.path(), NAME, PASSWORD);
    assert!(
        matches!(
            verified,
            Err(Error::Corruption {
                site: CorruptionSite::Storage,
                ..
            })
        ),
        "the default open must refuse the damaged file: {verified:?}"
    );
    Ok(())
}

/// Known limitation (docs/security.md, "Rollback"), asserted so a change is noticed:
/// values are sealed to their location, not to a version, so an older sealed value
/// written back at its own key authenticates and reads as current.
#[test]
fn replaying_an_old_sealed_value_at_its_own_key_is_an_undetected_rollback() -> Result<()> {
    let p = build_pristine()?;
    let (work, dir) = fresh_copy(&p);
    let doc = Document::new().with("balance", 100i64);
    let key = insert_and_find_key(&dir, NAME, "notes", doc.clone());
    let old = raw_get(&dir, Table::Docs, &key);
    let db = common::open(work.path(), NAME)?;
    db.collection("notes")
        .patch(doc.id, &Patch::new().set("balance", 0i64))?;
    drop(db);
    raw_edit(&dir, |tx| tx.insert(Table::Docs, &key, &old));
    let db = common::open(work.path(), NAME)?;
    let got = db.collection("notes").get(doc.id)?;
    let log = db.begin_read()?.changes_after(0, usize::MAX)?;
    let last = log.iter().rev().find(|c| c.id == doc.id).map(|c| &c.op);
    println!(
        "KNOWN LIMITATION (rollback): replayed value reads {got:?}; the log's last entry for it: {last:?}"
    );
    assert_eq!(
        got,
        Some(doc),
        "the replayed old version is accepted as current"
    );
    Ok(())
}

/// redb's header byte 9 holds the commit-slot and recovery flags: a flip can point the
/// file at its previous commit slot and ask for crash recovery. Every mask, in both
/// verification modes: a typed error with the files untouched (recovery is tried in
/// memory first), or exactly the data.
#[test]
fn every_flip_of_the_commit_slot_flags_is_refused_untouched_or_reads_exactly() -> Result<()> {
    const FLAGS: usize = 9;
    let p = build_pristine()?;
    for verify in [true, false] {
        let mut tally = Tally {
            tolerate_incomplete: !verify,
            ..Tally::default()
        };
        for mask in 1..=255u8 {
            flip_and_record(&p, verify, FLAGS, mask, &mut tally);
        }
        tally.finish(&format!("commit-slot flag flips, verify_on_open({verify})"));
    }
    Ok(())
}

/// A database killed with commits only in its journal (the files copied while it is
/// open), then its journal damaged: a byte flipped at seeded positions across the
/// journal's frames, or the journal cut short. Frames are checked (XXH3-128), so damage
/// ends the replay at the damaged frame: the database opens and holds exactly the
/// commits before it — a prefix of what was acknowledged, never other data, never a
/// panic. (A damaged journal tail cannot be told from a torn write; docs/security.md.)
#[test]
fn a_damaged_journal_of_a_crashed_database_reads_as_a_prefix_of_its_commits() -> Result<()> {
    const COMMITS: usize = 12;
    let root = tempfile::tempdir().expect("tempdir");
    let db = common::open(root.path(), NAME)?;
    db.collection("notes").insert(varied_doc(0))?;
    // The close checkpoints: the database and its collection are in the data file.
    drop(db);
    let db = common::open(root.path(), NAME)?;
    let notes = db.collection("notes");
    let mut written = vec![notes.all()?.remove(0)];
    for i in 1..=COMMITS {
        let doc = Document::with_id(DocId::new()).with("i", i as i64);
        notes.insert(doc.clone())?;
        written.push(doc);
    }
    let image = common::snapshot_files(&database_path(root.path(), NAME));
    drop(notes);
    drop(db);
    let journal = &image
        .iter()
        .find(|(name, _)| name == "data.redb.journal")
        .expect("a journal beside the data file")
        .1;
    let frames_end = journal.iter().rposition(|&b| b != 0).expect("frames") + 1;
    let mut rng = seeded();
    let mut outcomes = BTreeSet::new();
    let mut tried = 0;
    let damaged = (0..frames_end).step_by(29).map(|pos| {
        let mut j = journal.clone();
        j[pos] ^= mask(&mut rng);
        (format!("byte {pos} flipped"), j)
    });
    // Cut points through the frames, and one past the last frame (all commits; its
    // check could end in zero bytes, which `frames_end` does not count).
    let cut = (0..frames_end)
        .step_by(97)
        .chain([(frames_end + 8).min(journal.len())])
        .map(|len| (format!("cut to {len} bytes"), journal[..len].to_vec()));
    for (what, bytes) in damaged.chain(cut) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_dir = database_path(dir.path(), NAME);
        fs::create_dir_all(&db_dir).expect("mkdir");
        for (name, original) in &image {
            let content = if name == "data.redb.journal" {
                &bytes
            } else {
                original
            };
            fs::write(db_dir.join(name), content).expect("write a file");
        }
        let read = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<Document>> {
            let db = common::open(dir.path(), NAME)?;
            let mut docs = db.collection("notes").all()?;
            docs.sort_by_key(|d| d.get("i").and_then(Value::as_i64).unwrap_or(0));
            Ok(docs)
        }));
        let docs = match read {
            Ok(Ok(docs)) => docs,
            Ok(Err(e)) => panic!("journal {what}: the open failed: {e}"),
            Err(_) => panic!("journal {what}: panicked"),
        };
        assert!(
            docs.len() <= written.len() && docs[..] == written[..docs.len()],
            "journal {what}: reads {} documents that are not a prefix of the commits",
            docs.len()
        );
        outcomes.insert(docs.len());
        tried += 1;
    }
    println!("journal damage: {tried} attempts, documents read back: {outcomes:?}");
    assert!(
        outcomes.contains(&1) && outcomes.contains(&(COMMITS + 1)) && outcomes.len() > 3,
        "damage early, late and in between was tried: {outcomes:?}"
    );
    Ok(())
}
