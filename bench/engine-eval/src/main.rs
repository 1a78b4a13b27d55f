//! Raw storage engines side by side at BlazeDB's record shape: redb (what
//! `blazedb-storage` uses), fjall (an LSM tree, the alternative issue 14 names) and
//! SQLite (a `WITHOUT ROWID` blob table, WAL, `synchronous=FULL`).
//!
//! Records are what BlazeDB stores for a ~200-byte JSON document: a 32-byte key that
//! grows with insertion order (collection tag + time-ordered id) and a 287-byte value
//! of random bytes (sealed records are incompressible). Each engine gets a 128 MiB
//! cache. No BlazeDB code runs here: the figures are the engine's share of each
//! BlazeDB figure, so `BlazeDB today - redb + fjall` estimates BlazeDB on fjall.
//!
//! `engine-eval <redb|fjall|sqlite> small`: bulk insert of 100k in one durable
//! transaction, 1M random gets each in its own snapshot, a warm full scan, 2,000
//! durable one-record commits, the files' size, reopen time.
//! `engine-eval <engine> big`: 1M records loaded in 10 durable transactions, a warm
//! scan, random gets, the files' size.
//! `FJALL_FLUSH=1` (or `major`) writes fjall's memtable to disk tables (and compacts
//! them) before the reads, so they read tables rather than the in-memory memtable.
use std::path::Path;
use std::time::Instant;

const KEY: usize = 32;
const VAL: usize = 287;

fn key(i: u64) -> [u8; KEY] {
    let mut k = [7u8; KEY];
    k[16..24].copy_from_slice(&i.to_be_bytes());
    k[24..32].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
    k
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            c.copy_from_slice(&x[..c.len()]);
        }
    }
}

fn dir_bytes(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut len, mut blocks) = (0, 0);
    if p.is_file() {
        let m = std::fs::metadata(p).unwrap();
        return (m.len(), m.blocks() * 512);
    }
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let (a, b) = dir_bytes(&e.path());
        len += a;
        blocks += b;
    }
    (len, blocks)
}

trait Kv {
    fn bulk(&mut self, from: u64, n: u64, rng: &mut Rng);
    fn commit_one(&mut self, i: u64, rng: &mut Rng);
    fn get(&self, i: u64) -> usize;
    fn scan(&self) -> (u64, u64);
    fn settle(&self) {}
}

// ---------- redb ----------
const T: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("docs");
struct Redb(redb::Database);
impl Redb {
    fn open(p: &Path) -> Self {
        let db = redb::Database::builder()
            .set_cache_size(128 << 20)
            .create(p.join("data.redb"))
            .unwrap();
        Redb(db)
    }
}
impl Kv for Redb {
    fn bulk(&mut self, from: u64, n: u64, rng: &mut Rng) {
        let tx = self.0.begin_write().unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            let mut v = [0u8; VAL];
            for i in from..from + n {
                rng.fill(&mut v);
                t.insert(&key(i)[..], &v[..]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn commit_one(&mut self, i: u64, rng: &mut Rng) {
        let tx = self.0.begin_write().unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            let mut v = [0u8; VAL];
            rng.fill(&mut v);
            t.insert(&key(i)[..], &v[..]).unwrap();
        }
        tx.commit().unwrap();
    }
    fn get(&self, i: u64) -> usize {
        use redb::ReadableDatabase;
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(T).unwrap();
        t.get(&key(i)[..]).unwrap().map_or(0, |g| g.value().len())
    }
    fn scan(&self) -> (u64, u64) {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(T).unwrap();
        let (mut n, mut s) = (0, 0);
        for e in t.iter().unwrap() {
            let (_, v) = e.unwrap();
            n += 1;
            s += v.value().len() as u64;
        }
        (n, s)
    }
}

// ---------- fjall ----------
struct Fjall {
    db: fjall::SingleWriterTxDatabase,
    ks: fjall::SingleWriterTxKeyspace,
}
impl Fjall {
    fn open(p: &Path) -> Self {
        let db = fjall::SingleWriterTxDatabase::builder(p.join("fjall"))
            .cache_size(128 << 20)
            .open()
            .unwrap();
        let ks = db
            .keyspace("docs", || {
                fjall::KeyspaceCreateOptions::default()
                    .data_block_compression_policy(fjall::config::CompressionPolicy::all(
                        fjall::CompressionType::None,
                    ))
                    .expect_point_read_hits(true)
            })
            .unwrap();
        Fjall { db, ks }
    }
}
impl Kv for Fjall {
    fn settle(&self) {
        if std::env::var("FJALL_FLUSH").is_ok() {
            self.ks.inner().rotate_memtable_and_wait().unwrap();
            if std::env::var("FJALL_FLUSH").unwrap() == "major" {
                self.ks.inner().major_compact().unwrap();
            }
        }
    }
    fn bulk(&mut self, from: u64, n: u64, rng: &mut Rng) {
        let mut tx = self
            .db
            .write_tx()
            .durability(Some(fjall::PersistMode::SyncData));
        let mut v = [0u8; VAL];
        for i in from..from + n {
            rng.fill(&mut v);
            tx.insert(&self.ks, &key(i)[..], &v[..]);
        }
        tx.commit().unwrap();
    }
    fn commit_one(&mut self, i: u64, rng: &mut Rng) {
        let mut tx = self
            .db
            .write_tx()
            .durability(Some(fjall::PersistMode::SyncData));
        let mut v = [0u8; VAL];
        rng.fill(&mut v);
        tx.insert(&self.ks, &key(i)[..], &v[..]);
        tx.commit().unwrap();
    }
    fn get(&self, i: u64) -> usize {
        use fjall::Readable;
        let s = self.db.read_tx();
        s.get(&self.ks, key(i)).unwrap().map_or(0, |v| v.len())
    }
    fn scan(&self) -> (u64, u64) {
        use fjall::Readable;
        let s = self.db.read_tx();
        let (mut n, mut sum) = (0, 0);
        for g in s.iter(&self.ks) {
            let (_, v) = g.into_inner().unwrap();
            n += 1;
            sum += v.len() as u64;
        }
        (n, sum)
    }
}

// ---------- SQLite ----------
struct Sqlite(rusqlite::Connection);
impl Sqlite {
    fn open(p: &Path) -> Self {
        let c = rusqlite::Connection::open(p.join("db.sqlite")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-131072;
             CREATE TABLE IF NOT EXISTS docs (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        Sqlite(c)
    }
}
impl Kv for Sqlite {
    fn bulk(&mut self, from: u64, n: u64, rng: &mut Rng) {
        let tx = self.0.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached("INSERT INTO docs VALUES (?1, ?2)")
                .unwrap();
            let mut v = [0u8; VAL];
            for i in from..from + n {
                rng.fill(&mut v);
                st.execute((&key(i)[..], &v[..])).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn commit_one(&mut self, i: u64, rng: &mut Rng) {
        let mut v = [0u8; VAL];
        rng.fill(&mut v);
        self.0
            .prepare_cached("INSERT INTO docs VALUES (?1, ?2)")
            .unwrap()
            .execute((&key(i)[..], &v[..]))
            .unwrap();
    }
    fn get(&self, i: u64) -> usize {
        let mut st = self
            .0
            .prepare_cached("SELECT length(v) FROM docs WHERE k = ?1")
            .unwrap();
        st.query_row([&key(i)[..]], |r| r.get::<_, i64>(0))
            .map_or(0, |x| x as usize)
    }
    fn scan(&self) -> (u64, u64) {
        let mut st = self.0.prepare_cached("SELECT v FROM docs").unwrap();
        let mut rows = st.query([]).unwrap();
        let (mut n, mut s) = (0, 0);
        while let Some(r) = rows.next().unwrap() {
            n += 1;
            s += r.get_ref(0).unwrap().as_blob().unwrap().len() as u64;
        }
        (n, s)
    }
}

fn open(engine: &str, p: &Path) -> Box<dyn Kv> {
    match engine {
        "redb" => Box::new(Redb::open(p)),
        "fjall" => Box::new(Fjall::open(p)),
        _ => Box::new(Sqlite::open(p)),
    }
}

/// Scans every record twice and prints the second (warm) pass.
fn warm_scan(kv: &dyn Kv, engine: &str, n: u64) {
    let _ = kv.scan();
    let t = Instant::now();
    let (c, _) = kv.scan();
    let el = t.elapsed();
    assert_eq!(c, n);
    println!(
        "{engine} warm scan {n}: {:.1} ms ({:.3} us/rec)",
        el.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("redb")
        .to_string();
    let what = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("small")
        .to_string();
    let base = tempfile::tempdir_in(std::env::var("EVAL_DIR").unwrap_or("/tmp".into())).unwrap();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    if what == "small" {
        // bulk 100k, one transaction
        let p = base.path().join("a");
        std::fs::create_dir_all(&p).unwrap();
        let mut kv = open(&engine, &p);
        let n = 100_000;
        let t = Instant::now();
        kv.bulk(0, n, &mut rng);
        let el = t.elapsed();
        println!("{engine} bulk {n}: {:.0}/s", n as f64 / el.as_secs_f64());
        let t = Instant::now();
        kv.settle();
        println!("{engine} settle: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
        // random gets, own snapshot
        let g = 1_000_000u64;
        let mut r2 = Rng(99);
        let t = Instant::now();
        let mut s = 0;
        for _ in 0..g {
            s += kv.get(r2.next() % n);
        }
        let el = t.elapsed();
        assert_eq!(s, g as usize * VAL);
        println!(
            "{engine} gets: {:.0}/s ({:.2} us)",
            g as f64 / el.as_secs_f64(),
            el.as_secs_f64() * 1e6 / g as f64
        );
        warm_scan(&*kv, &engine, n);
        let t = Instant::now();
        let c = 2000;
        for i in 0..c {
            kv.commit_one(10_000_000 + i, &mut rng);
        }
        let el = t.elapsed();
        println!(
            "{engine} durable commits: {:.0}/s",
            c as f64 / el.as_secs_f64()
        );
        drop(kv);
        let (len, disk) = dir_bytes(&p);
        println!(
            "{engine} files after 102k: {:.1} MiB length, {:.1} MiB on disk",
            len as f64 / 1048576.0,
            disk as f64 / 1048576.0
        );
        let t = Instant::now();
        let kv = open(&engine, &p);
        let el = t.elapsed();
        let _ = kv.get(5);
        println!("{engine} reopen: {:.2} ms", el.as_secs_f64() * 1e3);
    } else {
        let p = base.path().join("b");
        std::fs::create_dir_all(&p).unwrap();
        let mut kv = open(&engine, &p);
        let n = 1_000_000u64;
        let t = Instant::now();
        for b in 0..10 {
            kv.bulk(b * 100_000, 100_000, &mut rng);
        }
        let el = t.elapsed();
        println!("{engine} load 1M (10 txns): {:.2} s", el.as_secs_f64());
        let t = Instant::now();
        kv.settle();
        println!("{engine} settle: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
        warm_scan(&*kv, &engine, n);
        let g = 1_000_000u64;
        let mut r2 = Rng(99);
        let t = Instant::now();
        for _ in 0..g {
            kv.get(r2.next() % n);
        }
        let el = t.elapsed();
        println!(
            "{engine} gets at 1M: {:.2} us",
            el.as_secs_f64() * 1e6 / g as f64
        );
        drop(kv);
        let (len, disk) = dir_bytes(&p);
        println!(
            "{engine} files after 1M: {:.1} MiB length, {:.1} MiB on disk (data {:.1} MiB)",
            len as f64 / 1048576.0,
            disk as f64 / 1048576.0,
            (n * (KEY + VAL) as u64) as f64 / 1048576.0
        );
    }
}
