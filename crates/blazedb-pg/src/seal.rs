//! What Postgres holds, and how: keyed tags for every name, key and id, sealed values
//! for everything else (the same primitives as the embedded database's files).
//!
//! - The data key is random, wrapped under a key derived from the database password
//!   with Argon2id; the salt, the KDF parameters and the wrapped key are stored in
//!   `blazedb_keys`, bound together as the wrap's associated data (so none can be
//!   swapped), so every process given the password derives the same keys.
//! - A namespace or collection name is a 16-byte HMAC tag (`TagKind::Name`); a record
//!   key or document id a tag over its namespace and itself (`TagKind::Id`).
//! - Each value is sealed (XChaCha20-Poly1305, padded to a size bucket) with its row's
//!   tags (or log position) as associated data: a value moved to another row fails
//!   to open (`Error::Corruption`), it is never read as that row's.

use blazedb_core::{CorruptionSite, Error, Result};
use blazedb_crypto::{DataKey, KdfParams, KeyRing, TagKind, random_bytes};
use serde::{Deserialize, Serialize};

use crate::pg_error;

/// The wrap's associated data: what the stored key row binds together.
fn key_aad(name: &str, salt: &[u8], kdf: KdfParams) -> Vec<u8> {
    let mut aad = b"blazedb-pg/key/v1\0".to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(salt);
    for v in [kdf.memory_kib, kdf.iterations, kdf.parallelism] {
        aad.extend_from_slice(&v.to_le_bytes());
    }
    aad
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// The keys of served database `name`: made the first time (by whichever process
/// comes first), unwrapped with `password` by every process after.
pub(crate) fn open_keys(
    c: &mut postgres::Client,
    name: &str,
    password: &[u8],
    kdf: KdfParams,
    create: bool,
) -> Result<Sealer> {
    let e = |what| move |err| pg_error(what, err);
    let read = |c: &mut postgres::Client| {
        c.query_opt(
            "SELECT salt, kdf_memory_kib, kdf_iterations, kdf_parallelism, wrapped \
             FROM blazedb_keys WHERE db = $1",
            &[&name],
        )
        .map_err(e("reading the database key"))
    };
    let row = match read(c)? {
        Some(r) => r,
        None if !create => {
            return Err(Error::DatabaseNotFound {
                path: format!("{name:?} in the store").into(),
            });
        }
        None => {
            let mut salt = [0u8; 16];
            random_bytes(&mut salt).map_err(|err| Error::Random {
                context: "making the key salt",
                source: Box::new(err),
            })?;
            let key = DataKey::generate().map_err(|err| Error::Random {
                context: "making the data key",
                source: Box::new(err),
            })?;
            let kek = kdf
                .derive(password, &salt)
                .map_err(|err| Error::InvalidValue {
                    reason: err.to_string(),
                })?;
            let wrapped = key.wrap(&kek, &key_aad(name, &salt, kdf));
            // Another process may have made the key meanwhile: then its key is the one.
            c.execute(
                "INSERT INTO blazedb_keys \
                 (db, salt, kdf_memory_kib, kdf_iterations, kdf_parallelism, wrapped) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (db) DO NOTHING",
                &[
                    &name,
                    &salt.as_slice(),
                    &to_i32(kdf.memory_kib),
                    &to_i32(kdf.iterations),
                    &to_i32(kdf.parallelism),
                    &wrapped,
                ],
            )
            .map_err(e("storing the database key"))?;
            read(c)?.ok_or_else(|| Error::Corruption {
                site: CorruptionSite::KeyFile,
                detail: "the database key row vanished".into(),
            })?
        }
    };
    let salt: Vec<u8> = row.get(0);
    let kdf = KdfParams {
        memory_kib: to_u32(row.get(1)),
        iterations: to_u32(row.get(2)),
        parallelism: to_u32(row.get(3)),
    };
    let wrapped: Vec<u8> = row.get(4);
    let salt16: [u8; 16] = salt.as_slice().try_into().map_err(|_| Error::Corruption {
        site: CorruptionSite::KeyFile,
        detail: "salt length".into(),
    })?;
    let kek = kdf
        .derive(password, &salt16)
        .map_err(|err| Error::Corruption {
            site: CorruptionSite::KeyFile,
            detail: err.to_string(),
        })?;
    let key = DataKey::unwrap(&kek, &key_aad(name, &salt, kdf), &wrapped)
        .map_err(|_| Error::WrongPassword)?;
    Ok(Sealer {
        ring: key.keyring(),
    })
}

/// A record's sealed content: its plaintext key (for scans in key order) and value.
#[derive(Serialize, Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    key: &'a [u8],
    #[serde(borrow)]
    value: &'a [u8],
}

/// Tags and seals of one served database.
pub(crate) struct Sealer {
    ring: KeyRing,
}

fn damaged(what: &str) -> Error {
    Error::Corruption {
        site: CorruptionSite::Record { table: "postgres" },
        detail: format!("{what} failed authentication"),
    }
}

impl Sealer {
    /// The tag of namespace (or collection) `name`.
    pub(crate) fn name_tag(&self, name: &str) -> [u8; 16] {
        self.ring.tag16(TagKind::Name, &[name.as_bytes()])
    }

    /// The tag of `key` within namespace (or collection) `name`.
    pub(crate) fn key_tag(&self, name: &str, key: &[u8]) -> [u8; 16] {
        self.ring.tag16(TagKind::Id, &[name.as_bytes(), key])
    }

    fn row_aad(kind: u8, a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(1 + a.len() + b.len());
        aad.push(kind);
        aad.extend_from_slice(a);
        aad.extend_from_slice(b);
        aad
    }

    pub(crate) fn seal_record(
        &self,
        ns: &[u8; 16],
        tag: &[u8; 16],
        key: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>> {
        let plain =
            postcard::to_allocvec(&Record { key, value }).map_err(|e| Error::InvalidValue {
                reason: format!("encoding a record: {e}"),
            })?;
        Ok(self
            .ring
            .seal_key()
            .seal(&Self::row_aad(b'r', ns, tag), &plain))
    }

    /// The plaintext key and value of a sealed record.
    pub(crate) fn open_record(
        &self,
        ns: &[u8; 16],
        tag: &[u8],
        sealed: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let plain = self
            .ring
            .seal_key()
            .open(&Self::row_aad(b'r', ns, tag), sealed)
            .map_err(|_| damaged("a record"))?;
        let r: Record<'_> =
            postcard::from_bytes(&plain).map_err(|_| damaged("a record's layout"))?;
        Ok((r.key.to_vec(), r.value.to_vec()))
    }

    pub(crate) fn seal_log(&self, ns: &[u8; 16], seq: i64, value: &[u8]) -> Vec<u8> {
        self.ring
            .seal_key()
            .seal(&Self::row_aad(b'l', ns, &seq.to_le_bytes()), value)
    }

    pub(crate) fn open_log(&self, ns: &[u8; 16], seq: i64, sealed: &[u8]) -> Result<Vec<u8>> {
        self.ring
            .seal_key()
            .open(&Self::row_aad(b'l', ns, &seq.to_le_bytes()), sealed)
            .map_err(|_| damaged("a log entry"))
    }

    pub(crate) fn seal_doc(&self, coll: &[u8; 16], id: &[u8; 16], plain: &[u8]) -> Vec<u8> {
        self.ring
            .seal_key()
            .seal(&Self::row_aad(b'd', coll, id), plain)
    }

    pub(crate) fn open_doc(&self, coll: &[u8], id: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.ring
            .seal_key()
            .open(&Self::row_aad(b'd', coll, id), sealed)
            .map_err(|_| damaged("a document"))
    }
}
