//! [`ValueCache`]: values decoded by a higher layer (the engine's index nodes), kept in
//! memory so that a read of an unchanged record skips the engine lookup, the decryption
//! and the decoding.
//!
//! A cached value must be exactly what its reader would decode from the record in its
//! own snapshot. The invariant that guarantees it:
//!
//! - `seq` is even while no commit is being published and odd while one is. A commit
//!   makes it odd, removes every key it wrote from the cache (or empties the cache when
//!   it does not know them all), makes the redb commit visible, and makes `seq` even
//!   again (`G` → `G + 2`).
//! - A read transaction reads `seq` before and after beginning its redb snapshot; if both
//!   are the same even `G`, no commit was published in between, so its snapshot is the
//!   state at `G`. Otherwise it does not use the cache at all.
//! - An entry stores `from`, the `G` of the snapshot that decoded it, and is inserted
//!   only while `seq == from` (checked under `insert`'s lock, which the commit holds while
//!   it invalidates): the record has not changed between `from` and now, and every later
//!   change of it removes the entry first. So an entry present now is the record's value
//!   at every `G ≥ from` up to now, and a reader at `G` uses it only if `from ≤ G`.
//!
//! Write transactions never use it (they see their own writes).

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{OptionsBuilder, Weighter};

use crate::Table;

/// Bytes an entry is charged beyond its value's own estimate (inline key, bookkeeping).
const ENTRY_OVERHEAD: u64 = 128;

/// Longest key the cache holds (documents' keys are 32 bytes, index nodes' 24); a
/// longer key is never cached. Keys live inline: no allocation per entry for them.
const KEY_MAX: usize = 32;

/// A storage key, inline.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    len: u8,
    bytes: [u8; KEY_MAX],
}

impl std::hash::Hash for Key {
    /// One word for the hasher: the key's 8-byte words folded (their bytes are keyed
    /// tags and counters, see [`Hasher`]), so a lookup hashes 8 bytes, not 33.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut folded = u64::from(self.len);
        for word in self.bytes.as_chunks::<8>().0 {
            folded = (folded ^ u64::from_le_bytes(*word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        state.write_u64(folded);
    }
}

impl Key {
    fn new(key: &[u8]) -> Option<Key> {
        let mut bytes = [0u8; KEY_MAX];
        bytes.get_mut(..key.len())?.copy_from_slice(key);
        Some(Key {
            len: key.len() as u8,
            bytes,
        })
    }
}

/// Keys are keyed tags (HMAC outputs) and counters, never chosen by someone without the
/// database key, so a fast non-cryptographic hash is enough (SipHash was a third of a
/// cache miss's extra work, measured with cachegrind).
type Hasher = foldhash::fast::RandomState;

/// A decoded value as the cache holds it.
#[derive(Clone)]
struct Entry {
    /// The `seq` of the snapshot that decoded it (see the module's invariant).
    from: u64,
    weight: u64,
    value: Arc<dyn Any + Send + Sync>,
}

#[derive(Clone)]
struct ByWeight;

impl Weighter<Key, Entry> for ByWeight {
    fn weight(&self, _: &Key, e: &Entry) -> u64 {
        e.weight + ENTRY_OVERHEAD
    }
}

type Map = Cache<Key, Entry, ByWeight, Hasher, DefaultLifecycle<Key, Entry>>;

/// The tables whose values are cached. Documents are not: on reads spread over more
/// documents than the cache holds, a miss paid more than a hit saved (measured with
/// `blazedb-bench query` at 100,000 documents: random gets 3.6 -> 4.1 us, replacing puts
/// +10 us), while index nodes are few and read by every query.
const CACHED: [Table; 1] = [Table::Index];

fn slot(t: Table) -> Option<usize> {
    CACHED.iter().position(|c| *c == t)
}

/// The decoded-value cache of one store (see the module documentation).
pub(crate) struct ValueCache {
    seq: AtomicU64,
    /// Held by inserts while they check `seq`, and by a commit while it makes `seq` odd
    /// and invalidates, so no insert checks an even `seq` between the two.
    lock: Mutex<()>,
    /// One map per cached table; `None` when the cache is off (capacity 0).
    maps: Option<[Map; CACHED.len()]>,
}

impl ValueCache {
    /// A cache holding at most about `bytes` (0 turns it off).
    pub(crate) fn new(bytes: u64) -> Self {
        let maps = (bytes > 0).then(|| {
            std::array::from_fn(|_| {
                let per_table = (bytes / CACHED.len() as u64).max(1);
                let options = OptionsBuilder::new()
                    // Sizes the table the cache allocates up front; the weight is what
                    // bounds it. An index node is charged ~4 KiB (64 keys of ~30 bytes, as
                    // a buffer each and sealed), so this is about what fits.
                    .estimated_items_capacity((per_table / 4096).clamp(16, 1 << 20) as usize)
                    .weight_capacity(per_table)
                    .build();
                match options {
                    Ok(o) => Map::with_options(
                        o,
                        ByWeight,
                        Hasher::default(),
                        DefaultLifecycle::default(),
                    ),
                    // Only an items capacity of 0 is refused, and it is at least 16.
                    Err(_) => unreachable!("cache options are always valid"),
                }
            })
        });
        Self {
            seq: AtomicU64::new(0),
            lock: Mutex::new(()),
            maps,
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `begin` (which starts a redb snapshot) and returns the `seq` that snapshot
    /// is at, or `None` if a commit was published meanwhile. (With the cache off the
    /// sequence still counts commits: `snapshot.rs` shares snapshots by it.)
    pub(crate) fn snapshot<T>(&self, begin: impl FnOnce() -> T) -> (T, Option<u64>) {
        let before = self.seq.load(Ordering::Acquire);
        let t = begin();
        let after = self.seq.load(Ordering::Acquire);
        let at = (before == after && before.is_multiple_of(2)).then_some(before);
        (t, at)
    }

    /// The commit sequence now (odd while a commit is being published).
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// The value cached for `key` of table `t`, if one is valid at snapshot `at`.
    pub(crate) fn get(&self, t: Table, key: &[u8], at: u64) -> Option<Arc<dyn Any + Send + Sync>> {
        let map = &self.maps.as_ref()?[slot(t)?];
        map.get(&Key::new(key)?)
            .filter(|e| e.from <= at)
            .map(|e| e.value)
    }

    /// Caches `value` (of about `weight` bytes) for `key`, as decoded in snapshot `at`,
    /// unless a commit has been published since.
    pub(crate) fn insert(
        &self,
        t: Table,
        key: &[u8],
        at: u64,
        weight: usize,
        value: Arc<dyn Any + Send + Sync>,
    ) {
        let Some(map) = self.maps.as_ref().and_then(|m| slot(t).map(|i| &m[i])) else {
            return;
        };
        let Some(key) = Key::new(key) else {
            return;
        };
        let _held = self.locked();
        if self.seq.load(Ordering::Acquire) != at {
            return;
        }
        map.insert(
            key,
            Entry {
                from: at,
                weight: weight as u64,
                value,
            },
        );
    }

    /// Publishes a commit: `written` lists the `(table, key)` pairs it wrote, or is
    /// `None` if they are not known (every cached value is dropped then). `publish` makes
    /// the commit visible to new snapshots; its result is returned.
    pub(crate) fn publish<R>(
        &self,
        written: Option<&mut dyn Iterator<Item = (Table, &[u8])>>,
        publish: impl FnOnce() -> R,
    ) -> R {
        {
            let _held = self.locked();
            self.seq.fetch_add(1, Ordering::AcqRel);
            if let Some(maps) = &self.maps {
                match written {
                    Some(keys) => {
                        for (t, key) in keys {
                            if let (Some(i), Some(key)) = (slot(t), Key::new(key)) {
                                maps[i].remove(&key);
                            }
                        }
                    }
                    None => maps.iter().for_each(Map::clear),
                }
            }
        }
        // Whatever `publish` did (even failing halfway), every key it can have changed
        // is gone from the cache, and no insert succeeds until `seq` is even again.
        let result = publish();
        self.seq.fetch_add(1, Ordering::AcqRel);
        result
    }
}
