//! The commit journal: one appended frame per commit, so a durable commit costs one
//! sequential write and one `fdatasync` instead of redb's copy-on-write of every touched
//! page (docs/format.md, "The commit journal").
//!
//! Every commit is made in redb non-durably (visible at once, persisted by the next
//! durable redb commit) and its table operations, already sealed by the engine, are
//! appended to the journal file beside the data file. A durable commit returns once the
//! journal is synced (grouped: one sync covers every frame written before it). A
//! *checkpoint* is a durable redb commit that also stores the next *epoch*; after it the
//! journal is written again from offset 0 under that epoch.
//!
//! Invariants:
//! - Frames of the data file's stored epoch E, read from offset 0 with sequence numbers
//!   0, 1, 2, … and the cycle id of frame 0, until the first frame that fails, are
//!   the commits made since the checkpoint that stored E, in commit order. Every other
//!   frame in the file has another epoch (epochs are random, drawn at each checkpoint,
//!   so a copy of the data file restored beside another journal matches none of its
//!   frames), or epoch E and another cycle id (left by a session that a crash ended with
//!   a torn frame before them, so none of them was acknowledged), and is never applied.
//! - Every journaled commit also writes its frame's position (epoch, cycle, sequence)
//!   into the data file, in the same redb transaction. Whatever prefix of commits redb
//!   persists (a durable commit, or non-durable ones it makes durable when it closes, as
//!   it does after a failed journal write), the replay skips the frames that prefix
//!   already holds. An open that finds any frame or position of its epoch moves to a new
//!   epoch, so a session never continues an epoch an earlier session wrote to.
//! - Each cycle (a new journal at open, or after a checkpoint) draws a fresh random
//!   cycle id: a new cycle's frames can end exactly where an old cycle's later frames
//!   begin, and the id keeps those out of the replay.
//! - A frame is appended while the journal lock is held from before its redb commit to
//!   after the append, so frames are in commit order and a checkpoint (which takes the
//!   lock while holding redb's writer lock) sees every commit's frame.
//! - Replay applies absolute puts and removes in order, so replaying frames whose effect
//!   is already in the file changes nothing (idempotent).
//! - A torn frame (a crash during its write) fails its check; it was never synced, so no
//!   commit it or a later frame holds was acknowledged as durable.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::StorageError;
use crate::table::Table;

/// The magic of the frames this version writes: their check is XXH3-128.
const MAGIC: [u8; 4] = *b"BZJ2";
/// The magic of frames written before: their check is the first 16 bytes of SHA-256.
/// Still read, so a journal left by an older version replays.
const MAGIC_SHA: [u8; 4] = *b"BZJ1";
/// magic ‖ payload length (u32 LE) ‖ epoch (u64 LE) ‖ cycle id (u64 LE) ‖ sequence
/// (u64 LE).
const HEADER: usize = 4 + 4 + 8 + 8 + 8;
/// The check over header and payload: 16 bytes.
const CHECK: usize = 16;
/// The largest payload a frame holds. A transaction whose operations exceed it commits
/// as a checkpoint (one durable redb commit) instead: large transactions gain nothing
/// from the journal and would only be written twice.
pub(crate) const FRAME_PAYLOAD_MAX: usize = 1 << 20;
/// Once the journal holds this many bytes (by default; `StoreOptions::checkpoint_bytes`),
/// the next commit runs a checkpoint, so the journal (and redb's pending non-durable
/// state) stays bounded.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 4 << 20;
/// The journal grows in steps of this many bytes of zeros, written ahead of the frames:
/// overwriting allocated blocks syncs without a metadata update, so an append that
/// stays inside them costs one data write (measured on ext4: ~120 µs against ~160 µs for
/// an append that grows the file). Small, so a small database's journal stays small.
const GROW_STEP: u64 = 64 << 10;

const OP_INSERT: u8 = 1;
const OP_REMOVE: u8 = 2;

/// The operations of one write transaction, encoded as they are made (the frame's
/// payload). Once it outgrows [`FRAME_PAYLOAD_MAX`] it stops recording: the transaction
/// then commits as a checkpoint.
#[derive(Default)]
pub(crate) struct OpLog {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl OpLog {
    pub(crate) fn insert(&mut self, t: Table, key: &[u8], value: &[u8]) {
        self.push(t, OP_INSERT, key, Some(value));
    }

    pub(crate) fn remove(&mut self, t: Table, key: &[u8]) {
        self.push(t, OP_REMOVE, key, None);
    }

    fn push(&mut self, t: Table, op: u8, key: &[u8], value: Option<&[u8]>) {
        if self.overflowed {
            return;
        }
        let need = 2 + 4 + key.len() + value.map_or(0, |v| 4 + v.len());
        if self.bytes.len() + need > FRAME_PAYLOAD_MAX {
            self.overflowed = true;
            self.bytes = Vec::new();
            return;
        }
        self.bytes.push(t.code());
        self.bytes.push(op);
        push_bytes(&mut self.bytes, key);
        if let Some(v) = value {
            push_bytes(&mut self.bytes, v);
        }
    }

    /// Whether the operations no longer fit one frame.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub(crate) fn payload(&self) -> &[u8] {
        &self.bytes
    }
}

fn push_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths fit: the whole payload is at most FRAME_PAYLOAD_MAX.
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// One decoded operation of a frame.
pub(crate) enum Op<'a> {
    Insert(Table, &'a [u8], &'a [u8]),
    Remove(Table, &'a [u8]),
}

/// Decodes a frame's payload. The frame passed its check, so a payload that does not
/// decode is damage (or tampering), never a torn write.
pub(crate) fn decode_ops(mut p: &[u8]) -> Result<Vec<Op<'_>>, StorageError> {
    let bad = |what: &str| StorageError::Corrupted(format!("journal frame: {what}"));
    let mut ops = Vec::new();
    while !p.is_empty() {
        let [code, op, rest @ ..] = p else {
            return Err(bad("truncated operation"));
        };
        let t = Table::from_code(*code).ok_or_else(|| bad("unknown table"))?;
        let (key, rest) = take_bytes(rest).ok_or_else(|| bad("truncated key"))?;
        p = match *op {
            OP_INSERT => {
                let (value, rest) = take_bytes(rest).ok_or_else(|| bad("truncated value"))?;
                ops.push(Op::Insert(t, key, value));
                rest
            }
            OP_REMOVE => {
                ops.push(Op::Remove(t, key));
                rest
            }
            _ => return Err(bad("unknown operation")),
        };
    }
    Ok(ops)
}

fn take_bytes(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = p.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A frame's check over its header (which begins with the magic that names the hash)
/// and payload. The check finds torn and damaged frames; it is not a seal (the payload's
/// values are sealed records, and anyone who can write the file could recompute any
/// unkeyed hash), so a fast non-cryptographic hash does the job: XXH3-128, which is what
/// redb checks its pages with. SHA-256 cost ~4 % of a remote batch's apply (profiled).
fn check_of(header: &[u8], payload: &[u8]) -> [u8; CHECK] {
    if header[..4] == MAGIC_SHA {
        let mut h = Sha256::new();
        h.update(header);
        h.update(payload);
        let mut out = [0u8; CHECK];
        out.copy_from_slice(&h.finalize()[..CHECK]);
        return out;
    }
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    h.update(header);
    h.update(payload);
    h.digest128().to_le_bytes()
}

/// The journal's path for a data file: beside it, `<name>.journal`.
pub(crate) fn path_for(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_owned();
    name.push(".journal");
    data.with_file_name(name)
}

/// A frame read back: its cycle id, sequence number and payload.
pub(crate) type Frame<'a> = (u64, u64, &'a [u8]);

/// Reads the frames of one epoch from a journal file, in order, until the first frame
/// that is absent, torn, of another epoch or out of sequence.
pub(crate) struct Frames {
    file: Option<File>,
    epoch: u64,
    /// The cycle id of frame 0, once read: every later frame must carry it.
    cycle: Option<u64>,
    seq: u64,
    payload: Vec<u8>,
}

impl Frames {
    /// The frames of `epoch` in the journal at `path` (none if the file is missing).
    pub(crate) fn open(path: &Path, epoch: u64) -> Result<Frames, StorageError> {
        let file = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Frames {
            file,
            epoch,
            cycle: None,
            seq: 0,
            payload: Vec::new(),
        })
    }

    /// The next frame's cycle id, sequence number and payload, or `None` where the
    /// epoch's frames end.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, StorageError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        let mut header = [0u8; HEADER];
        if !read_full(file, &mut header)? {
            return Ok(self.end());
        }
        let field = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let cycle = field(16);
        if (header[..4] != MAGIC && header[..4] != MAGIC_SHA)
            || len > FRAME_PAYLOAD_MAX
            || field(8) != self.epoch
            || self.cycle.is_some_and(|c| c != cycle)
            || field(24) != self.seq
        {
            return Ok(self.end());
        }
        self.payload.resize(len + CHECK, 0);
        if !read_full(file, &mut self.payload)? {
            return Ok(self.end());
        }
        let (body, check) = self.payload.split_at(len);
        if check != check_of(&header, body) {
            return Ok(self.end());
        }
        self.cycle = Some(cycle);
        self.seq += 1;
        Ok(Some((cycle, self.seq - 1, &self.payload[..len])))
    }

    fn end<T>(&mut self) -> Option<T> {
        self.file = None;
        None
    }
}

/// Writes every byte of `bufs` (what `Write::write_all_vectored` does, which is not
/// stable yet).
fn write_all_vectored(mut f: &File, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match f.write_vectored(bufs) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` from `file`; `false` if the file ends first (a torn or absent frame).
fn read_full(file: &mut File, buf: &mut [u8]) -> Result<bool, StorageError> {
    match file.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The writing side of a store's journal (held under the store's journal lock).
pub(crate) struct Journal {
    path: PathBuf,
    /// Opened (created if needed) at the first append.
    file: Option<Arc<File>>,
    /// The epoch stored in the data file's durable state: frames are written under it.
    epoch: u64,
    /// This cycle's id (see the module's invariants).
    cycle: u64,
    /// Sequence number of the next frame in this epoch.
    next_seq: u64,
    /// Where the next frame goes.
    offset: u64,
    /// The file's length: bytes up to it are allocated (zeros or old frames).
    allocated: u64,
    /// Frames written since the open, and the one whose write fails (tests only).
    written: u64,
    fail_at: Option<u64>,
}

impl Journal {
    pub(crate) fn new(data: &Path, epoch: u64, fail_at: Option<u64>) -> Self {
        Self {
            path: path_for(data),
            file: None,
            epoch,
            cycle: random_id(),
            next_seq: 0,
            offset: 0,
            allocated: 0,
            written: 0,
            fail_at,
        }
    }

    /// Where the next frame goes in the order of frames: (epoch, cycle id, sequence).
    pub(crate) fn next_position(&self) -> (u64, u64, u64) {
        (self.epoch, self.cycle, self.next_seq)
    }

    /// Bytes written in this epoch.
    pub(crate) fn len(&self) -> u64 {
        self.offset
    }

    /// The open file, for a sync outside the lock (`None` before the first append).
    pub(crate) fn file(&self) -> Option<Arc<File>> {
        self.file.clone()
    }

    /// Appends one frame holding `payload` (not synced).
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<(), StorageError> {
        if self.fail_at == Some(self.written) {
            return Err(std::io::Error::from(ErrorKind::StorageFull).into());
        }
        self.written += 1;
        let file = match &self.file {
            Some(f) => Arc::clone(f),
            None => {
                let f = Arc::new(open_or_create(&self.path)?);
                self.allocated = f.metadata()?.len();
                self.file = Some(Arc::clone(&f));
                f
            }
        };
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        header[16..24].copy_from_slice(&self.cycle.to_le_bytes());
        header[24..32].copy_from_slice(&self.next_seq.to_le_bytes());
        let check = check_of(&header, payload);
        let frame_len = (HEADER + payload.len() + CHECK) as u64;
        let end = self.offset + frame_len;
        let mut f: &File = &file;
        if end > self.allocated {
            // Zeros ahead (never a valid frame), written with this frame and synced
            // with it; the length change costs one metadata update per step.
            let grown = end.div_ceil(GROW_STEP) * GROW_STEP;
            f.seek(SeekFrom::Start(self.allocated))?;
            f.write_all(&vec![0u8; (grown - self.allocated) as usize])?;
            self.allocated = grown;
        }
        f.seek(SeekFrom::Start(self.offset))?;
        // The three parts in one vectored write, so the payload (up to 1 MiB) is not
        // copied into a frame buffer first.
        write_all_vectored(
            f,
            &mut [
                IoSlice::new(&header),
                IoSlice::new(payload),
                IoSlice::new(&check),
            ],
        )?;
        self.offset += frame_len;
        self.next_seq += 1;
        Ok(())
    }

    /// A checkpoint stored `epoch` durably: the frames so far are in the data file, and
    /// the next frame starts a new cycle at offset 0.
    pub(crate) fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.cycle = random_id();
        self.next_seq = 0;
        self.offset = 0;
    }
}

/// A random 64-bit id (epochs and cycle ids): the standard library's per-process random
/// hash keys (drawn from the operating system), mixed with the time and a counter. Only
/// distinctness matters, not secrecy.
pub(crate) fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.write_u32(std::process::id());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish()
}

/// Opens the journal for writing, creating it owner-only and making its directory entry
/// durable (a synced frame in a file whose name a power cut lost would be lost too).
fn open_or_create(path: &Path) -> Result<File, StorageError> {
    let mut new_file = OpenOptions::new();
    new_file.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut new_file, 0o600);
    match new_file.open(path) {
        Ok(f) => {
            sync_parent(path)?;
            Ok(f)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let f = OpenOptions::new().read(true).write(true).open(path)?;
            // An earlier session may have created it and failed before its directory
            // sync: make the name durable before a frame in it can be acknowledged.
            sync_parent(path)?;
            Ok(f)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes a new or renamed entry in `path`'s directory durable (fsync of the directory).
pub(crate) fn sync_parent(path: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
