//! Refusals: a wrong password, a second opener (same process or another), bad names and
//! values, the wrong open mode. Each is a typed error and leaves the database exactly as
//! it was. Also: password changes and online backups keep the data intact.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use blazedb_core::limits::DOCUMENT_BYTES_MAX;
use blazedb_engine::{
    CorruptionSite, DocId, Document, Error, KdfParams, NameKind, OpenMode, Patch, Result, Value,
    database_path,
};
use common::{Contents, assert_unchanged, contents, dir_entries, snapshot_files};

const NAME: &str = "db";
const COLLS: [&str; 2] = ["notes", "people"];

/// Creates database `NAME` in `dir` with documents in two collections (inserts and a
/// patch in the change log), closes it, and returns its contents.
fn populated(dir: &Path) -> Result<Contents> {
    let db = common::open(dir, NAME)?;
    for i in 0..20i64 {
        let doc = Document::new().with("n", i).with("s", format!("v{i}"));
        db.collection(COLLS[(i % 2) as usize]).insert(doc)?;
    }
    let id = db
        .collection("notes")
        .insert(Document::new().with("n", 100i64))?;
    db.collection("notes")
        .patch(id, &Patch::new().set("m", 1i64))?;
    contents(&db, &COLLS)
}

#[test]
fn a_wrong_password_is_refused_without_modifying_any_file() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path())?;
    let path = database_path(dir.path(), NAME);
    let (files, entries) = (snapshot_files(&path), dir_entries(dir.path()));
    for verify in [true, false] {
        let r = common::fast()
            .verify_on_open(verify)
            .open(dir.path(), NAME, "not the password");
        assert!(matches!(r, Err(Error::WrongPassword)), "{r:?}");
    }
    assert_unchanged(&path, &files, "every file byte-identical");
    assert_eq!(
        dir_entries(dir.path()),
        entries,
        "nothing created beside it"
    );
    let db = common::open(dir.path(), NAME)?;
    assert_eq!(
        contents(&db, &COLLS)?,
        expected,
        "the right password still works"
    );
    Ok(())
}

#[test]
fn an_empty_password_is_invalid_and_creates_or_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = common::open_with_password(dir.path(), "fresh", "");
    assert!(matches!(r, Err(Error::InvalidValue { .. })), "{r:?}");
    assert!(dir_entries(dir.path()).is_empty(), "no database created");
    populated(dir.path())?;
    let files = snapshot_files(&database_path(dir.path(), NAME));
    let r = common::open_with_password(dir.path(), NAME, "");
    assert!(matches!(r, Err(Error::InvalidValue { .. })), "{r:?}");
    assert_unchanged(&database_path(dir.path(), NAME), &files, "empty password");
    Ok(())
}

#[test]
fn invalid_database_names_are_refused_before_anything_is_created() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("inner");
    std::fs::create_dir(&dir).expect("mkdir");
    let long = "a".repeat(65);
    let names = [
        "",
        "../x",
        "a/b",
        long.as_str(),
        ".hidden",
        "-x",
        "a b",
        "ü",
        "x\0y",
    ];
    for name in names {
        for mode in [OpenMode::OpenOrCreate, OpenMode::CreateNew] {
            let r = common::fast().mode(mode).open(&dir, name, common::PASSWORD);
            assert!(
                matches!(
                    r,
                    Err(Error::InvalidName {
                        kind: NameKind::Database,
                        ..
                    })
                ),
                "{name:?}: {r:?}"
            );
        }
    }
    // "../x" must not have escaped into the parent either.
    assert!(dir_entries(&dir).is_empty(), "{:?}", dir_entries(&dir));
    assert_eq!(dir_entries(base.path()), vec!["inner".to_owned()]);
}

#[test]
fn a_second_opener_in_the_same_process_is_refused_until_every_handle_closes() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path())?;
    let path = database_path(dir.path(), NAME);
    let db = common::open(dir.path(), NAME)?;
    let files = snapshot_files(&path);
    let r = common::open(dir.path(), NAME);
    assert!(
        matches!(&r, Err(Error::AlreadyOpen { path: p }) if *p == path),
        "{r:?}"
    );
    // The lock is checked before the password: a held database answers nothing else.
    let r = common::open_with_password(dir.path(), NAME, "wrong");
    assert!(matches!(r, Err(Error::AlreadyOpen { .. })), "{r:?}");
    assert_unchanged(&path, &files, "refused openers modified nothing");
    // A clone is the same handle: the database stays held until the last one drops.
    let clone = db.clone();
    drop(db);
    let r = common::open(dir.path(), NAME);
    assert!(matches!(r, Err(Error::AlreadyOpen { .. })), "{r:?}");
    drop(clone);
    let db = common::open(dir.path(), NAME)?;
    assert_eq!(contents(&db, &COLLS)?, expected);
    Ok(())
}

/// Set in a child process: the database directory to try to open.
const CHILD_ENV: &str = "BLAZEDB_ERRORS_CHILD_DIR";
const CHILD_TEST: &str = "child_helper_reports_whether_it_can_open_the_parents_database";

/// Not a test on its own: the body of the child process of the cross-process test. It
/// returns at once unless that test started it.
#[test]
fn child_helper_reports_whether_it_can_open_the_parents_database() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let outcome = match common::open(Path::new(&dir), NAME) {
        Ok(_) => "opened".to_owned(),
        Err(Error::AlreadyOpen { .. }) => "already-open".to_owned(),
        Err(e) => format!("error: {e:?}"),
    };
    println!("CHILD-OUTCOME: {outcome}");
}

/// Runs this test binary again, as only [`CHILD_TEST`], and returns what it reported.
fn open_in_child_process(dir: &Path) -> String {
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-OUTCOME: ").map(|(_, outcome)| outcome))
        .unwrap_or_else(|| panic!("child reported nothing: {stdout}"))
        .to_owned()
}

#[test]
fn a_second_opener_in_another_process_is_refused_until_the_first_closes() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path())?;
    let path = database_path(dir.path(), NAME);
    let db = common::open(dir.path(), NAME)?;
    let files = snapshot_files(&path);
    assert_eq!(open_in_child_process(dir.path()), "already-open");
    assert_unchanged(&path, &files, "the refused opener modified nothing");
    drop(db);
    assert_eq!(open_in_child_process(dir.path()), "opened");
    Ok(())
}

#[test]
fn create_new_on_an_existing_database_is_refused_and_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path())?;
    let path = database_path(dir.path(), NAME);
    let files = snapshot_files(&path);
    let r = common::fast()
        .mode(OpenMode::CreateNew)
        .open(dir.path(), NAME, common::PASSWORD);
    assert!(
        matches!(&r, Err(Error::DatabaseExists { path: p }) if *p == path),
        "{r:?}"
    );
    assert_unchanged(&path, &files, "create-new");
    Ok(())
}

#[test]
fn open_existing_on_a_missing_database_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = common::fast()
        .mode(OpenMode::OpenExisting)
        .open(dir.path(), NAME, common::PASSWORD);
    let path = database_path(dir.path(), NAME);
    assert!(
        matches!(&r, Err(Error::DatabaseNotFound { path: p }) if *p == path),
        "{r:?}"
    );
    assert!(
        dir_entries(dir.path()).is_empty(),
        "{:?}",
        dir_entries(dir.path())
    );
}

/// Currently FAILS (reported bug): `open_existing` opens the data file read-write (with
/// the open-time check, redb repairs and commits) before checking the format record, so
/// a refused open rewrites the file.
#[test]
fn a_data_file_of_another_database_is_refused_without_modifying_it() -> Result<()> {
    let (dir, other) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    populated(dir.path())?;
    populated(other.path())?;
    let path = database_path(dir.path(), NAME);
    let foreign = database_path(other.path(), NAME).join("data.redb");
    std::fs::copy(foreign, path.join("data.redb")).expect("copy data file");
    let files = snapshot_files(&path);
    for verify in [true, false] {
        let r = common::fast()
            .verify_on_open(verify)
            .open(dir.path(), NAME, common::PASSWORD);
        let mismatch = matches!(
            r,
            Err(Error::Corruption {
                site: CorruptionSite::KeyMismatch,
                ..
            })
        );
        assert!(mismatch, "{r:?}");
        assert_unchanged(
            &path,
            &files,
            &format!("refused open, verify_on_open({verify})"),
        );
    }
    Ok(())
}

#[test]
fn rejected_writes_leave_the_documents_and_change_log_unchanged() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = populated(dir.path())?;
    let db = common::open(dir.path(), NAME)?;
    let c = db.collection("notes");
    let existing = before.docs[0].1[0].clone();
    let missing = DocId::new();
    let mut deep = Value::Null;
    for _ in 0..40 {
        deep = Value::Array(vec![deep]);
    }
    let huge = || vec![0u8; DOCUMENT_BYTES_MAX + 1];
    let field = |name: &str| Document::new().with(name, 1i64);
    // Each call must fail with the given error, before touching storage.
    macro_rules! refused {
        ($call:expr, $err:pat) => {{
            let r = $call.map(drop);
            assert!(matches!(r, Err($err)), "{}: {r:?}", stringify!($call));
        }};
    }
    refused!(c.insert(field("a.b")), Error::InvalidName { .. });
    refused!(c.insert(field("$x")), Error::InvalidName { .. });
    refused!(c.insert(field("")), Error::InvalidName { .. });
    refused!(c.insert(field("a\nb")), Error::InvalidName { .. });
    refused!(c.insert(field(&"f".repeat(257))), Error::InvalidName { .. });
    refused!(
        db.collection("a/b").insert(field("x")),
        Error::InvalidName { .. }
    );
    refused!(
        c.patch(existing.id, &Patch::new().unset("a.b")),
        Error::InvalidName { .. }
    );
    refused!(
        c.insert(Document::new().with("d", deep.clone())),
        Error::InvalidValue { .. }
    );
    refused!(
        c.patch(existing.id, &Patch::new().set("d", deep)),
        Error::InvalidValue { .. }
    );
    let both = Patch::new().set("x", 1i64).unset("x");
    refused!(c.patch(existing.id, &both), Error::InvalidValue { .. });
    refused!(
        c.insert(Document::new().with("b", huge())),
        Error::TooLarge { .. }
    );
    refused!(
        c.put(Document::with_id(existing.id).with("b", huge())),
        Error::TooLarge { .. }
    );
    refused!(
        c.patch(missing, &Patch::new().set("a", 1i64)),
        Error::NotFound { .. }
    );
    refused!(c.delete(missing), Error::NotFound { .. });
    refused!(c.insert(existing.clone()), Error::AlreadyExists { .. });
    // Batches are atomic: the valid part of a failing batch is not written either.
    refused!(
        c.insert_many([field("ok"), field("a.b")]),
        Error::InvalidName { .. }
    );
    refused!(
        c.delete_many([existing.id, missing]),
        Error::NotFound { .. }
    );
    assert_eq!(
        contents(&db, &COLLS)?,
        before,
        "nothing written, nothing logged"
    );
    drop(db);
    let db = common::open(dir.path(), NAME)?;
    assert_eq!(contents(&db, &COLLS)?, before, "still so after reopening");
    Ok(())
}

#[test]
fn change_password_retires_the_old_one_keeps_the_data_and_can_raise_the_kdf() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path())?;
    let key_file = database_path(dir.path(), NAME).join("blazedb.key");
    let db = common::open(dir.path(), NAME)?;
    db.change_password("second")?;
    drop(db);
    let r = common::open(dir.path(), NAME);
    assert!(
        matches!(r, Err(Error::WrongPassword)),
        "old password: {r:?}"
    );
    let db = common::open_with_password(dir.path(), NAME, "second")?;
    assert_eq!(contents(&db, &COLLS)?, expected);
    assert_eq!(db.kdf_params(), KdfParams::INSECURE_FAST);
    let stronger = KdfParams {
        memory_kib: 64,
        iterations: 3,
        parallelism: 1,
    };
    db.change_password_with("third", stronger)?;
    assert_eq!(db.kdf_params(), stronger);
    // Refused changes leave the key file as it was.
    let key_bytes = std::fs::read(&key_file).expect("read key file");
    let r = db.change_password("");
    assert!(matches!(r, Err(Error::InvalidValue { .. })), "{r:?}");
    let bad = KdfParams {
        iterations: 0,
        ..stronger
    };
    let r = db.change_password_with("fourth", bad);
    assert!(matches!(r, Err(Error::InvalidValue { .. })), "{r:?}");
    assert_eq!(std::fs::read(&key_file).expect("read key file"), key_bytes);
    drop(db);
    let r = common::open_with_password(dir.path(), NAME, "second");
    assert!(
        matches!(r, Err(Error::WrongPassword)),
        "second password: {r:?}"
    );
    let db = common::open_with_password(dir.path(), NAME, "third")?;
    assert_eq!(db.kdf_params(), stronger, "the raised cost is stored");
    assert_eq!(contents(&db, &COLLS)?, expected);
    Ok(())
}

/// One transaction of the backup test's writer: a pair of documents (same id in "a" and
/// "b") and a transfer between two counters, so a partial transaction is visible.
fn transfer(db: &blazedb_engine::Database, k: i64, acct: [DocId; 2]) -> Result<()> {
    let mut tx = db.begin_write()?;
    let id = DocId::new();
    tx.insert("a", Document::with_id(id).with("k", k))?;
    tx.insert("b", Document::with_id(id).with("k", k))?;
    tx.patch("bank", acct[0], &Patch::new().set("v", -k))?;
    tx.patch("bank", acct[1], &Patch::new().set("v", k))?;
    tx.commit()
}

/// The backup's transactions are whole: pairs complete, counters balanced and matching.
fn assert_whole_transactions(b: &Contents) {
    let docs = |name: &str| {
        let docs = &b
            .docs
            .iter()
            .find(|(n, _)| n == name)
            .expect("collection")
            .1;
        docs.iter().map(|d| d.id).collect::<Vec<_>>()
    };
    let (a, bb) = (docs("a"), docs("b"));
    assert_eq!(a, bb, "every pair whole");
    let bank = &b.docs.iter().find(|(n, _)| n == "bank").expect("bank").1;
    let v: Vec<i64> = bank.iter().filter_map(|d| d.get("v")?.as_i64()).collect();
    assert_eq!(v.iter().sum::<i64>(), 0, "transfer balanced: {v:?}");
    assert_eq!(
        v.iter().max().copied(),
        Some(a.len() as i64),
        "counters match the pairs"
    );
}

#[test]
fn a_backup_taken_during_writes_opens_with_the_password_and_holds_whole_transactions() -> Result<()>
{
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = dir.path().join("backups");
    let db = common::open(dir.path(), NAME)?;
    let acct = [DocId::new(), DocId::new()];
    for id in acct {
        db.collection("bank")
            .insert(Document::with_id(id).with("v", 0i64))?;
    }
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let names = ["a", "b", "bank"];
    let taken = std::thread::scope(|s| -> Result<Vec<Contents>> {
        let writer = s.spawn(|| -> Result<i64> {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                transfer(&db, k, acct)?;
                let _ = tx.send(k);
            }
            Ok(k)
        });
        // Start once the writer is under way; it keeps writing until the backups are done.
        let backups_during = || -> Result<Vec<Contents>> {
            for _ in 0..5 {
                rx.recv().expect("writer running");
            }
            let mut taken = Vec::new();
            for i in 0..3 {
                let name = format!("during{i}");
                db.backup_to(&backups, &name)?;
                taken.push(contents(&common::open(&backups, &name)?, &names)?);
            }
            Ok(taken)
        };
        let taken = backups_during();
        stop.store(true, Ordering::Relaxed);
        let total = writer.join().expect("writer panicked")?;
        let taken = taken?;
        let sizes: Vec<_> = taken.iter().map(|c| c.changes.len()).collect();
        println!("writer committed {total} transactions; the backups hold {sizes:?} changes");
        Ok(taken)
    })?;
    let source = contents(&db, &names)?;
    for b in &taken {
        assert_whole_transactions(b);
        // A backup is the source as of one commit: its change log is a prefix.
        assert_eq!(b.changes[..], source.changes[..b.changes.len()]);
    }
    // Quiescent: the backup is identical.
    db.backup_to(&backups, "after")?;
    assert_eq!(contents(&common::open(&backups, "after")?, &names)?, source);
    let r = db.backup_to(&backups, "after");
    assert!(matches!(r, Err(Error::DatabaseExists { .. })), "{r:?}");
    let r = db.backup_to(&backups, "../escape");
    assert!(matches!(r, Err(Error::InvalidName { .. })), "{r:?}");
    let entries = ["after", "during0", "during1", "during2"].map(|n| format!("{n}.blazedb"));
    assert_eq!(
        dir_entries(&backups),
        entries,
        "no leftovers from refused backups"
    );
    Ok(())
}

#[test]
fn a_database_whose_key_file_is_gone_says_so_and_is_neither_missing_nor_recreated() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = populated(dir.path())?;
    let key = database_path(dir.path(), NAME).join("blazedb.key");
    let saved = std::fs::read(&key).expect("read the key file");
    std::fs::remove_file(&key).expect("remove the key file");
    for mode in [
        OpenMode::OpenExisting,
        OpenMode::ReadOnly,
        OpenMode::CreateNew,
        OpenMode::OpenOrCreate,
    ] {
        match common::fast()
            .mode(mode)
            .open(dir.path(), NAME, common::PASSWORD)
        {
            Err(Error::Corruption {
                site: CorruptionSite::KeyFile,
                detail,
            }) => assert!(
                detail.contains("blazedb.key is missing"),
                "{mode:?}: {detail}"
            ),
            other => panic!("{mode:?}: expected the missing key file, got {other:?}"),
        }
    }
    std::fs::write(&key, saved).expect("restore the key file");
    let db = common::open(dir.path(), NAME)?;
    assert_eq!(
        contents(&db, &COLLS)?,
        before,
        "restoring the key file gives the data back"
    );
    Ok(())
}
