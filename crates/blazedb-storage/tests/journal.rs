//! The commit journal: what a crash leaves (the data file and its journal, copied while
//! the store is open) holds every commit that returned, torn or damaged journal tails
//! lose only the commits after the damage, stale frames are never replayed, and large
//! transactions and checkpoints put their commits in the data file itself.

mod common;

use std::path::{Path, PathBuf};

use blazedb_storage::{StorageError, Store, StoreOptions, Table};
use common::rows;

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

fn value(i: u32, version: u32) -> Vec<u8> {
    format!("value {i} version {version} ")
        .repeat(8)
        .into_bytes()
}

fn journal_of(data: &Path) -> PathBuf {
    let mut name = data.file_name().expect("file name").to_owned();
    name.push(".journal");
    data.with_file_name(name)
}

/// Copies the data file and its journal (if any) to `to` while the store is open: the
/// files a crash at this instant would leave.
fn crash_image(data: &Path, to: &Path) {
    std::fs::copy(data, to).expect("copy the data file");
    let _ = std::fs::remove_file(journal_of(to));
    if journal_of(data).exists() {
        std::fs::copy(journal_of(data), journal_of(to)).expect("copy the journal");
    }
}

/// Rows after commits `0..n` of [`commit_each`] (commit `i` inserts row `i`).
fn first(n: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n).map(|i| (key(i).to_vec(), value(i, 0))).collect()
}

/// `n` durable commits, commit `i` inserting row `i`.
fn commit_each(store: &Store, n: u32) {
    for i in 0..n {
        let mut w = store.write().expect("write");
        w.insert(Table::Docs, &key(i), &value(i, 0))
            .expect("insert");
        w.commit(true).expect("commit");
    }
}

fn read_only(path: &Path) -> Store {
    Store::open_read_only(path, &StoreOptions::default()).expect("open read-only")
}

#[test]
fn every_commit_that_returned_is_in_what_a_crash_leaves_and_the_open_writes_it_into_the_data_file()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    commit_each(&store, 50);
    let stats = store.group_stats();
    assert_eq!(stats.checkpoints, 0, "small commits go to the journal");
    assert_eq!(stats.durable, stats.commits);
    let crashed = dir.path().join("crashed.redb");
    crash_image(&path, &crashed);
    drop(store);

    assert!(
        matches!(
            Store::peek(&crashed, Table::Docs, &[&key(0)]),
            Err(StorageError::NeedsRecovery)
        ),
        "a file whose journal holds commits is not read without them"
    );
    let reopened = Store::open(&crashed, &StoreOptions::default()).expect("open");
    assert_eq!(rows(&reopened), first(50));
    drop(reopened);
    // The open wrote the commits into the data file durably: without the journal the
    // data file alone has them, and the journal replays nothing more.
    std::fs::remove_file(journal_of(&crashed)).expect("remove the journal");
    assert_eq!(
        Store::peek(&crashed, Table::Docs, &[&key(49)]).expect("peek"),
        vec![Some(value(49, 0))]
    );
}

#[test]
fn a_torn_or_damaged_journal_loses_only_the_commits_from_the_damage_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    // Rows 0..10 have values of one length, so their frames have one size.
    const N: u32 = 10;
    commit_each(&store, N);
    let crashed = dir.path().join("crashed.redb");
    crash_image(&path, &crashed);
    drop(store);
    let journal = std::fs::read(journal_of(&crashed)).expect("read the journal");
    // Frame ends: the journal is a run of same-sized frames (same-sized rows), then zeros.
    let frame = journal
        .iter()
        .rposition(|&b| b != 0)
        .map(|last| (last + 1) / N as usize)
        .expect("frames");
    assert!(frame > 32, "frame of {frame} bytes");
    let (mut cuts, mut flips) = (0, 0);
    for at in (0..frame * N as usize).step_by(7) {
        // Torn at `at`: the frames wholly before it survive.
        std::fs::write(journal_of(&crashed), &journal[..at]).expect("tear");
        assert_eq!(
            rows(&read_only(&crashed)),
            first((at / frame) as u32),
            "journal torn at byte {at}"
        );
        cuts += 1;
        // One byte changed at `at`: the frames before the damaged one survive.
        let mut damaged = journal.clone();
        damaged[at] ^= 0x20;
        std::fs::write(journal_of(&crashed), &damaged).expect("damage");
        assert_eq!(
            rows(&read_only(&crashed)),
            first((at / frame) as u32),
            "journal byte {at} flipped"
        );
        flips += 1;
    }
    assert!(cuts > 50 && flips > 50);
}

/// `journal` (a run of `n` frames of `frame` bytes each, then zeros) with every frame
/// relabelled as written by the versions before XXH3 checks: magic `BZJ1` and the
/// first 16 bytes of SHA-256 over header and payload as the check.
fn as_sha_frames(journal: &[u8], frame: usize, n: usize) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut old = journal.to_vec();
    for f in old.chunks_exact_mut(frame).take(n) {
        assert_eq!(&f[..4], b"BZJ2");
        f[..4].copy_from_slice(b"BZJ1");
        let (body, check) = f.split_at_mut(frame - 16);
        check.copy_from_slice(&Sha256::digest(&*body)[..16]);
    }
    old
}

#[test]
fn a_journal_written_by_the_sha_256_versions_still_replays_and_a_relabelled_frame_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    const N: u32 = 6;
    commit_each(&store, N);
    let crashed = dir.path().join("crashed.redb");
    crash_image(&path, &crashed);
    drop(store);
    let journal = std::fs::read(journal_of(&crashed)).expect("read the journal");
    let frame = insert_frame_len(4, value(0, 0).len());
    // What an older version's crash left: every frame in the old form replays.
    let old = as_sha_frames(&journal, frame, N as usize);
    std::fs::write(journal_of(&crashed), &old).expect("old journal");
    assert_eq!(rows(&read_only(&crashed)), first(N));
    // A frame whose magic names the other hash fails its check: the replay ends there.
    let mut mixed = journal.clone();
    mixed[2 * frame + 3] = b'1';
    std::fs::write(journal_of(&crashed), &mixed).expect("relabelled journal");
    assert_eq!(rows(&read_only(&crashed)), first(2));
    // And an old frame damaged in its payload fails the SHA-256 check.
    let mut damaged = old;
    damaged[3 * frame + 40] ^= 0x01;
    std::fs::write(journal_of(&crashed), &damaged).expect("damaged old journal");
    assert_eq!(rows(&read_only(&crashed)), first(3));
    // The read-write open writes the old frames into the data file too.
    std::fs::write(
        journal_of(&crashed),
        as_sha_frames(&journal, frame, N as usize),
    )
    .expect("old journal");
    let opened = Store::open(&crashed, &StoreOptions::default()).expect("open");
    assert_eq!(rows(&opened), first(N));
}

/// Bytes of a journal frame holding one insert of a `key_len`-byte key and a
/// `value_len`-byte value (docs/format.md: a 32-byte header, the operation, a 16-byte
/// check).
fn insert_frame_len(key_len: usize, value_len: usize) -> usize {
    32 + (2 + 4 + key_len + 4 + value_len) + 16
}

#[test]
fn frames_left_from_before_a_checkpoint_are_never_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    // Epoch 0: frame 0 inserts row 0, frame 1 inserts row 1 (100-byte values).
    for i in 0..2 {
        let mut w = store.write().expect("write");
        w.insert(Table::Docs, &key(i), &[b'a'; 100])
            .expect("insert");
        w.commit(true).expect("commit");
    }
    // A clean close checkpoints: both frames stay in the file, of an older epoch.
    drop(store);
    let store = Store::open(&path, &StoreOptions::default()).expect("reopen");
    // Epoch 1, frame 0: removes row 1 and inserts row 2, sized to end exactly where the
    // old frame 0 ended, so the old frame 1 (sequence 1, the next one expected) follows
    // it whole. Replaying it would bring row 1 back.
    let mut w = store.write().expect("write");
    assert!(w.remove(Table::Docs, &key(1)).expect("remove"));
    w.insert(Table::Docs, &key(2), &[b'b'; 90]).expect("insert");
    w.commit(true).expect("commit");
    let crashed = dir.path().join("crashed.redb");
    crash_image(&path, &crashed);
    drop(store);
    let journal = std::fs::read(journal_of(&crashed)).expect("journal");
    let end = insert_frame_len(4, 100);
    assert_eq!(
        &journal[end..end + 4],
        b"BZJ2",
        "the old frame 1 follows whole"
    );
    let want = vec![
        (key(0).to_vec(), vec![b'a'; 100]),
        (key(2).to_vec(), vec![b'b'; 90]),
    ];
    assert_eq!(rows(&read_only(&crashed)), want);
    assert_eq!(
        rows(&Store::open(&crashed, &StoreOptions::default()).expect("open")),
        want
    );
    assert_eq!(
        rows(&Store::open(&path, &StoreOptions::default()).expect("open")),
        want
    );
}

#[test]
fn a_transaction_too_large_for_a_frame_commits_as_a_checkpoint_into_the_data_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    commit_each(&store, 5);
    let mut w = store.write().expect("write");
    let big = vec![7u8; 300_000];
    for i in 100..105 {
        w.insert(Table::Docs, &key(i), &big).expect("insert");
    }
    w.commit(false).expect("commit");
    assert_eq!(store.group_stats().checkpoints, 1);
    // The data file alone (no journal) holds it and every commit before it.
    let crashed = dir.path().join("crashed.redb");
    std::fs::copy(&path, &crashed).expect("copy the data file only");
    drop(store);
    let mut want = first(5);
    want.extend((100..105).map(|i| (key(i).to_vec(), big.clone())));
    assert_eq!(rows(&read_only(&crashed)), want);
}

#[test]
fn a_small_checkpoint_size_keeps_the_journal_short_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let opts = StoreOptions {
        checkpoint_bytes: 4096,
        ..StoreOptions::default()
    };
    let store = Store::create(&path, &opts).expect("create");
    commit_each(&store, 300);
    let stats = store.group_stats();
    assert!(stats.checkpoints >= 10, "{stats:?}");
    let crashed = dir.path().join("crashed.redb");
    crash_image(&path, &crashed);
    drop(store);
    // Allocated in steps; the frames of the current cycle stay under the limit.
    let journal_len = std::fs::metadata(journal_of(&crashed))
        .expect("journal")
        .len();
    assert!(journal_len <= 256 << 10, "{journal_len}");
    assert_eq!(rows(&read_only(&crashed)), first(300));
    assert_eq!(
        rows(&Store::open(&crashed, &opts).expect("open")),
        first(300)
    );
}

#[test]
fn concurrent_durable_commits_share_journal_syncs_and_all_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    const THREADS: u32 = 8;
    const EACH: u32 = 40;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                for j in 0..EACH {
                    let i = t * EACH + j;
                    let mut w = store.write().expect("write");
                    w.insert(Table::Docs, &key(i), &value(i, 0))
                        .expect("insert");
                    w.commit(true).expect("commit");
                }
            });
        }
    });
    let stats = store.group_stats();
    assert_eq!(stats.durable, stats.commits);
    assert!(stats.flushes <= stats.commits, "{stats:?}");
    let crashed = dir.path().join("crashed.redb");
    crash_image(&path, &crashed);
    drop(store);
    assert_eq!(rows(&read_only(&crashed)), first(THREADS * EACH));
}

#[test]
fn compaction_leaves_no_frame_that_could_replay_into_the_compacted_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    commit_each(&store, 1);
    // After a checkpoint (the close), frames are written under epoch 1: the epoch a
    // fresh copy would have if it did not take the source's into account.
    drop(store);
    let mut store = Store::open(&path, &StoreOptions::default()).expect("reopen");
    // Twenty frames of epoch 1 that insert rows 0..20 ...
    commit_each(&store, 20);
    // ... then a transaction too large for a frame removes them (a checkpoint commit:
    // epoch 2, no frame), so the journal still starts with the twenty inserts.
    let mut w = store.write().expect("write");
    for i in 0..20 {
        w.remove(Table::Docs, &key(i)).expect("remove");
    }
    let big = vec![9u8; 1_100_000];
    w.insert(Table::Docs, &key(1000), &big).expect("insert");
    w.commit(true).expect("commit");
    assert_eq!(store.group_stats().checkpoints, 1);
    store
        .compact(&path, &dir.path().join("data.redb.compacting"))
        .expect("compact");
    let want = vec![(key(1000).to_vec(), big)];
    let crashed = dir.path().join("crashed.redb");
    crash_image(&path, &crashed);
    assert_eq!(rows(&read_only(&crashed)), want);
    // And after one more commit (a new cycle at the journal's start).
    let mut w = store.write().expect("write");
    w.insert(Table::Docs, &key(1001), &value(1001, 1))
        .expect("insert");
    w.commit(true).expect("commit");
    crash_image(&path, &crashed);
    drop(store);
    let mut want = want;
    want.push((key(1001).to_vec(), value(1001, 1)));
    assert_eq!(rows(&read_only(&crashed)), want);
    assert_eq!(
        rows(&Store::open(&path, &StoreOptions::default()).expect("open")),
        want
    );
}

#[test]
fn frames_of_a_session_a_crash_tore_are_never_replayed_after_the_next_sessions_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    // Two frames: row 1, then row 2 (same sizes).
    for i in [1, 2] {
        let mut w = store.write().expect("write");
        w.insert(Table::Docs, &key(i), &[b'o'; 100])
            .expect("insert");
        w.commit(true).expect("commit");
    }
    let crashed = dir.path().join("crashed.redb");
    crash_image(&path, &crashed);
    drop(store);
    // The crash tore frame 0 (a byte of its payload never reached the disk) but not
    // frame 1: the open replays neither.
    let mut journal = std::fs::read(journal_of(&crashed)).expect("journal");
    journal[40] ^= 0xFF;
    std::fs::write(journal_of(&crashed), &journal).expect("tear frame 0");
    let store = Store::open(&crashed, &StoreOptions::default()).expect("open");
    assert_eq!(rows(&store), Vec::new());
    // The next session's first frame has exactly frame 0's size, so the old frame 1
    // (same epoch, sequence 1) follows it whole; then the session crashes too.
    let mut w = store.write().expect("write");
    w.insert(Table::Docs, &key(3), &[b'n'; 100])
        .expect("insert");
    w.commit(true).expect("commit");
    let again = dir.path().join("again.redb");
    crash_image(&crashed, &again);
    drop(store);
    let journal = std::fs::read(journal_of(&again)).expect("journal");
    let end = insert_frame_len(4, 100);
    assert_eq!(
        &journal[end..end + 4],
        b"BZJ2",
        "the old frame 1 follows whole"
    );
    // Only the new session's commit: the old frame 1 was never acknowledged.
    let want = vec![(key(3).to_vec(), vec![b'n'; 100])];
    assert_eq!(rows(&read_only(&again)), want);
    assert_eq!(
        rows(&Store::open(&again, &StoreOptions::default()).expect("open")),
        want
    );
}

#[test]
fn a_failed_journal_write_then_a_close_never_yields_a_state_that_did_not_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    // The journal write of the fourth frame fails, as on a full disk.
    let failing = StoreOptions {
        fail_journal_write: Some(3),
        ..StoreOptions::default()
    };
    let store = Store::create(&path, &failing).expect("create");
    let put = |store: &Store, pairs: &[(u32, &[u8])]| {
        let mut w = store.write().expect("write");
        for (k, v) in pairs {
            w.insert(Table::Docs, &key(*k), v).expect("insert");
        }
        w.commit(true)
    };
    put(&store, &[(1, b"a")]).expect("frame 0");
    put(&store, &[(100, b"filler")]).expect("frame 1");
    put(&store, &[(101, b"filler")]).expect("frame 2");
    // Its redb commit is made (visible), its frame is not written: the store fails.
    assert!(put(&store, &[(1, b"b"), (2, b"x")]).is_err());
    assert!(
        matches!(store.write(), Err(StorageError::Failed(_))),
        "the store is failed"
    );
    // A normal close. redb makes the visible commits durable as it closes, the last one
    // included; the journal holds the frames of the first three.
    drop(store);
    let store = Store::open(&path, &StoreOptions::default()).expect("reopen");
    let got = rows(&store);
    let row = |k: u32| {
        got.iter()
            .find(|(kk, _)| kk[..] == key(k))
            .map(|(_, v)| v.clone())
    };
    // Commits happened in order: either the failed one is there whole (row 1 = b, row 2)
    // or not at all (row 1 = a, no row 2). Replaying the journal's frames over a state
    // that holds the later commit would give row 1 = a with row 2: a state that never
    // existed.
    match (row(1).as_deref(), row(2).is_some()) {
        (Some(b"b"), true) | (Some(b"a"), false) => {}
        other => panic!(
            "a state that never existed: row 1 {:?}, row 2 present {}",
            other.0, other.1
        ),
    }
    assert_eq!(row(100).as_deref(), Some(&b"filler"[..]));
    // And it stays so: another open replays nothing more.
    drop(store);
    let again = Store::open(&path, &StoreOptions::default()).expect("reopen again");
    assert_eq!(rows(&again), got);
}

#[test]
fn a_copy_of_the_data_file_put_beside_another_journal_replays_none_of_its_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    commit_each(&store, 3);
    let backup = dir.path().join("backup.redb");
    store.backup_to(&backup).expect("backup");
    // The live store goes on: a checkpoint (close), a new cycle, commits in the journal.
    drop(store);
    let store = Store::open(&path, &StoreOptions::default()).expect("reopen");
    let mut w = store.write().expect("write");
    w.insert(Table::Docs, &key(50), &value(50, 0))
        .expect("insert");
    w.commit(true).expect("commit");
    // The backup's data file restored over the live one, the live journal left beside.
    let restored = dir.path().join("restored.redb");
    crash_image(&path, &restored);
    drop(store);
    std::fs::copy(&backup, &restored).expect("restore the data file");
    assert_eq!(rows(&read_only(&restored)), first(3));
    assert_eq!(
        rows(&Store::open(&restored, &StoreOptions::default()).expect("open")),
        first(3)
    );
}
