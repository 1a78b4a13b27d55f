//! The users file: sealing, round trips, refusals.

use super::*;

#[test]
fn users_round_trip_sealed_and_only_keys_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(USERS_FILE);
    let mut f = UserFile::open_or_new(&path, b"pw", KdfParams::INSECURE_FAST).expect("new");
    let alice = f.add("alice", Permissions::read_write()).expect("add");
    let ro = Permissions {
        write: false,
        collections: Some(vec!["notes".into()]),
    };
    f.add("bob", ro.clone()).expect("add");
    f.save().expect("save");
    let bytes = std::fs::read(&path).expect("read");
    for needle in [b"alice".as_slice(), b"notes", alice.as_bytes()] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "nothing in plaintext"
        );
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let g = UserFile::open(&path, b"pw").expect("open").expect("exists");
    let names: Vec<_> = g.list().into_iter().map(|u| (u.name, u.perms)).collect();
    assert_eq!(
        names,
        vec![
            ("alice".into(), Permissions::read_write()),
            ("bob".into(), ro)
        ]
    );
    let e = UserFile::open(&path, b"wrong").expect_err("wrong password");
    assert!(e.to_string().contains("password"), "{e}");
}

#[test]
fn names_are_checked_and_unique() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = UserFile::open_or_new(
        &dir.path().join(USERS_FILE),
        b"pw",
        KdfParams::INSECURE_FAST,
    )
    .expect("new");
    f.add("alice", Permissions::read_write()).expect("add");
    for bad in ["alice", "@shared", "a b", ""] {
        assert!(f.add(bad, Permissions::read_write()).is_err(), "{bad:?}");
    }
    let empty = Permissions {
        write: true,
        collections: Some(Vec::new()),
    };
    assert!(f.add("carol", empty).is_err(), "an empty collection list");
    assert!(f.revoke("alice"));
    assert!(!f.revoke("alice"));
    f.add("alice", Permissions::read_write())
        .expect("a revoked name can be given again");
}

#[test]
fn a_directory_sees_revocation_on_refresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(USERS_FILE);
    let mut f = UserFile::open_or_new(&path, b"pw", KdfParams::INSECURE_FAST).expect("new");
    f.add("alice", Permissions::read_write()).expect("add");
    f.save().expect("save");
    let d = UserDirectory::open(&path, b"pw").expect("open");
    let id = d.lookup("alice").expect("alice").id;
    assert!(d.is_current("alice", id));
    assert!(!d.refresh().expect("refresh"), "unchanged");
    let mut f = UserFile::open(&path, b"pw").expect("open").expect("exists");
    assert!(f.revoke("alice"));
    f.save().expect("save");
    assert!(d.refresh().expect("refresh"));
    assert!(!d.is_current("alice", id));
    assert!(d.lookup("alice").is_none());
}

#[test]
fn a_change_made_through_a_file_opened_before_another_change_keeps_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = saved_empty_list(dir.path());
    // Two administrators open the list, each before the other's change.
    let mut a = UserFile::open(&path, b"pw").expect("open").expect("exists");
    let mut b = UserFile::open(&path, b"pw").expect("open").expect("exists");
    a.modify(|f| f.add("alice", Permissions::read_write()))
        .expect("add alice");
    b.modify(|f| f.add("bob", Permissions::read_write()))
        .expect("add bob");
    let names: Vec<String> = UserFile::open(&path, b"pw")
        .expect("open")
        .expect("exists")
        .list()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"], "bob's change kept alice's");
    // A change that fails writes nothing.
    let e = b
        .modify(|f| f.add("alice", Permissions::read_write()))
        .expect_err("alice exists");
    assert!(e.to_string().contains("exists"), "{e}");
}

#[test]
fn changes_to_one_file_from_many_programs_at_once_are_all_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = saved_empty_list(dir.path());
    // Each thread stands for a `user add` run: its own open of the file, then a change.
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut f = UserFile::open(&path, b"pw").expect("open").expect("exists");
                f.modify(|f| f.add(&format!("user{i}"), Permissions::read_write()))
                    .expect("add");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let f = UserFile::open(&path, b"pw").expect("open").expect("exists");
    assert_eq!(f.list().len(), 8, "no change lost");
}

/// A users file with no user yet, in `dir`.
fn saved_empty_list(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join(USERS_FILE);
    UserFile::open_or_new(&path, b"pw", KdfParams::INSECURE_FAST)
        .expect("new")
        .save()
        .expect("save");
    path
}
