//! Crash consistency under SIGKILL.
//!
//! A child process (this test binary re-executed, running only
//! `child_writer_when_spawned_by_the_kill_test`) writes forever: single-document inserts,
//! three-document transactions across two collections, patches and deletes of earlier
//! documents. It prints `ACK <index>` only after `commit` returned, so an ACK is a
//! durability promise. The parent kills it with SIGKILL at a random instant, reopens the
//! database and checks it against a model of what the child did: every acknowledged op
//! is there whole, the one op in flight is there whole or not at all, nothing later is
//! there, deleted documents stay deleted, and the change log has exactly one entry per
//! committed write, consecutively numbered. The same database accumulates across kills,
//! so later kills land in a bigger file and in redb's crash repair.
//!
//! Commits go through the commit journal (docs/format.md): the child checkpoints every
//! [`CHILD_CHECKPOINT_BYTES`], and about one op in eighty is a transaction too large for
//! a journal frame (it commits as a checkpoint), so kills land in journal appends and
//! syncs, in checkpoints of both kinds, and in the replay of the journal at the next
//! child's open; the parent's open replays whatever journal the kill left.
//!
//! The workload is a pure function of the op index and the database contents (see
//! [`plan`]), so the parent replays it on the model without the child reporting what it
//! did: it matters for the op in flight, which was never acknowledged.
//!
//! - Fast mode (CI, 200 kills): `cargo test -p blazedb-engine --test crash_sigkill`
//! - Long mode (2,000 kills):
//!   `BLAZEDB_CRASH_KILLS=2000 cargo test -p blazedb-engine --test crash_sigkill -- --nocapture`
//! - Replay: add `BLAZEDB_CRASH_SEED=<seed>` (printed at start and in the summary). The
//!   seed fixes how many ACKs each round waits for and the extra delay before the kill;
//!   the exact instant still depends on scheduling, so a failure may need a few runs.
//!
//! Scope: SIGKILL loses the process, not the kernel's page cache, so this proves
//! consistency against process crashes (and redb's repair path), not against power loss
//! or torn sector writes, which would need a fault-injecting file layer or a VM.
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use blazedb_engine::internal::SyncDatabase;
use blazedb_engine::{
    Change, ChangeOp, Database, DocId, Document, Fields, IndexSpec, Patch, Result, Timestamp,
    database_path,
};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

const DB: &str = "crash";
const SINGLE: &str = "single";
const TX_A: &str = "tx_a";
const TX_B: &str = "tx_b";
/// Written by the large transactions (checkpoint commits).
const BIG: &str = "big";
/// The child's journal checkpoint size: small, so checkpoints happen every few dozen
/// commits, inside the kill window.
const CHILD_CHECKPOINT_BYTES: u64 = 16 << 10;
/// Bytes of a big document: with its change entry the transaction exceeds a journal
/// frame (1 MiB).
const BIG_BYTES: usize = 560_000;
/// Written by the child's concurrent side writer.
const SIDE: &str = "side";
const CHILD_TEST: &str = "child_writer_when_spawned_by_the_kill_test";
const ENV_DIR: &str = "BLAZEDB_CRASH_CHILD_DIR";
const ENV_START: &str = "BLAZEDB_CRASH_START";
const ENV_KILLS: &str = "BLAZEDB_CRASH_KILLS";
const ENV_SEED: &str = "BLAZEDB_CRASH_SEED";
/// A round waits for 1..=this many ACKs before killing (or none, see `STARTUP_KILLS`).
const MAX_ACKS: usize = 40;
/// Extra busy-wait after the last awaited ACK, so the kill lands anywhere in the next
/// commit (about one commit with its fsyncs) rather than just after an ACK.
const MAX_SPIN_US: u64 = 3_000;
/// Share of rounds killed before any ACK: during process start, open, or redb's repair
/// of the file the previous child left crashed.
const STARTUP_KILLS: f64 = 0.1;
/// Share of rounds checked on a byte copy, leaving the original crashed so that the next
/// child's open repairs it; the other rounds check (so repair) the original in place.
const CHECK_ON_COPY: f64 = 0.5;

/// splitmix64's finaliser: a cheap, well-mixed hash of an op index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    /// Insert document `single/(i, 0)`.
    Single,
    /// Insert `tx_a/(i, 0)`, `tx_a/(i, 1)` and `tx_b/(i, 2)` in one transaction.
    Txn,
    /// Insert `big/(i, 0)`, a document too large for a journal frame.
    Big,
    /// Set field `p` to `i` on live single document `j`.
    Patch(u64),
    /// Delete live single document `j`.
    Delete(u64),
    /// No live target found: nothing to commit (still acknowledged).
    Nothing,
}

impl Op {
    /// Change-log entries the op writes when it commits.
    fn writes(self) -> u64 {
        match self {
            Op::Single | Op::Big | Op::Patch(_) | Op::Delete(_) => 1,
            Op::Txn => 3,
            Op::Nothing => 0,
        }
    }
}

fn is_big(i: u64) -> bool {
    mix(i ^ 0xB16).is_multiple_of(80)
}

fn is_single(i: u64) -> bool {
    !is_big(i) && mix(i) % 10 <= 4
}

/// What op `i` does: 1 in 80 a big insert; of the rest 50% single inserts, 20% transactions,
/// 20% patches, 10% deletes.
/// Targets are picked among live single documents (`live(j)`), alternately from the whole
/// history (old pages) and the last 64 ops (this round's writes). The child asks the
/// database, the parent its model: they agree while the database matches the model, and
/// a divergence shows as a change-log mismatch.
fn plan(i: u64, mut live: impl FnMut(u64) -> Result<bool>) -> Result<Op> {
    if is_big(i) {
        return Ok(Op::Big);
    }
    let k = mix(i) % 10;
    if k <= 4 {
        return Ok(Op::Single);
    }
    if k <= 6 {
        return Ok(Op::Txn);
    }
    for attempt in 0..16u64 {
        let lo = if attempt % 2 == 0 {
            0
        } else {
            i.saturating_sub(64)
        };
        if lo >= i {
            continue;
        }
        let j = lo + mix(i ^ ((attempt + 1) << 56)) % (i - lo);
        if is_single(j) && live(j)? {
            return Ok(if k == 9 { Op::Delete(j) } else { Op::Patch(j) });
        }
    }
    Ok(Op::Nothing)
}

/// Deterministic ids: the op index, big-endian (ids sort by index), and a slot.
fn id(i: u64, slot: u8) -> DocId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&i.to_be_bytes());
    b[8] = slot;
    DocId::from_bytes(b)
}

fn index_of(id: &DocId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_be_bytes(b)
}

/// A document of op `i`: varying sizes make commits touch varying numbers of pages.
fn doc(i: u64, slot: u8) -> Document {
    let len = (mix(i ^ u64::from(slot)) % 600) as usize;
    Document::with_id(id(i, slot))
        .with("i", i as i64)
        .with("slot", i64::from(slot))
        .with("pad", vec![i as u8; len])
}

/// Indexes the child maintains: single-field, compound, and one on a patched field.
fn index_specs() -> Vec<IndexSpec> {
    vec![
        IndexSpec::new("single_by_i", SINGLE, &["i"]),
        IndexSpec::new("single_by_patch", SINGLE, &["p", "i"]),
        IndexSpec::new("tx_a_by_slot_i", TX_A, &["slot", "i"]),
    ]
}

/// The document of big op `i`. Its bytes do not compress (a xorshift stream seeded by
/// `i`), so its record stays over a journal frame and the transaction commits as a
/// checkpoint (a repeated byte would be stored compressed, a few KiB).
fn big_doc(i: u64) -> Document {
    let mut state = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let bytes: Vec<u8> = (0..BIG_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    Document::with_id(id(i, 0))
        .with("i", i as i64)
        .with("big", bytes)
}

fn txn_collection(slot: u8) -> &'static str {
    if slot < 2 { TX_A } else { TX_B }
}

fn patch_of(i: u64) -> Patch {
    Patch::new().set("p", i as i64)
}

/// The child: runs only when the parent set the environment; otherwise a no-op.
#[test]
fn child_writer_when_spawned_by_the_kill_test() -> Result<()> {
    let (Some(dir), Ok(start)) = (std::env::var_os(ENV_DIR), std::env::var(ENV_START)) else {
        return Ok(());
    };
    let start: u64 = start.parse().expect("BLAZEDB_CRASH_START is an op index");
    let db = common::fast()
        .checkpoint_bytes(CHILD_CHECKPOINT_BYTES)
        .open(Path::new(&dir), DB, common::PASSWORD)?;
    // Indexes are built by the child itself (each build is one transaction, so a kill
    // during it leaves no index) and then maintained by every write; the parent checks
    // after every reopen that each index equals a rebuild from the documents.
    let have: Vec<String> = db
        .begin_read()?
        .indexes()?
        .into_iter()
        .map(|i| i.spec.name)
        .collect();
    for spec in index_specs() {
        if !have.contains(&spec.name) {
            db.create_index(&spec)?;
        }
    }
    // A second writer commits at the same time, so commits go through group commit
    // (non-durable commit + shared flush), not only the lone-writer path.
    let side = db.clone();
    std::thread::spawn(move || side_writer(&side));
    for i in start.. {
        let op = {
            let r = db.begin_read()?;
            plan(i, |j| Ok(r.get(SINGLE, id(j, 0))?.is_some()))?
        };
        match op {
            Op::Single => {
                db.collection(SINGLE).insert(doc(i, 0))?;
            }
            Op::Txn => {
                let mut tx = db.begin_write()?;
                for slot in 0..3 {
                    tx.insert(txn_collection(slot), doc(i, slot))?;
                }
                tx.commit()?;
            }
            Op::Big => {
                db.collection(BIG).insert(big_doc(i))?;
            }
            Op::Patch(j) => {
                db.collection(SINGLE).patch(id(j, 0), &patch_of(i))?;
            }
            Op::Delete(j) => db.collection(SINGLE).delete(id(j, 0))?,
            Op::Nothing => {}
        }
        // Only now, with `commit` returned (durably: the default), is the op acknowledged.
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {i}").expect("write ACK");
        out.flush().expect("flush ACK");
    }
    Ok(())
}

/// The concurrent writer: durable inserts into [`SIDE`] through non-capturing
/// transactions (so the change-log model is unaffected), each acknowledged as
/// `SIDE <id>` once its commit returned.
fn side_writer(db: &Database) {
    loop {
        let id = DocId::new();
        let mut tx = db.begin_apply().expect("begin side write");
        tx.insert(SIDE, Document::with_id(id).with("side", true))
            .expect("side insert");
        tx.commit().expect("side commit");
        let mut out = std::io::stdout().lock();
        writeln!(out, "SIDE {id}").expect("write SIDE");
        out.flush().expect("flush SIDE");
    }
}

fn parse_side(line: &str) -> Option<DocId> {
    line.trim().strip_prefix("SIDE ")?.parse().ok()
}

type Docs = BTreeMap<(&'static str, DocId), Document>;

/// What the database must contain: live documents, committed transactions, and the
/// change log (`log[k]` has sequence number `k + 1`).
#[derive(Default)]
struct Model {
    singles: BTreeMap<u64, Document>,
    txns: BTreeSet<u64>,
    bigs: BTreeSet<u64>,
    deleted: BTreeSet<u64>,
    log: Vec<Change>,
}

impl Model {
    fn seq(&self) -> u64 {
        self.log.len() as u64
    }

    fn plan(&self, i: u64) -> Op {
        plan(i, |j| Ok(self.singles.contains_key(&j))).expect("the model never fails")
    }

    fn capture(&mut self, txn: u64, collection: &str, id: DocId, op: ChangeOp) {
        let seq = self.seq() + 1;
        let collection = collection.to_owned();
        self.log.push(Change {
            seq,
            txn,
            collection,
            id,
            op,
            // The write time is the child's clock; `check_log` compares everything else.
            at: Timestamp(0),
        });
    }

    /// Applies committed op `i`, with the change entries it captured.
    fn apply(&mut self, i: u64, op: Op) {
        let txn = self.seq() + 1;
        match op {
            Op::Single => {
                let d = doc(i, 0);
                let fields = d.fields.clone();
                self.capture(txn, SINGLE, d.id, ChangeOp::Insert { fields });
                self.singles.insert(i, d);
            }
            Op::Txn => {
                for slot in 0..3 {
                    let d = doc(i, slot);
                    let fields = d.fields;
                    self.capture(txn, txn_collection(slot), d.id, ChangeOp::Insert { fields });
                }
                self.txns.insert(i);
            }
            Op::Big => {
                let fields = big_doc(i).fields;
                self.capture(txn, BIG, id(i, 0), ChangeOp::Insert { fields });
                self.bigs.insert(i);
            }
            Op::Patch(j) => {
                let set: Fields = patch_of(i).set;
                let d = self.singles.get_mut(&j).expect("plan targets live docs");
                d.fields.extend(set.clone());
                let unset = Vec::new();
                self.capture(txn, SINGLE, id(j, 0), ChangeOp::Update { set, unset });
            }
            Op::Delete(j) => {
                self.singles.remove(&j);
                self.deleted.insert(j);
                self.capture(txn, SINGLE, id(j, 0), ChangeOp::Delete);
            }
            Op::Nothing => {}
        }
    }

    /// Every document the database must hold, by collection and id.
    fn expected(&self) -> Docs {
        let singles = (self.singles.values()).map(|d| ((SINGLE, d.id), d.clone()));
        let txns = (self.txns.iter())
            .flat_map(|&i| (0..3).map(move |s| ((txn_collection(s), id(i, s)), doc(i, s))));
        let bigs = (self.bigs.iter()).map(|&i| ((BIG, id(i, 0)), big_doc(i)));
        singles.chain(txns).chain(bigs).collect()
    }
}

fn parse_ack(line: &str) -> Option<u64> {
    // libtest may print "test <name> ... " on the same line before the first ACK.
    let at = line.find("ACK ")?;
    line[at + 4..].trim().parse().ok()
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Runs a child from op `start` and SIGKILLs it `delay` after its `acks`-th ACK (after
/// spawn when `acks` is 0). Returns every ACK it printed, in order, and the time from
/// spawn to the first ACK if one was awaited.
fn run_child_and_kill(
    dir: &Path,
    start: u64,
    acks: usize,
    delay: Duration,
) -> (Vec<u64>, Option<Duration>, Vec<DocId>) {
    let spawned = Instant::now();
    let mut child = common::spawn_child_test(
        CHILD_TEST,
        &[
            (ENV_DIR, dir.display().to_string()),
            (ENV_START, start.to_string()),
        ],
    );
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let (mut seen, mut first_ack, mut line) = (Vec::new(), None, String::new());
    let mut side = Vec::new();
    while seen.len() < acks {
        line.clear();
        // EOF means the child died on its own: reported below from its exit status.
        if out.read_line(&mut line).expect("read the child's stdout") == 0 {
            break;
        }
        seen.extend(parse_ack(&line));
        side.extend(parse_side(&line));
        first_ack = first_ack.or((!seen.is_empty()).then(|| spawned.elapsed()));
    }
    spin(delay);
    // ACKs printed before the kill are still in the pipe: they count too.
    let rest = common::kill_and_drain(&mut child, &mut out);
    seen.extend(rest.lines().filter_map(parse_ack));
    side.extend(rest.lines().filter_map(parse_side));
    (seen, first_ack, side)
}

/// Copies the database directory byte for byte: exactly what a reopen would find.
fn copy_database(from: &Path, to: &Path) {
    let (src, dst) = (database_path(from, DB), database_path(to, DB));
    if dst.exists() {
        std::fs::remove_dir_all(&dst).expect("remove the previous copy");
    }
    std::fs::create_dir_all(&dst).expect("create the copy's directory");
    for entry in std::fs::read_dir(&src).expect("list the database directory") {
        let name = entry.expect("directory entry").file_name();
        std::fs::copy(src.join(&name), dst.join(&name)).expect("copy a database file");
    }
}

/// Every document ops `indices` wrote (as single, patch or delete target, or transaction
/// slot) is as the model says: cheap, so it runs after every kill.
fn check_ops(db: &Database, model: &Model, indices: &BTreeSet<u64>, ctx: &str) -> Result<()> {
    let r = db.begin_read()?;
    for &i in indices {
        let found = r.get(SINGLE, id(i, 0))?;
        let want = model.singles.get(&i);
        let gone = model.deleted.contains(&i);
        // Fields `i` and `p` tell op states apart; `pad` would only flood the message.
        let brief = |d: Option<&Document>| d.map(|d| (d.get("i").cloned(), d.get("p").cloned()));
        assert!(
            found.as_ref() == want,
            "{ctx}: single doc of op {i} (deleted: {gone}): found {:?}, expected {:?}",
            brief(found.as_ref()),
            brief(want)
        );
        let slots: Vec<bool> = (0..3)
            .map(|s| {
                Ok(r.get(txn_collection(s), id(i, s))?
                    .is_some_and(|d| d == doc(i, s)))
            })
            .collect::<Result<_>>()?;
        let want = model.txns.contains(&i);
        assert!(
            slots.iter().all(|&s| s == want),
            "{ctx}: transaction {i}: documents present and intact {slots:?}, expected all {want}"
        );
        let big = r.get(BIG, id(i, 0))?.is_some_and(|d| d == big_doc(i));
        assert_eq!(
            big,
            model.bigs.contains(&i),
            "{ctx}: big transaction {i}: present and intact"
        );
    }
    Ok(())
}

/// The change log after `from` equals the model's, entry by entry, and ends where it does.
fn check_log(db: &Database, model: &Model, from: u64, ctx: &str) -> Result<()> {
    let r = db.begin_read()?;
    assert_eq!(r.last_seq()?, model.seq(), "{ctx}: last_seq");
    let mut at = from;
    while at < model.seq() {
        let page = r.changes_after(at, 100_000)?;
        assert!(!page.is_empty(), "{ctx}: change log ends after {at}");
        for c in &page {
            let want = Change {
                at: c.at,
                ..model.log[(c.seq - 1) as usize].clone()
            };
            assert_eq!(c, &want, "{ctx}: change log entry {}", c.seq);
        }
        at = page.last().map_or(at, |c| c.seq);
    }
    Ok(())
}

/// Everything equals the model: all documents of every collection (so deleted documents
/// of any age stay deleted) and the whole change log. It decrypts the whole database, so
/// it runs every few kills only, keeping the run linear in the number of kills.
fn check_all(db: &Database, model: &Model, ctx: &str) -> Result<()> {
    let r = db.begin_read()?;
    let mut found = Docs::new();
    for c in [SINGLE, TX_A, TX_B, BIG] {
        found.extend(r.all(c)?.into_iter().map(|d| ((c, d.id), d)));
    }
    let expected = model.expected();
    if found != expected {
        // Name the ops involved: (collection, op index).
        let only = |a: &Docs, b: &Docs| -> Vec<(&str, u64)> {
            let keys = a.keys().filter(|k| !b.contains_key(k));
            keys.map(|(c, id)| (*c, index_of(id))).take(10).collect()
        };
        let (missing, extra) = (only(&expected, &found), only(&found, &expected));
        let resurrected: Vec<_> = (extra.iter())
            .filter(|(c, i)| *c == SINGLE && model.deleted.contains(i))
            .collect();
        let differ: Vec<_> = (expected.iter())
            .filter(|(k, d)| found.get(k).is_some_and(|f| f != *d))
            .map(|((c, id), _)| (*c, index_of(id)))
            .take(10)
            .collect();
        panic!(
            "{ctx}: documents differ from the model: missing {missing:?}, unexpected {extra:?} \
             (deleted earlier: {resurrected:?}), different contents {differ:?}"
        );
    }
    check_log(db, model, 0, ctx)?;
    // Every index the child managed to build agrees with the documents.
    r.check_indexes()?;
    Ok(())
}

/// Counters for the summary printed at the end.
#[derive(Default)]
struct Stats {
    in_children: Duration,
    killed_before_first_ack: u64,
    checked_on_copy: u64,
    acknowledged: u64,
    in_flight_committed: u64,
    in_flight_lost: u64,
    side_acknowledged: u64,
}

/// Replays one round into the model: its acknowledged ops, then the op in flight at the
/// kill if the change log shows it committed (its ACK may not have been printed). Returns
/// the op indexes whose documents the round may have touched, for the cheap check, and
/// the index of the op in flight.
fn replay_round(
    db: &Database,
    model: &mut Model,
    stats: &mut Stats,
    start: u64,
    acks: &[u64],
    ctx: &str,
) -> Result<(BTreeSet<u64>, u64)> {
    // This round's ops and the documents they touched, for the cheap check.
    let mut touched = BTreeSet::new();
    let mut replay = |model: &mut Model, i: u64, op: Op| {
        touched.insert(i);
        if let Op::Patch(j) | Op::Delete(j) = op {
            touched.insert(j);
        }
        model.apply(i, op);
    };
    for &i in acks {
        let op = model.plan(i);
        replay(model, i, op);
    }
    // The op after the last ACK may have committed (and even be durable) without its
    // ACK having been printed. The change log tells which; the documents must agree.
    let in_flight = start + acks.len() as u64;
    let op = model.plan(in_flight);
    let found = db.begin_read()?.last_seq()?;
    if op.writes() > 0 && found == model.seq() + op.writes() {
        replay(model, in_flight, op);
        stats.in_flight_committed += 1;
    } else if found == model.seq() {
        stats.in_flight_lost += u64::from(op.writes() > 0);
        touched.insert(in_flight);
    } else {
        panic!(
            "{ctx}: change log ends at {found}; acknowledged ops end at {}, op {in_flight} \
             ({op:?}) would end it at {}",
            model.seq(),
            model.seq() + op.writes()
        );
    }
    Ok((touched, in_flight))
}

/// Prints what the run did, for whoever reads the test's output.
fn print_summary(seed: u64, kills: u64, started: Instant, m: &Model, s: &Stats, size: u64) {
    println!(
        "crash_sigkill summary (seed {seed}): {kills} kills in {:.1?} ({:.1?} in children); \
         {} killed before their first ACK; {} checked on a copy (so the next child repaired \
         the crashed original); {} ops acknowledged; op in flight committed unacknowledged \
         {} times, not committed {} times; now {} live single docs, {} deleted, {} \
         transactions, {} big (checkpoint) transactions, {} change-log entries, {} concurrent (group-commit) writes \
         acknowledged, file {} KiB",
        started.elapsed(),
        s.in_children,
        s.killed_before_first_ack,
        s.checked_on_copy,
        s.acknowledged,
        s.in_flight_committed,
        s.in_flight_lost,
        m.singles.len(),
        m.deleted.len(),
        m.txns.len(),
        m.bigs.len(),
        m.seq(),
        s.side_acknowledged,
        size / 1024
    );
}

#[test]
fn every_acknowledged_commit_survives_sigkill_and_no_transaction_is_partial() -> Result<()> {
    let env_u64 = |name: &str| std::env::var(name).ok().map(|v| v.parse::<u64>());
    let kills = (env_u64(ENV_KILLS).unwrap_or(Ok(200))).expect("BLAZEDB_CRASH_KILLS: a count");
    let seed = (env_u64(ENV_SEED).unwrap_or_else(|| Ok(rand::random())))
        .expect("BLAZEDB_CRASH_SEED: a u64");
    println!("crash_sigkill: {kills} kills, seed {seed} (replay: {ENV_SEED}={seed})");
    // About 40 full checks per run, whatever its length, keeps the run linear in kills.
    let full_every = (kills / 40).max(1);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    // Copies go to tmpfs when there is one: their repair and close then cost no disk I/O.
    let scratch = (tempfile::Builder::new().tempdir_in("/dev/shm"))
        .or_else(|_| tempfile::tempdir())
        .expect("scratch dir");
    // Capturing, so the change log is checked too (the flag is stored: the child's
    // opens capture).
    drop(common::open_capturing(dir.path(), DB)?);
    let mut stats = Stats::default();
    let (mut model, mut next) = (Model::default(), 0u64);
    // A decaying maximum of spawn-to-first-ACK: the window start-up kills are spread over.
    let (started, mut startup) = (Instant::now(), Duration::from_millis(20));

    for round in 0..kills {
        let start = next;
        let (want, delay) = if rng.random_bool(STARTUP_KILLS) {
            (0, startup.mul_f64(rng.random_range(0.0..1.0)))
        } else {
            let spin = Duration::from_micros(rng.random_range(0..MAX_SPIN_US));
            (rng.random_range(1..=MAX_ACKS), spin)
        };
        let on_copy = rng.random_bool(CHECK_ON_COPY);
        let child_started = Instant::now();
        let (acks, first_ack, side_acks) = run_child_and_kill(dir.path(), start, want, delay);
        stats.in_children += child_started.elapsed();
        startup = first_ack.map_or(startup, |d| startup.mul_f64(0.9).max(d));
        let ctx = format!(
            "kill {round} (ops from {start}, {} ACKs, seed {seed})",
            acks.len()
        );
        let expect: Vec<u64> = (start..).take(acks.len()).collect();
        assert_eq!(
            acks, expect,
            "{ctx}: ACKs are consecutive from the start index"
        );
        stats.acknowledged += acks.len() as u64;
        stats.killed_before_first_ack += u64::from(acks.is_empty());

        let checked = if on_copy {
            copy_database(dir.path(), scratch.path());
            stats.checked_on_copy += 1;
            scratch.path()
        } else {
            dir.path()
        };
        let db = match common::open(checked, DB) {
            Ok(db) => db,
            Err(e) => panic!("{ctx}: the database does not open after the kill: {e}"),
        };
        // Every acknowledged commit of the concurrent writer (group-commit path) is there.
        for id in &side_acks {
            assert!(
                db.collection(SIDE).get(*id)?.is_some(),
                "{ctx}: acknowledged concurrent commit {id} lost"
            );
        }
        stats.side_acknowledged += side_acks.len() as u64;
        let from = model.seq();
        let (mut touched, in_flight) =
            replay_round(&db, &mut model, &mut stats, start, &acks, &ctx)?;
        // Nothing after the op in flight ran.
        touched.insert(in_flight + 1);
        check_ops(&db, &model, &touched, &ctx)?;
        check_log(&db, &model, from, &ctx)?;
        if round % full_every == full_every - 1 {
            check_all(&db, &model, &ctx)?;
        }
        next = in_flight + 1;
    }

    // Early rounds' data must have survived every later crash and repair.
    let db = common::open(dir.path(), DB)?;
    check_all(&db, &model, "final check")?;
    let size = std::fs::metadata(db.path().join("data.redb")).map_or(0, |m| m.len());
    print_summary(seed, kills, started, &model, &stats, size);
    Ok(())
}
