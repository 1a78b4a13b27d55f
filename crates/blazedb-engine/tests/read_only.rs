//! Read-only opens (`OpenMode::ReadOnly`): they read everything a read-write open reads,
//! refuse every write with `Error::ReadOnly`, leave every file of the database directory
//! byte-identical (also a file a crash left needing recovery), and share the database
//! with other read-only handles but never with a read-write one, in this process or
//! another.

mod common;

use std::path::Path;
use std::process::Command;

use blazedb_engine::internal::SyncDatabase;
use blazedb_engine::{
    Database, Document, Error, Filter, ImportOptions, IndexSpec, KdfParams, OpenMode, Patch, Query,
    Result, database_path,
};
use common::{Contents, assert_unchanged, contents, snapshot_files};

const NAME: &str = "db";
const COLLS: [&str; 2] = ["notes", "people"];

fn read_only(dir: &Path) -> Result<Database> {
    common::fast()
        .mode(OpenMode::ReadOnly)
        .open(dir, NAME, common::PASSWORD)
}

/// Creates database `NAME` in `dir`: documents in two collections, an index, a patch
/// and a delete in the change log; closes it and returns its contents.
fn populated(dir: &Path) -> Result<Contents> {
    let db = common::open(dir, NAME)?;
    db.create_index(&IndexSpec::new("by_n", "notes", &["n"]))?;
    for i in 0..30i64 {
        let doc = Document::new().with("n", i).with("s", format!("v{i}"));
        db.collection(COLLS[(i % 2) as usize]).insert(doc)?;
    }
    let id = db
        .collection("notes")
        .insert(Document::new().with("n", 100i64))?;
    db.collection("notes")
        .patch(id, &Patch::new().set("m", 1i64))?;
    let gone = db.collection("people").insert(Document::new())?;
    db.collection("people").delete(gone)?;
    contents(&db, &COLLS)
}

fn indexed_query() -> Result<Query> {
    Ok(Query::new("notes").filter(Filter::ge("n", 20i64)?))
}

#[test]
fn a_read_only_open_reads_everything_and_leaves_every_file_byte_identical() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path())?;
    let expected_hits = common::open(dir.path(), NAME)?
        .begin_read()?
        .query(&indexed_query()?)?;
    assert!(!expected_hits.is_empty());
    let path = database_path(dir.path(), NAME);
    let files = snapshot_files(&path);
    for verify in [true, false] {
        let db = common::fast()
            .mode(OpenMode::ReadOnly)
            .verify_on_open(verify)
            .open(dir.path(), NAME, common::PASSWORD)?;
        assert!(db.is_read_only());
        assert_eq!(contents(&db, &COLLS)?, expected);
        let r = db.begin_read()?;
        assert_eq!(r.query(&indexed_query()?)?, expected_hits);
        assert!(r.explain(&indexed_query()?)?.to_string().contains("by_n"));
        assert_eq!(r.indexes()?.len(), 1);
        let mut export = Vec::new();
        db.export_ndjson(&mut export, None)?;
        assert!(!export.is_empty());
        db.flush()?;
        let backups = tempfile::tempdir().expect("tempdir");
        db.backup_to(backups.path(), "copy")?;
        drop((r, db));
        assert_unchanged(&path, &files, "a read-only open and its reads");
        let copy = common::open(backups.path(), "copy")?;
        assert_eq!(
            contents(&copy, &COLLS)?,
            expected,
            "the backup of a read-only handle"
        );
    }
    Ok(())
}

#[test]
fn every_write_on_a_read_only_handle_fails_with_read_only_and_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path())?;
    let path = database_path(dir.path(), NAME);
    let files = snapshot_files(&path);
    let db = read_only(dir.path())?;
    let id = expected.docs[0].1[0].id;
    let refused = |what: &str, r: Result<()>| match r {
        Err(Error::ReadOnly { path: p }) => assert_eq!(p, path, "{what}"),
        other => panic!("{what}: expected Error::ReadOnly, got {other:?}"),
    };
    refused("begin_write", db.begin_write().map(drop));
    refused("begin_apply", db.begin_apply().map(drop));
    refused(
        "insert",
        db.collection("notes").insert(Document::new()).map(drop),
    );
    refused(
        "patch",
        db.collection("notes")
            .patch(id, &Patch::new().set("x", 1i64))
            .map(drop),
    );
    refused("delete", db.collection("notes").delete(id).map(drop));
    refused(
        "create_index",
        db.create_index(&IndexSpec::new("other", "people", &["n"]))
            .map(drop),
    );
    refused("drop_index", db.drop_index("by_n").map(drop));
    let line =
        "{\"collection\":\"x\",\"fields\":{},\"id\":\"01900000-0000-7000-8000-000000000001\"}\n";
    refused(
        "import",
        db.import_ndjson(&mut line.as_bytes(), ImportOptions::default())
            .map(drop),
    );
    refused("change_password", db.change_password("new password"));
    refused(
        "change_password_with",
        db.change_password_with("new password", KdfParams::INSECURE_FAST),
    );
    // The refusals left the handle usable and the data as it was.
    assert_eq!(contents(&db, &COLLS)?, expected);
    drop(db);
    assert_unchanged(&path, &files, "refused writes");
    // The old password still opens it: the key file was not touched.
    let db = common::open(dir.path(), NAME)?;
    assert_eq!(contents(&db, &COLLS)?, expected);
    Ok(())
}

#[test]
fn a_read_only_open_with_a_wrong_password_or_of_a_missing_database_changes_and_creates_nothing()
-> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path())?;
    let path = database_path(dir.path(), NAME);
    let files = snapshot_files(&path);
    let r = common::fast()
        .mode(OpenMode::ReadOnly)
        .open(dir.path(), NAME, "wrong");
    assert!(matches!(r, Err(Error::WrongPassword)), "{r:?}");
    assert_unchanged(&path, &files, "a refused read-only open");
    let r = common::fast()
        .mode(OpenMode::ReadOnly)
        .open(dir.path(), "absent", common::PASSWORD);
    assert!(matches!(r, Err(Error::DatabaseNotFound { .. })), "{r:?}");
    assert_eq!(
        common::dir_entries(dir.path()),
        vec![format!("{NAME}.blazedb")]
    );
    Ok(())
}

#[test]
fn read_only_handles_share_a_database_that_a_read_write_handle_holds_alone() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path())?;
    let path = database_path(dir.path(), NAME);
    let files = snapshot_files(&path);
    let first = read_only(dir.path())?;
    let second = read_only(dir.path())?;
    assert_eq!(contents(&second, &COLLS)?, expected);
    let r = common::open(dir.path(), NAME);
    assert!(matches!(r, Err(Error::AlreadyOpen { .. })), "{r:?}");
    drop(first);
    let r = common::open(dir.path(), NAME);
    assert!(
        matches!(r, Err(Error::AlreadyOpen { .. })),
        "a writer waits for the last reader: {r:?}"
    );
    drop(second);
    assert_unchanged(&path, &files, "readers and a refused writer");
    let writer = common::open(dir.path(), NAME)?;
    let r = read_only(dir.path());
    assert!(matches!(r, Err(Error::AlreadyOpen { .. })), "{r:?}");
    drop(writer);
    read_only(dir.path())?;
    Ok(())
}

/// Set in a child process: the directory and the mode (`ro` or `rw`) to open with.
const CHILD_ENV: &str = "BLAZEDB_READ_ONLY_CHILD";
const CHILD_TEST: &str = "child_helper_reports_whether_it_can_open_the_parents_database";

/// Not a test on its own: the body of the child process of the cross-process test. It
/// returns at once unless that test started it.
#[test]
fn child_helper_reports_whether_it_can_open_the_parents_database() {
    let Some(arg) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let arg = arg.to_string_lossy().into_owned();
    let (mode, dir) = arg.split_once(':').expect("MODE:DIR");
    let opened = match mode {
        "ro" => read_only(Path::new(dir)),
        _ => common::open(Path::new(dir), NAME),
    };
    let outcome = match opened {
        Ok(_) => "opened".to_owned(),
        Err(Error::AlreadyOpen { .. }) => "already-open".to_owned(),
        Err(e) => format!("error: {e:?}"),
    };
    println!("CHILD-OUTCOME: {outcome}");
}

/// Runs this test binary again, as only [`CHILD_TEST`], opening `dir` with `mode`
/// (`ro` or `rw`), and returns what it reported.
fn open_in_child_process(mode: &str, dir: &Path) -> String {
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
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
fn across_processes_readers_coexist_and_a_writer_excludes_readers_and_is_excluded_by_them()
-> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path())?;
    let path = database_path(dir.path(), NAME);
    let writer = common::open(dir.path(), NAME)?;
    assert_eq!(open_in_child_process("ro", dir.path()), "already-open");
    drop(writer);
    let files = snapshot_files(&path);
    let reader = read_only(dir.path())?;
    assert_eq!(open_in_child_process("ro", dir.path()), "opened");
    assert_eq!(open_in_child_process("rw", dir.path()), "already-open");
    drop(reader);
    assert_unchanged(
        &path,
        &files,
        "readers in two processes and refused openers",
    );
    assert_eq!(open_in_child_process("rw", dir.path()), "opened");
    Ok(())
}

#[test]
fn a_database_a_crash_left_opens_read_only_with_every_durable_commit_and_stays_as_it_was()
-> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path())?;
    let live = common::open(dir.path(), NAME)?;
    // A copy of the directory taken while a read-write handle has it open is what a
    // crash (power loss aside) would leave: its data file needs recovery.
    let crashed = tempfile::tempdir().expect("tempdir");
    let copy = database_path(crashed.path(), NAME);
    std::fs::create_dir(&copy).expect("mkdir");
    for entry in std::fs::read_dir(database_path(dir.path(), NAME)).expect("read_dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
    }
    drop(live);
    let needs = blazedb_storage::Store::peek(
        &copy.join("data.redb"),
        blazedb_storage::Table::Meta,
        &[b"format"],
    );
    assert!(
        matches!(needs, Err(blazedb_storage::StorageError::NeedsRecovery)),
        "the copy needs recovery: {:?}",
        needs.map(|_| ())
    );
    let files = snapshot_files(&copy);
    let db = read_only(crashed.path())?;
    assert_eq!(contents(&db, &COLLS)?, expected);
    drop(db);
    assert_unchanged(&copy, &files, "reading a file that needs recovery");
    // The next read-write open recovers it for good.
    let db = common::open(crashed.path(), NAME)?;
    assert_eq!(contents(&db, &COLLS)?, expected);
    Ok(())
}
