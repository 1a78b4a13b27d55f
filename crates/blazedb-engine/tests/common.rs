//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use blazedb_engine::{Database, Document, Error, KdfParams, OpenOptions, Result};

pub const PASSWORD: &str = "test password";

/// Options with cheap password hashing (tests of everything but the KDF).
pub fn fast() -> OpenOptions {
    OpenOptions::new().kdf(KdfParams::INSECURE_FAST)
}

pub fn open(dir: &Path, name: &str) -> Result<Database> {
    fast().open(dir, name, PASSWORD)
}

/// Turns change capture on for `db`, as enabling sync does: a new database is
/// local-only and keeps no change log until then. The flag is stored, so later opens
/// capture too.
pub fn capture_changes(db: &Database) -> Result<()> {
    use blazedb_engine::internal::SyncWrite;
    let mut tx = db.begin_write()?;
    tx.enable_change_capture()?;
    tx.commit()
}

/// [`open`], then [`capture_changes`]: for tests of the change log.
pub fn open_capturing(dir: &Path, name: &str) -> Result<Database> {
    let db = open(dir, name)?;
    capture_changes(&db)?;
    Ok(db)
}

/// Every file of a database directory with its bytes, for "nothing changed" checks.
pub fn snapshot_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(path)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Everything a database holds that the public API can read, for "exactly this data"
/// comparisons: the catalog, every listed collection's documents, the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct Contents {
    pub collections: Vec<String>,
    /// `(collection, documents sorted by id)` for each name asked for.
    pub docs: Vec<(String, Vec<blazedb_engine::Document>)>,
    pub changes: Vec<blazedb_engine::Change>,
    pub last_seq: u64,
}

/// Reads [`Contents`] from one snapshot. `names` lists the collections to read in full
/// (besides the catalog), so a damaged catalog cannot hide a collection from the check.
pub fn contents(db: &Database, names: &[&str]) -> Result<Contents> {
    let r = db.begin_read()?;
    let mut docs = Vec::new();
    for name in names {
        docs.push(((*name).to_owned(), r.all(name)?));
    }
    Ok(Contents {
        collections: r.collections()?,
        docs,
        changes: r.changes_after(0, usize::MAX)?,
        last_seq: r.last_seq()?,
    })
}

/// Names of the entries of `dir`, sorted (for "nothing was created" checks).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// A temporary directory for throwaway copies: `BLAZEDB_TEST_TMP` if set, else tmpfs
/// (`/dev/shm`) where it exists, else the system default. Tests that open hundreds of
/// damaged copies would otherwise spend their time waiting on fsync.
pub fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("BLAZEDB_TEST_TMP")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    match base {
        Some(base) => tempfile::tempdir_in(base).expect("tempdir"),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

/// Opens (or creates) with another password than [`PASSWORD`].
pub fn open_with_password(dir: &Path, name: &str, password: &str) -> Result<Database> {
    fast().open(dir, name, password)
}

/// The data file of database directory `db_dir`, opened directly through the storage
/// layer (the engine must have it closed), for tests that edit sealed values in place.
pub fn raw_store(db_dir: &Path) -> blazedb_storage::Store {
    let opts = blazedb_storage::StoreOptions {
        verify_on_open: false,
        ..Default::default()
    };
    blazedb_storage::Store::open(&db_dir.join("data.redb"), &opts).expect("raw open")
}

/// Every storage key of table `t`.
pub fn raw_keys(db_dir: &Path, t: blazedb_storage::Table) -> std::collections::BTreeSet<Vec<u8>> {
    let store = raw_store(db_dir);
    let mut keys = std::collections::BTreeSet::new();
    let all = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    let tx = store.read().expect("raw read");
    tx.scan(t, all, |k, _| {
        keys.insert(k.to_vec());
        Ok::<_, blazedb_storage::StorageError>(std::ops::ControlFlow::Continue(()))
    })
    .expect("raw scan");
    keys
}

/// The sealed value under `key` in table `t`.
pub fn raw_get(db_dir: &Path, t: blazedb_storage::Table, key: &[u8]) -> Vec<u8> {
    let store = raw_store(db_dir);
    let value = store.read().expect("raw read").get(t, key);
    value.expect("raw get").expect("value present")
}

/// The sealed length of every value in table `t`, by key.
pub fn raw_value_lens(
    db_dir: &Path,
    t: blazedb_storage::Table,
) -> std::collections::BTreeMap<Vec<u8>, usize> {
    let store = raw_store(db_dir);
    let mut lens = std::collections::BTreeMap::new();
    let all = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    let tx = store.read().expect("raw read");
    tx.scan(t, all, |k, v| {
        lens.insert(k.to_vec(), v.len());
        Ok::<_, blazedb_storage::StorageError>(std::ops::ControlFlow::Continue(()))
    })
    .expect("raw scan");
    lens
}

/// Edits the raw tables in one durable storage transaction.
pub fn raw_edit(
    db_dir: &Path,
    f: impl FnOnce(&mut blazedb_storage::WriteTx<'_>) -> Result<(), blazedb_storage::StorageError>,
) {
    let store = raw_store(db_dir);
    let mut tx = store.write().expect("raw write");
    f(&mut tx).expect("raw edit");
    tx.commit(true).expect("raw commit");
}

/// A small seeded generator (SplitMix64), for reproducible test inputs.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The message of a caught panic.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Inserts `doc` into database `name` (directory `db_dir`, closed) through the engine and
/// returns its storage key. Keys are keyed tags, so it is found as the one key added.
pub fn insert_and_find_key(db_dir: &Path, name: &str, coll: &str, doc: Document) -> Vec<u8> {
    let before = raw_keys(db_dir, blazedb_storage::Table::Docs);
    let db = open(db_dir.parent().expect("parent"), name).expect("open");
    db.collection(coll).insert(doc).expect("insert");
    drop(db);
    let after = raw_keys(db_dir, blazedb_storage::Table::Docs);
    let added: Vec<_> = after.difference(&before).cloned().collect();
    assert_eq!(added.len(), 1, "one insert adds one key");
    added.into_iter().next().expect("one key")
}

/// Whether `r` is `Corruption` of a record in `table`.
pub fn is_corrupt_record<T>(r: &Result<T>, table: &str) -> bool {
    matches!(r, Err(blazedb_engine::Error::Corruption {
        site: blazedb_engine::CorruptionSite::Record { table: t }, ..
    }) if *t == table)
}

/// Names of the files of `path` that differ from `before` (a [`snapshot_files`]): changed,
/// added or removed. Empty when nothing changed; short enough for an assert message.
pub fn changed_files(path: &Path, before: &[(String, Vec<u8>)]) -> Vec<String> {
    let now = snapshot_files(path);
    let mut names: Vec<String> = now
        .iter()
        .filter(|f| !before.contains(f))
        .chain(before.iter().filter(|f| !now.contains(f)))
        .map(|(name, _)| name.clone())
        .collect();
    names.dedup();
    names
}

/// Asserts that no file of `path` changed since `before` (a [`snapshot_files`]).
#[track_caller]
pub fn assert_unchanged(path: &Path, before: &[(String, Vec<u8>)], what: &str) {
    let changed = changed_files(path, before);
    assert!(changed.is_empty(), "{what}: files changed: {changed:?}");
}

/// How one attempt to open and read a (possibly damaged) database ended.
pub enum Verdict {
    Identical,
    /// The open failed; `bool`: it left both files byte-identical, as it must.
    NotOpened(Error, bool),
    Refused(Error),
    WrongData(String),
}

pub fn short(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}").chars().take(100).collect()
}

/// `Ok` if `got` is exactly `want`; else the verdict: refused (an error) or wrong data.
pub fn same<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: Result<T>,
    want: &T,
) -> Result<(), Verdict> {
    match got {
        Ok(v) if v == *want => Ok(()),
        Ok(v) => Err(Verdict::WrongData(format!(
            "{what}: {} not {}",
            short(&v),
            short(want)
        ))),
        Err(e) => Err(Verdict::Refused(e)),
    }
}

/// A short label of an error's kind, for counting outcomes.
pub fn error_label(e: &Error) -> String {
    match e {
        Error::Corruption { site, detail } if detail.contains("panicked") => {
            format!("Corruption({site:?}) from a caught engine panic")
        }
        Error::Corruption { site, .. } => format!("Corruption({site:?})"),
        Error::UnsupportedFormat { what, .. } => format!("UnsupportedFormat({what})"),
        Error::Io { source, .. } => format!("Io({:?}: {source})", source.kind()),
        other => format!("{other:?}"),
    }
}

/// Outcome counts of a series of attempts, and the attempts that broke the rules.
#[derive(Default)]
pub struct Tally {
    pub counts: BTreeMap<String, usize>,
    pub violations: Vec<String>,
    /// Count reads that came back incomplete (documents missing, never different ones)
    /// without failing: the documented cost of `verify_on_open(false)`.
    pub tolerate_incomplete: bool,
}

impl Tally {
    /// Records one attempt; `allowed` judges its error, or `None` for "read back
    /// exactly" (fine for damage to unused space, never for the key file).
    pub fn record(
        &mut self,
        what: &str,
        result: Result<Verdict, String>,
        allowed: impl Fn(Option<&Error>) -> bool,
    ) {
        let (kind, detail, violation) = match result {
            Ok(Verdict::Identical) => ("ok, identical".to_owned(), String::new(), !allowed(None)),
            Ok(Verdict::NotOpened(e, false)) => {
                ("FAILED OPEN MODIFIED A FILE".into(), format!("{e:?}"), true)
            }
            Ok(Verdict::Refused(e) | Verdict::NotOpened(e, true)) => {
                (error_label(&e), format!("{e:?}"), !allowed(Some(&e)))
            }
            Ok(Verdict::WrongData(d)) if self.tolerate_incomplete => (
                "incomplete read (tolerated: verify off)".to_owned(),
                d,
                false,
            ),
            Ok(Verdict::WrongData(d)) => ("WRONG DATA".to_owned(), d, true),
            Err(msg) => ("PANIC".to_owned(), msg, true),
        };
        if violation {
            self.violations.push(format!("{what}: {kind}: {detail}"));
        }
        *self.counts.entry(kind).or_default() += 1;
    }

    /// Prints the counts; fails listing the violations, if any.
    pub fn finish(self, title: &str) {
        let total: usize = self.counts.values().sum();
        println!("{title}: {total} attempts");
        for (label, n) in &self.counts {
            println!("  {n:6}  {label}");
        }
        let shown = &self.violations[..self.violations.len().min(40)];
        let n = self.violations.len();
        assert!(
            n == 0,
            "{title}: {n} of {total} attempts broke the rules:\n{}",
            shown.join("\n")
        );
    }
}

/// Spawns this very test binary (even if a concurrent build has replaced its file since:
/// Linux's `/proc/self/exe`) running only test `test`, with `envs`, stdout and stderr
/// piped: the child of a crash test.
#[cfg(unix)]
pub fn spawn_child_test(test: &str, envs: &[(&str, String)]) -> std::process::Child {
    let proc_exe = Path::new("/proc/self/exe");
    let exe = if proc_exe.exists() {
        proc_exe.to_owned()
    } else {
        std::env::current_exe().expect("path of this test binary")
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1", "-q"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn the child test")
}

/// SIGKILLs `child` and returns what it printed to `out` that was not read yet (lines
/// printed before the kill are still in the pipe). Panics, with the child's output, if
/// it had exited by itself.
#[cfg(unix)]
pub fn kill_and_drain(child: &mut std::process::Child, out: &mut impl std::io::Read) -> String {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    let mut rest = String::new();
    out.read_to_string(&mut rest)
        .expect("drain the child's stdout");
    if status.signal() != Some(9) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut err).expect("read the child's stderr");
        }
        panic!("the child exited by itself ({status}), not by SIGKILL:\n{rest}\n{err}");
    }
    rest
}
