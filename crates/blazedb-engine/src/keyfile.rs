//! The key file: KDF parameters, salt and the wrapped data key (160 bytes, see
//! `docs/format.md`). It is replaced atomically (write temporary, fsync, rename, fsync
//! directory), so a crash while changing the password leaves the old or the new file.
//! It is created mode 0600.

use std::fs;
use std::io::Write;
use std::path::Path;

use blazedb_core::{CorruptionSite, Error};
use blazedb_crypto::{DataKey, KdfParams, WRAPPED_KEY_LEN};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"BLZDBKEY";
const VERSION: u16 = 1;
const ALG_ARGON2ID_13: u8 = 1;
/// Bytes covered as associated data of the wrapped key: everything before it.
const HEADER_LEN: usize = 56;
const BODY_LEN: usize = HEADER_LEN + WRAPPED_KEY_LEN;
/// Total size: header, wrapped key, SHA-256 checksum.
pub(crate) const KEYFILE_LEN: usize = BODY_LEN + 32;

/// The parsed key file.
#[derive(Clone)]
pub(crate) struct KeyFile {
    pub kdf: KdfParams,
    pub salt: [u8; 16],
    pub db_id: [u8; 16],
    pub wrapped: [u8; WRAPPED_KEY_LEN],
}

fn corrupt(detail: impl Into<String>) -> Error {
    Error::Corruption {
        site: CorruptionSite::KeyFile,
        detail: detail.into(),
    }
}

impl KeyFile {
    /// Wraps `key` under `password` with fresh salt.
    pub(crate) fn seal(
        key: &DataKey,
        password: &[u8],
        kdf: KdfParams,
        db_id: [u8; 16],
    ) -> Result<KeyFile, Error> {
        let mut salt = [0u8; 16];
        blazedb_crypto::random_bytes(&mut salt)
            .map_err(Error::random("making the key file's salt"))?;
        let mut kf = KeyFile {
            kdf,
            salt,
            db_id,
            wrapped: [0; WRAPPED_KEY_LEN],
        };
        let kek = kdf
            .derive(password, &salt)
            .map_err(|e| Error::InvalidValue {
                reason: e.to_string(),
            })?;
        let wrapped = key.wrap(&kek, &kf.header());
        kf.wrapped.copy_from_slice(&wrapped);
        Ok(kf)
    }

    /// Unwraps the data key with `password`.
    pub(crate) fn unlock(&self, password: &[u8]) -> Result<DataKey, Error> {
        // Parameters were validated when parsing.
        let kek = self
            .kdf
            .derive(password, &self.salt)
            .map_err(|e| corrupt(e.to_string()))?;
        DataKey::unwrap(&kek, &self.header(), &self.wrapped).map_err(|_| Error::WrongPassword)
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[10] = ALG_ARGON2ID_13;
        h[12..16].copy_from_slice(&self.kdf.memory_kib.to_le_bytes());
        h[16..20].copy_from_slice(&self.kdf.iterations.to_le_bytes());
        h[20..24].copy_from_slice(&self.kdf.parallelism.to_le_bytes());
        h[24..40].copy_from_slice(&self.salt);
        h[40..56].copy_from_slice(&self.db_id);
        h
    }

    pub(crate) fn to_bytes(&self) -> [u8; KEYFILE_LEN] {
        let mut out = [0u8; KEYFILE_LEN];
        out[..HEADER_LEN].copy_from_slice(&self.header());
        out[HEADER_LEN..BODY_LEN].copy_from_slice(&self.wrapped);
        let sum = Sha256::digest(&out[..BODY_LEN]);
        out[BODY_LEN..].copy_from_slice(&sum);
        out
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<KeyFile, Error> {
        if bytes.len() != KEYFILE_LEN {
            return Err(corrupt(format!("length {} != {KEYFILE_LEN}", bytes.len())));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt("bad magic: not a BlazeDB key file"));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(Error::UnsupportedFormat {
                what: "key file",
                found: u32::from(version),
                supported: u32::from(VERSION),
            });
        }
        if Sha256::digest(&bytes[..BODY_LEN])[..] != bytes[BODY_LEN..] {
            return Err(corrupt("checksum mismatch"));
        }
        if bytes[10] != ALG_ARGON2ID_13 || bytes[11] != 0 {
            return Err(corrupt("unknown key derivation algorithm"));
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let kdf = KdfParams {
            memory_kib: u32_at(12),
            iterations: u32_at(16),
            parallelism: u32_at(20),
        };
        kdf.validate().map_err(|e| corrupt(e.to_string()))?;
        let mut kf = KeyFile {
            kdf,
            salt: [0; 16],
            db_id: [0; 16],
            wrapped: [0; WRAPPED_KEY_LEN],
        };
        kf.salt.copy_from_slice(&bytes[24..40]);
        kf.db_id.copy_from_slice(&bytes[40..56]);
        kf.wrapped.copy_from_slice(&bytes[HEADER_LEN..BODY_LEN]);
        Ok(kf)
    }

    pub(crate) fn read(path: &Path) -> Result<KeyFile, Error> {
        let bytes = fs::read(path).map_err(Error::io("reading the key file"))?;
        Self::parse(&bytes)
    }

    /// Writes the key file atomically and durably at `path`, mode 0600 (a key file it
    /// replaces, whatever its mode, is replaced by this one).
    pub(crate) fn write_atomic(&self, path: &Path) -> Result<(), Error> {
        let tmp = path.with_extension("tmp");
        // A temporary file left by a crash is removed, not reused: reusing it would keep
        // whatever mode it has.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("removing a stale temporary key file")(e));
            }
            _ => {}
        }
        let mut f =
            crate::private::create_new_file(&tmp).map_err(Error::io("creating the key file"))?;
        f.write_all(&self.to_bytes())
            .map_err(Error::io("writing the key file"))?;
        f.sync_all().map_err(Error::io("syncing the key file"))?;
        drop(f);
        fs::rename(&tmp, path).map_err(Error::io("replacing the key file"))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    }
}

/// fsyncs a directory, so a rename or file creation in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing the database directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_and_rejects_every_single_byte_flip() {
        let key = DataKey::generate().expect("rng");
        let kf = KeyFile::seal(&key, b"pw", KdfParams::INSECURE_FAST, [9; 16]).expect("seal");
        let bytes = kf.to_bytes();
        let back = KeyFile::parse(&bytes).expect("parse");
        assert!(back.unlock(b"pw").is_ok());
        assert!(matches!(back.unlock(b"wrong"), Err(Error::WrongPassword)));
        for i in 0..bytes.len() {
            let mut b = bytes;
            b[i] ^= 0x01;
            assert!(KeyFile::parse(&b).is_err(), "flip at {i} accepted");
        }
    }
}
