//! What the CLI creates only its owner may read: a new database (and the directories
//! made for it) and a backup are 0700 directories of 0600 files, `export -o` writes a
//! 0600 file.
#![cfg(unix)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::Scratch;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[track_caller]
fn assert_private_database(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for name in ["LOCK", "blazedb.key", "data.redb"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
}

#[test]
fn databases_backups_and_exports_are_created_readable_by_the_owner_only() {
    let s = Scratch::new();
    s.create("data/main", None);
    assert_eq!(mode(&s.path("data")), 0o700);
    assert_private_database(&s.path("data/main.blazedb"));
    s.on("data/main", &["insert", "t", r#"{"secret": "x"}"#])
        .json();
    s.on("data/main", &["export", "-o", "out.ndjson"]).json();
    assert_eq!(mode(&s.path("out.ndjson")), 0o600);
    s.on("data/main", &["backup", "backups/daily/copy"]).json();
    assert_eq!(mode(&s.path("backups")), 0o700);
    assert_eq!(mode(&s.path("backups/daily")), 0o700);
    assert_private_database(&s.path("backups/daily/copy.blazedb"));
}
