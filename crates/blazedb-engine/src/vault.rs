//! Sealing records to their location, and the keyed tags that replace names and ids.
//!
//! Invariant: every value written to storage passes through [`Vault::seal`] with the
//! table and the exact storage key as associated data, so a value moved to another key
//! or table, or edited, fails [`Vault::open`] with a corruption error naming the table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{PoisonError, RwLock};

use blazedb_core::limits::DOCUMENT_BYTES_MAX;
use blazedb_core::{DocId, Error};
use blazedb_crypto::seal::padded_len;
use blazedb_crypto::{CryptoError, KeyRing, TagKind};
use blazedb_storage::Table;

use crate::codec::{RECORD_VERSION, RECORD_VERSION_HASHED_KEYS, RECORD_VERSION_ORDERED_AUX};

/// Length of a collection tag (the prefix of every document key of the collection).
pub(crate) const COLL_TAG_LEN: usize = 16;
/// Length of a document key: collection tag ‖ id tag.
pub(crate) const DOC_KEY_LEN: usize = 32;
/// Most names kept in each tag cache (more names are tagged on each use).
const TAG_CACHE_MAX: usize = 4096;

pub(crate) type CollTag = [u8; COLL_TAG_LEN];
pub(crate) type DocKey = [u8; DOC_KEY_LEN];

/// The 48 bits of a document key's order part.
const ORDER_MASK: u64 = (1 << 48) - 1;

/// The auxiliary namespace of per-document records (the sync layer's merge states):
/// each record's key ends with its document's id, and from format 4 its storage key
/// is ordered by that id's time as document keys are (`Vault::aux_key_in`).
pub const DOC_NS: &str = "sync.doc";

/// Record kind (the sealed value's kind, see `blazedb_crypto::seal`): the plaintext as
/// encoded.
const KIND_PLAIN: u8 = 0;
/// Record kind: an LZ4 block of the encoded plaintext, after its length (u32, little
/// endian). Written from format 3 on, where it makes the sealed value smaller.
const KIND_LZ4: u8 = 1;
/// The longest plaintext a compressed record may have (a document and what a change
/// entry adds to it, with room); longer ones are stored as they are.
const COMPRESSED_PLAIN_MAX: usize = 2 * DOCUMENT_BYTES_MAX;
/// The shortest plaintext worth an attempt. Each attempt costs a fixed ~0.3–0.5 µs (the
/// compressor allocates and zeroes an 8 KiB table), ~10 % of a small document's insert;
/// on the benchmark's ~200-byte documents it saved 1.6 % of their bytes (few cross a
/// 64-byte bucket). Above this, text saves far more than the attempt costs.
const COMPRESS_MIN: usize = 256;

/// How document keys are made (stored as the format record's version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyLayout {
    /// Format 1: collection tag ‖ id tag (16 bytes). Keys are in random order: inserts
    /// land all over the B-tree.
    Hashed,
    /// Format 2: collection tag ‖ order (6 bytes) ‖ id tag bytes 6..16. For a UUIDv7 the
    /// order is its millisecond timestamp plus a secret offset (mod 2^48), so documents
    /// created later sort later and inserts append; for other ids, the id tag's first
    /// six bytes. See `Vault::doc_key` and docs/security.md.
    Ordered,
}

/// The data key's subkeys, put to work.
pub(crate) struct Vault {
    ring: KeyRing,
    /// Collection name → tag: saves one HMAC per operation.
    tags: RwLock<HashMap<String, CollTag>>,
    /// Auxiliary namespace name → tag, and auxiliary log name → tag: the sync layer
    /// names a handful, on every record it touches (two of the ~7 HMACs of applying
    /// one remote write).
    aux_tags: RwLock<HashMap<String, [u8; 16]>>,
    aux_log_tags: RwLock<HashMap<String, [u8; 16]>>,
    /// The format version of the data file (1 = [`KeyLayout::Hashed`], 2 = ordered keys,
    /// 3 = records may be compressed). Set from the format record at open; changes only
    /// while the upgrade that rewrites every document holds the only handle.
    format: AtomicU32,
    /// Whether records are compressed where it pays (`OpenOptions::compression`); only
    /// in format 3.
    compression: AtomicBool,
    /// The secret offset added to UUIDv7 timestamps in ordered keys, so keys show
    /// creation times relative to each other, not the dates.
    time_offset: u64,
    /// The same for the per-document auxiliary records ([`DOC_NS`]): another offset, so
    /// a record's order part is not its document's.
    aux_time_offset: u64,
    /// The namespace tag of [`DOC_NS`].
    doc_ns_tag: [u8; 16],
}

/// The tag of auxiliary namespace `ns`.
fn aux_ns_tag_of(ring: &KeyRing, ns: &str) -> [u8; 16] {
    ring.tag16(TagKind::Name, &[b"aux", ns.as_bytes()])
}

/// The six order bytes of an ordered key for id bytes `id` whose keyed tag is `tag`:
/// for a UUIDv7 (version nibble 7: the first 48 bits are a Unix time in milliseconds)
/// its time plus the secret `offset`, so later ids sort later; for any other id the
/// tag's first six bytes (an id the application chose may mean something in its bits,
/// so they are not shown; the keyed tag places it).
fn order_part(id: &[u8; 16], tag: &[u8; 16], offset: u64) -> [u8; 6] {
    let b = id;
    let order = if b[6] >> 4 == 7 {
        let ms = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
        ms.wrapping_add(offset) & ORDER_MASK
    } else {
        u64::from_be_bytes([0, 0, tag[0], tag[1], tag[2], tag[3], tag[4], tag[5]])
    };
    let mut out = [0u8; 6];
    out.copy_from_slice(&order.to_be_bytes()[2..]);
    out
}

/// The tag of `name` from `cache`, computed by `tag` and kept (up to
/// [`TAG_CACHE_MAX`] names) when missing. A tag depends only on the key and the name,
/// so a cached one is always right.
fn cached_tag(
    cache: &RwLock<HashMap<String, [u8; 16]>>,
    name: &str,
    tag: impl FnOnce() -> [u8; 16],
) -> [u8; 16] {
    if let Some(t) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
    {
        return *t;
    }
    let t = tag();
    let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
    if cache.len() < TAG_CACHE_MAX {
        cache.insert(name.to_owned(), t);
    }
    t
}

impl Vault {
    /// A vault for the current layout ([`KeyLayout::Ordered`]); an opened database sets
    /// its own with [`Vault::set_layout`].
    pub(crate) fn new(ring: KeyRing) -> Self {
        let offset = |name: &[u8]| {
            let t = ring.tag16(TagKind::Name, &[name]);
            let mut b = [0u8; 8];
            b.copy_from_slice(&t[..8]);
            u64::from_be_bytes(b) & ORDER_MASK
        };
        let time_offset = offset(b"doc-key-time-offset");
        let aux_time_offset = offset(b"aux-key-time-offset");
        let doc_ns_tag = aux_ns_tag_of(&ring, DOC_NS);
        Self {
            ring,
            tags: RwLock::new(HashMap::new()),
            aux_tags: RwLock::new(HashMap::new()),
            aux_log_tags: RwLock::new(HashMap::new()),
            format: AtomicU32::new(RECORD_VERSION),
            compression: AtomicBool::new(true),
            time_offset,
            aux_time_offset,
            doc_ns_tag,
        }
    }

    /// The document key layout in use.
    pub(crate) fn layout(&self) -> KeyLayout {
        if self.format() == RECORD_VERSION_HASHED_KEYS {
            KeyLayout::Hashed
        } else {
            KeyLayout::Ordered
        }
    }

    /// The data file's format version.
    pub(crate) fn format(&self) -> u32 {
        self.format.load(Ordering::Acquire)
    }

    pub(crate) fn set_format(&self, version: u32) {
        self.format.store(version, Ordering::Release);
    }

    /// Whether [`Vault::seal_record`] may compress (`false` turns compression off).
    pub(crate) fn set_compression(&self, on: bool) {
        self.compression.store(on, Ordering::Release);
    }

    /// The tag standing for collection `name` on disk.
    pub(crate) fn coll_tag(&self, name: &str) -> CollTag {
        cached_tag(&self.tags, name, || {
            self.ring
                .tag16(TagKind::Name, &[b"collection", name.as_bytes()])
        })
    }

    /// The storage key of document `id` in the collection tagged `coll`, in the layout
    /// in use. Keyed per collection, so the same id in two collections gives unrelated
    /// keys.
    pub(crate) fn doc_key(&self, coll: &CollTag, id: DocId) -> DocKey {
        self.doc_key_in(self.layout(), coll, id)
    }

    /// The storage key of document `id` in layout `layout`.
    pub(crate) fn doc_key_in(&self, layout: KeyLayout, coll: &CollTag, id: DocId) -> DocKey {
        let mut key = [0u8; DOC_KEY_LEN];
        key[..COLL_TAG_LEN].copy_from_slice(coll);
        let tag = self.ring.tag16(TagKind::Id, &[coll, id.as_bytes()]);
        match layout {
            KeyLayout::Hashed => key[COLL_TAG_LEN..].copy_from_slice(&tag),
            KeyLayout::Ordered => {
                key[COLL_TAG_LEN..].copy_from_slice(&tag);
                key[COLL_TAG_LEN..COLL_TAG_LEN + 6].copy_from_slice(&order_part(
                    id.as_bytes(),
                    &tag,
                    self.time_offset,
                ));
            }
        }
        key
    }

    /// A name tag over `parts` (for index names and other named objects).
    pub(crate) fn name_tag(&self, parts: &[&[u8]]) -> [u8; 16] {
        self.ring.tag16(TagKind::Name, parts)
    }

    /// The tag of an auxiliary namespace.
    pub(crate) fn aux_ns_tag(&self, ns: &str) -> [u8; 16] {
        cached_tag(&self.aux_tags, ns, || aux_ns_tag_of(&self.ring, ns))
    }

    /// The tag of an auxiliary log (a domain apart from namespace tags).
    pub(crate) fn aux_log_tag(&self, ns: &str) -> [u8; 16] {
        cached_tag(&self.aux_log_tags, ns, || {
            self.ring.tag16(TagKind::Name, &[b"aux-log", ns.as_bytes()])
        })
    }

    /// The storage key of `key` in the auxiliary namespace tagged `ns_tag`, in the
    /// database's format.
    pub(crate) fn aux_key(&self, ns_tag: &[u8; 16], key: &[u8]) -> [u8; 32] {
        self.aux_key_in(self.format(), ns_tag, key)
    }

    /// The storage key of `key` in the auxiliary namespace tagged `ns_tag`, in format
    /// `format`: namespace tag ‖ keyed tag of the key. From format 4 a record of the
    /// per-document namespace ([`DOC_NS`], whose keys end with the document's id) puts
    /// the id's order part where the tag's first six bytes were, as a document key
    /// does: records of documents created together are written together (a batch of
    /// new documents touches a few B-tree pages, not one page per document).
    pub(crate) fn aux_key_in(&self, format: u32, ns_tag: &[u8; 16], key: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(ns_tag);
        let tag = self.ring.tag16(TagKind::Id, &[ns_tag, key]);
        out[16..].copy_from_slice(&tag);
        if format >= RECORD_VERSION_ORDERED_AUX
            && *ns_tag == self.doc_ns_tag
            && let Some(id) = key.last_chunk::<16>()
        {
            out[16..22].copy_from_slice(&order_part(id, &tag, self.aux_time_offset));
        }
        out
    }

    /// The namespace tag of the per-document auxiliary records ([`DOC_NS`]).
    pub(crate) fn doc_ns_tag(&self) -> [u8; 16] {
        self.doc_ns_tag
    }

    /// Runs `f` with the associated data `table code ‖ key`, on the stack for the short
    /// keys every table uses.
    fn with_aad<T>(table: Table, key: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
        let mut buf = [0u8; 64];
        if key.len() < buf.len() {
            buf[0] = table.code();
            buf[1..=key.len()].copy_from_slice(key);
            f(&buf[..=key.len()])
        } else {
            let mut aad = Vec::with_capacity(1 + key.len());
            aad.push(table.code());
            aad.extend_from_slice(key);
            f(&aad)
        }
    }

    fn corrupt(table: Table, e: &CryptoError) -> Error {
        Error::corrupt_record(
            table.name(),
            format!("{e} (value edited, moved or damaged)"),
        )
    }

    /// Seals `plain` for storage under `key` in `table`.
    pub(crate) fn seal(&self, table: Table, key: &[u8], plain: &[u8]) -> Vec<u8> {
        Self::with_aad(table, key, |aad| self.ring.seal_key().seal(aad, plain))
    }

    /// Like [`Vault::seal`] for a record that may be large and repetitive (documents,
    /// change entries): from format 3 on, and unless compression is off, an LZ4 block
    /// of `plain` is sealed instead when that lands in a smaller size bucket. Only then:
    /// a record that would not shrink on disk is not paid for twice (compressing on
    /// write, decompressing on every read). See docs/security.md for what a compressed
    /// record's size says.
    pub(crate) fn seal_record(&self, table: Table, key: &[u8], plain: &[u8]) -> Vec<u8> {
        self.seal_record_in(self.format(), table, key, plain)
    }

    /// [`Vault::seal_record`] as format `format` writes it (for the upgrade, which writes
    /// the current format before the file says so).
    pub(crate) fn seal_record_in(
        &self,
        format: u32,
        table: Table,
        key: &[u8],
        plain: &[u8],
    ) -> Vec<u8> {
        if self.compression.load(Ordering::Acquire)
            && format >= 3
            && plain.len() >= COMPRESS_MIN
            && plain.len() <= COMPRESSED_PLAIN_MAX
        {
            let packed = lz4_flex::block::compress_prepend_size(plain);
            if padded_len(packed.len()) < padded_len(plain.len()) {
                return Self::with_aad(table, key, |aad| {
                    self.ring.seal_key().seal_kind(aad, &packed, KIND_LZ4)
                });
            }
        }
        self.seal(table, key, plain)
    }

    /// The plaintext of an opened record of kind `kind`, decompressed if it was
    /// compressed (into `spare`, which then holds it: the caller swaps).
    fn unpack(table: Table, kind: u8, opened: &[u8], spare: &mut Vec<u8>) -> Result<bool, Error> {
        match kind {
            KIND_PLAIN => Ok(false),
            KIND_LZ4 => {
                let fail = |why: &str| {
                    Error::corrupt_record(table.name(), format!("compressed record {why}"))
                };
                let (len, block) = opened
                    .split_first_chunk::<4>()
                    .ok_or_else(|| fail("without its length"))?;
                let len = u32::from_le_bytes(*len) as usize;
                if len > COMPRESSED_PLAIN_MAX {
                    return Err(fail("longer than a record can be"));
                }
                spare.clear();
                spare.resize(len, 0);
                match lz4_flex::block::decompress_into(block, spare) {
                    Ok(n) if n == len => Ok(true),
                    _ => Err(fail("that does not decompress to its length")),
                }
            }
            other => Err(Error::corrupt_record(
                table.name(),
                format!("record of unknown kind {other} (written by a newer release?)"),
            )),
        }
    }

    /// Opens a value read from `key` in `table`.
    pub(crate) fn open(&self, table: Table, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        self.open_vec(table, key, sealed.to_vec())
    }

    /// Opens a value read from `key` in `table` into `out` (cleared first), so a scan
    /// reuses one buffer for every record.
    pub(crate) fn open_into(
        &self,
        table: Table,
        key: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let kind = Self::with_aad(table, key, |aad| {
            self.ring.seal_key().open_into(aad, sealed, out)
        })
        .map_err(|e| Self::corrupt(table, &e))?;
        let mut spare = Vec::new();
        if Self::unpack(table, kind, out, &mut spare)? {
            std::mem::swap(out, &mut spare);
        }
        Ok(())
    }

    /// Opens an owned value, decrypting in its own buffer (no ciphertext copy).
    pub(crate) fn open_vec(
        &self,
        table: Table,
        key: &[u8],
        sealed: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let (mut plain, kind) = Self::with_aad(table, key, |aad| {
            self.ring.seal_key().open_vec_kind(aad, sealed)
        })
        .map_err(|e| Self::corrupt(table, &e))?;
        let mut spare = Vec::new();
        if Self::unpack(table, kind, &plain, &mut spare)? {
            plain = spare;
        }
        Ok(plain)
    }
}
