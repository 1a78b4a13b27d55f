//! Sealing records to their location, and the keyed tags that replace names and ids.
//!
//! Invariant: every value written to storage passes through [`Vault::seal`] with the
//! table and the exact storage key as associated data, so a value moved to another key
//! or table, or edited, fails [`Vault::open`] with a corruption error naming the table.

use blazedb_core::{DocId, Error};
use blazedb_crypto::{KeyRing, TagKind};
use blazedb_storage::Table;

/// Length of a collection tag (the prefix of every document key of the collection).
pub(crate) const COLL_TAG_LEN: usize = 16;
/// Length of a document key: collection tag ‖ id tag.
pub(crate) const DOC_KEY_LEN: usize = 32;

pub(crate) type CollTag = [u8; COLL_TAG_LEN];
pub(crate) type DocKey = [u8; DOC_KEY_LEN];

/// The data key's subkeys, put to work.
pub(crate) struct Vault {
    ring: KeyRing,
}

impl Vault {
    pub(crate) fn new(ring: KeyRing) -> Self {
        Self { ring }
    }

    /// The tag standing for collection `name` on disk.
    pub(crate) fn coll_tag(&self, name: &str) -> CollTag {
        self.ring
            .tag16(TagKind::Name, &[b"collection", name.as_bytes()])
    }

    /// The storage key of document `id` in the collection tagged `coll`. Keyed per
    /// collection, so the same id in two collections gives unrelated keys.
    pub(crate) fn doc_key(&self, coll: &CollTag, id: DocId) -> DocKey {
        let mut key = [0u8; DOC_KEY_LEN];
        key[..COLL_TAG_LEN].copy_from_slice(coll);
        key[COLL_TAG_LEN..].copy_from_slice(&self.ring.tag16(TagKind::Id, &[coll, id.as_bytes()]));
        key
    }

    /// A name tag over `parts` (for index names and other named objects).
    pub(crate) fn name_tag(&self, parts: &[&[u8]]) -> [u8; 16] {
        self.ring.tag16(TagKind::Name, parts)
    }

    /// The tag of an auxiliary namespace.
    pub(crate) fn aux_ns_tag(&self, ns: &str) -> [u8; 16] {
        self.ring.tag16(TagKind::Name, &[b"aux", ns.as_bytes()])
    }

    /// The storage key of `key` in auxiliary namespace `ns`.
    pub(crate) fn aux_key(&self, ns_tag: &[u8; 16], key: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(ns_tag);
        out[16..].copy_from_slice(&self.ring.tag16(TagKind::Id, &[ns_tag, key]));
        out
    }

    fn aad(table: Table, key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(1 + key.len());
        aad.push(table.code());
        aad.extend_from_slice(key);
        aad
    }

    /// Seals `plain` for storage under `key` in `table`.
    pub(crate) fn seal(&self, table: Table, key: &[u8], plain: &[u8]) -> Vec<u8> {
        self.ring.seal_key().seal(&Self::aad(table, key), plain)
    }

    /// Opens a value read from `key` in `table`.
    pub(crate) fn open(&self, table: Table, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Error> {
        self.ring
            .seal_key()
            .open(&Self::aad(table, key), sealed)
            .map_err(|e| {
                Error::corrupt_record(
                    table.name(),
                    format!("{e} (value edited, moved or damaged)"),
                )
            })
    }
}
