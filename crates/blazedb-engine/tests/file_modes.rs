//! File modes: what BlazeDB creates only its owner may read — directories 0700, files
//! 0600, from their creation on — and what exists keeps its mode.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use blazedb_engine::{Document, Result, database_path};

const NAME: &str = "db";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Asserts `db_dir` is 0700 and every file in it 0600, and that it holds exactly the
/// files of a database: with the commit journal once it has been written to (a backup is
/// written durably into its data file and has none).
#[track_caller]
fn assert_private(db_dir: &Path, journal: bool) {
    assert_eq!(mode(db_dir), 0o700, "{}", db_dir.display());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(db_dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(mode(&entry.path()), 0o600, "{name}");
        names.push(name);
    }
    names.sort();
    let mut expected = vec!["LOCK", "blazedb.key", "data.redb"];
    if journal {
        expected.push("data.redb.journal");
    }
    assert_eq!(names, expected);
}

#[test]
fn a_new_database_and_the_directories_created_for_it_are_private_to_the_owner() -> Result<()> {
    let base = tempfile::tempdir().expect("tempdir");
    let parent = base.path().join("a/b");
    let db = common::open(&parent, NAME)?;
    db.collection("t").insert(Document::new().with("k", 1i64))?;
    drop(db);
    // The database directory is the creation directory renamed into place.
    assert_private(&database_path(&parent, NAME), true);
    assert_eq!(mode(&base.path().join("a")), 0o700);
    assert_eq!(mode(&parent), 0o700);
    Ok(())
}

#[test]
fn a_backup_and_the_directories_created_for_it_are_private_to_the_owner() -> Result<()> {
    let base = tempfile::tempdir().expect("tempdir");
    let db = common::open(base.path(), NAME)?;
    db.collection("t").insert(Document::new())?;
    let target = base.path().join("backups/daily");
    db.backup_to(&target, "copy")?;
    assert_private(&database_path(&target, "copy"), false);
    assert_eq!(mode(&base.path().join("backups")), 0o700);
    assert_eq!(mode(&target), 0o700);
    // An existing target directory keeps its mode.
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    set_mode(&shared, 0o755);
    db.backup_to(&shared, "copy")?;
    assert_eq!(mode(&shared), 0o755);
    assert_private(&database_path(&shared, "copy"), false);
    Ok(())
}

#[test]
fn a_password_change_writes_a_0600_key_file_even_over_a_stale_temporary_file() -> Result<()> {
    let base = tempfile::tempdir().expect("tempdir");
    let db = common::open(base.path(), NAME)?;
    let path = database_path(base.path(), NAME);
    let key = path.join("blazedb.key");
    // A key file of an older release, and a temporary file a crash left, both 0644.
    set_mode(&key, 0o644);
    let stale = path.join("blazedb.tmp");
    std::fs::write(&stale, b"left by a crash").expect("write");
    set_mode(&stale, 0o644);
    db.change_password("another password")?;
    assert_eq!(mode(&key), 0o600);
    assert!(!stale.exists(), "the temporary file was renamed into place");
    Ok(())
}

#[test]
fn opening_an_existing_database_leaves_the_modes_of_its_files_as_they_were() -> Result<()> {
    let base = tempfile::tempdir().expect("tempdir");
    drop(common::open(base.path(), NAME)?);
    let path = database_path(base.path(), NAME);
    let chosen = [
        ("", 0o750),
        ("data.redb", 0o640),
        ("blazedb.key", 0o640),
        ("LOCK", 0o644),
    ];
    for (file, m) in chosen {
        set_mode(&path.join(file), m);
    }
    let db = common::open(base.path(), NAME)?;
    db.collection("t").insert(Document::new())?;
    drop(db);
    drop(
        common::fast()
            .mode(blazedb_engine::OpenMode::ReadOnly)
            .open(base.path(), NAME, common::PASSWORD)?,
    );
    for (file, m) in chosen {
        assert_eq!(mode(&path.join(file)), m, "{file}");
    }
    Ok(())
}

#[test]
fn a_read_only_open_creates_a_missing_lock_file_0600_and_nothing_else() -> Result<()> {
    let base = tempfile::tempdir().expect("tempdir");
    drop(common::open(base.path(), NAME)?);
    let path = database_path(base.path(), NAME);
    std::fs::remove_file(path.join("LOCK")).expect("remove LOCK");
    let files = common::snapshot_files(&path);
    drop(
        common::fast()
            .mode(blazedb_engine::OpenMode::ReadOnly)
            .open(base.path(), NAME, common::PASSWORD)?,
    );
    assert_eq!(mode(&path.join("LOCK")), 0o600);
    assert_eq!(
        common::changed_files(&path, &files),
        ["LOCK"],
        "only the lock file appeared"
    );
    Ok(())
}
