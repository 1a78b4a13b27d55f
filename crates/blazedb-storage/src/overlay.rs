//! [`Overlay`]: the storage backend of a read-only store.
//!
//! redb writes to its file even when nothing is written through it: opening marks the
//! header as in use, an integrity check or crash recovery commits, closing records the
//! allocator state. A read-only store must leave the file's bytes as they were, and
//! still verify page checksums and recover a file a crash left behind. So its backend
//! reads the file through a read-only descriptor (the operating system refuses any
//! write to it) and keeps everything redb writes in memory, in 4 KiB chunks laid over
//! the file, dropped with the store.
//!
//! Invariants:
//! - The file is never written: it is opened read-only.
//! - A read returns what a file would hold after the writes and length changes made so
//!   far: overlaid chunks where written, the file's bytes below `visible`, zeros above.
//! - Bytes at or past `len` are zero in every chunk, and `visible <= len`: growing the
//!   length again reads zeros, as a file does after `set_len`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Bytes per overlaid chunk (redb's page size).
const CHUNK: u64 = 4096;

/// A read-only file with an in-memory layer for whatever the storage engine writes.
#[derive(Debug)]
pub(crate) struct Overlay {
    file: File,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    /// The length the storage engine sees.
    len: u64,
    /// The file's bytes below this offset show through where no chunk is overlaid.
    visible: u64,
    /// Chunk number → its bytes (`CHUNK` long).
    chunks: BTreeMap<u64, Box<[u8]>>,
}

fn past_end() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the file",
    )
}

/// Fills `out` from `file` at `offset` (a positional read: no shared cursor).
#[cfg(unix)]
fn read_at(file: &File, out: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, out, offset)
}

/// Fills `out` from `file` at `offset`.
#[cfg(windows)]
fn read_at(file: &File, mut out: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !out.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, out, offset)?;
        if n == 0 {
            return Err(past_end());
        }
        out = &mut out[n..];
        offset += n as u64;
    }
    Ok(())
}

/// `n` as an index into a buffer of at most `CHUNK` bytes or of a caller's slice.
fn idx(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Overlay {
    /// Lays an empty overlay over `file` (opened read-only by the caller).
    pub(crate) fn new(file: File) -> io::Result<Overlay> {
        let len = file.metadata()?.len();
        Ok(Overlay {
            file,
            state: RwLock::new(State {
                len,
                visible: len,
                chunks: BTreeMap::new(),
            }),
        })
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fills `out` with the underlying bytes at `offset`: the file's below `visible`,
    /// zeros above.
    fn read_below(&self, visible: u64, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let from_file = idx(visible.saturating_sub(offset)).min(out.len());
        let (file_part, zero_part) = out.split_at_mut(from_file);
        if !file_part.is_empty() {
            read_at(&self.file, file_part, offset)?;
        }
        zero_part.fill(0);
        Ok(())
    }
}

impl redb::StorageBackend for Overlay {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.read_state().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        // Held across the file reads: a write cannot overlay a chunk half-way through.
        let s = self.read_state();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|&e| e <= s.len)
            .ok_or_else(past_end)?;
        let mut pos = offset;
        while pos < end {
            let chunk = pos / CHUNK;
            let stop = ((chunk + 1) * CHUNK).min(end);
            let part = &mut out[idx(pos - offset)..idx(stop - offset)];
            match s.chunks.get(&chunk) {
                Some(bytes) => {
                    let at = idx(pos - chunk * CHUNK);
                    part.copy_from_slice(&bytes[at..at + part.len()]);
                }
                None => self.read_below(s.visible, pos, part)?,
            }
            pos = stop;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut s = self.write_state();
        if len < s.len {
            // What lies past the new end is gone: growing again must read zeros.
            s.visible = s.visible.min(len);
            drop(s.chunks.split_off(&len.div_ceil(CHUNK)));
            if let Some(last) = s.chunks.get_mut(&(len / CHUNK)) {
                last[idx(len % CHUNK)..].fill(0);
            }
        }
        s.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        // Nothing reaches the file, so there is nothing to make durable.
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        if data.is_empty() {
            return Ok(());
        }
        let mut s = self.write_state();
        let end = offset.checked_add(data.len() as u64).ok_or_else(past_end)?;
        // Like a file, writing past the end extends it (the gap reads as zeros).
        s.len = s.len.max(end);
        let visible = s.visible;
        let mut pos = offset;
        while pos < end {
            let chunk = pos / CHUNK;
            let start = chunk * CHUNK;
            let stop = (start + CHUNK).min(end);
            let bytes = match s.chunks.entry(chunk) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let mut fresh = vec![0u8; idx(CHUNK)].into_boxed_slice();
                    self.read_below(visible, start, &mut fresh)?;
                    e.insert(fresh)
                }
            };
            let at = idx(pos - start);
            let src = &data[idx(pos - offset)..idx(stop - offset)];
            bytes[at..at + src.len()].copy_from_slice(src);
            pos = stop;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use redb::StorageBackend;

    use super::*;

    /// xorshift64*: a deterministic stream of test inputs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A file of `len` pseudo-random bytes in a fresh directory, opened read-only.
    fn file_of(dir: &tempfile::TempDir, len: usize, rng: &mut Rng) -> (Vec<u8>, File) {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let path = dir.path().join("f");
        let mut f = File::create(&path).expect("create");
        f.write_all(&bytes).expect("write");
        drop(f);
        (bytes, File::open(&path).expect("open read-only"))
    }

    #[test]
    fn reads_match_a_byte_vector_model_across_writes_and_length_changes_and_the_file_never_changes()
    {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let dir = tempfile::tempdir().expect("tempdir");
            // Lengths that are not chunk multiples, so chunks straddle the file's end.
            let len = idx(rng.below(5 * CHUNK) + 1);
            let (original, file) = file_of(&dir, len, &mut rng);
            let overlay = Overlay::new(file).expect("overlay");
            let mut model = original.clone();
            for _ in 0..300 {
                match rng.below(10) {
                    0..=3 => {
                        let at = rng.below(model.len() as u64 + CHUNK);
                        let n = idx(rng.below(2 * CHUNK + 7));
                        let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                        overlay.write(at, &data).expect("write");
                        let end = idx(at) + n;
                        if n > 0 && model.len() < end {
                            model.resize(end, 0);
                        }
                        model[idx(at)..end].copy_from_slice(&data);
                    }
                    4..=5 => {
                        let new_len = rng.below(6 * CHUNK);
                        overlay.set_len(new_len).expect("set_len");
                        model.resize(idx(new_len), 0);
                    }
                    _ => {
                        let at = rng.below(model.len() as u64 + 1);
                        let n = idx(rng.below(model.len() as u64 - at + 1));
                        let mut got = vec![0xAA; n];
                        overlay.read(at, &mut got).expect("read");
                        assert!(
                            got == model[idx(at)..idx(at) + n],
                            "seed {seed}: read of {n} bytes at {at} differs"
                        );
                    }
                }
                assert_eq!(overlay.len().expect("len"), model.len() as u64);
            }
            let mut whole = vec![0; model.len()];
            overlay.read(0, &mut whole).expect("read all");
            assert!(whole == model, "seed {seed}: the whole content differs");
            let past = overlay.read(model.len() as u64, &mut [0u8; 1]);
            assert!(past.is_err(), "reading past the end fails");
            drop(overlay);
            let on_disk = std::fs::read(dir.path().join("f")).expect("read file");
            assert!(on_disk == original, "seed {seed}: the file itself changed");
        }
    }
}
