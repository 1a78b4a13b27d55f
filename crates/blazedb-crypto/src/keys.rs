//! The key hierarchy.
//!
//! ```text
//! password ──Argon2id(salt, params)──▶ KEK ──unwraps──▶ data key (random, 32 bytes)
//! data key ──HKDF-SHA256(info)──▶ seal key      (XChaCha20-Poly1305 for stored values)
//!                              ├▶ name tag key  (HMAC-SHA256: collection names → tags)
//!                              └▶ id tag key    (HMAC-SHA256: document/aux keys → tags)
//! ```
//!
//! Changing the password re-wraps the same data key under a new KEK: no data rewrite.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{CryptoError, random_bytes};
use crate::seal::{SEAL_OVERHEAD, SealKey};

/// Length of a wrapped data key: nonce, 32 key bytes, tag.
pub const WRAPPED_KEY_LEN: usize = 32 + SEAL_OVERHEAD;

/// The random key all stored data is protected with. Zeroized on drop.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random data key.
    ///
    /// # Errors
    /// [`CryptoError::Random`] when the OS generator fails.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = Zeroizing::new([0u8; 32]);
        random_bytes(k.as_mut())?;
        Ok(Self(k))
    }

    /// Wraps (encrypts) the data key under a key-encryption key, binding `aad` (the key
    /// file's header, so its KDF parameters and salt cannot be swapped).
    #[must_use]
    pub fn wrap(&self, kek: &[u8; 32], aad: &[u8]) -> Vec<u8> {
        SealKey::new(kek).seal_exact(aad, self.0.as_ref())
    }

    /// Unwraps a data key.
    ///
    /// # Errors
    /// [`CryptoError::Authentication`] when the KEK (the password) or `aad` is wrong.
    pub fn unwrap(kek: &[u8; 32], aad: &[u8], wrapped: &[u8]) -> Result<Self, CryptoError> {
        let plain = Zeroizing::new(SealKey::new(kek).open_exact(aad, wrapped)?);
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed("wrapped key length"))?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    /// Derives the subkeys used for stored data.
    #[must_use]
    pub fn keyring(&self) -> KeyRing {
        let hk = Hkdf::<Sha256>::new(Some(b"blazedb/v1"), self.0.as_ref());
        let sub = |info: &[u8]| {
            let mut k = Zeroizing::new([0u8; 32]);
            // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
            if hk.expand(info, k.as_mut()).is_err() {
                unreachable!("HKDF refused a 32-byte output");
            }
            k
        };
        let mac = |k: &Zeroizing<[u8; 32]>| match Hmac::<Sha256>::new_from_slice(k.as_ref()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        KeyRing {
            seal: SealKey::new(&sub(b"seal")),
            name_tag: mac(&sub(b"name-tag")),
            id_tag: mac(&sub(b"id-tag")),
        }
    }
}

/// Which tag key to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    /// Collection and namespace names.
    Name,
    /// Document ids and other keys within a collection or namespace.
    Id,
}

/// The subkeys derived from a data key.
pub struct KeyRing {
    seal: SealKey,
    name_tag: Hmac<Sha256>,
    id_tag: Hmac<Sha256>,
}

impl KeyRing {
    /// The key that seals stored values.
    #[must_use]
    pub fn seal_key(&self) -> &SealKey {
        &self.seal
    }

    /// A 16-byte keyed tag of `parts`: HMAC-SHA256 over each part prefixed by its
    /// length (so part boundaries are unambiguous), truncated to 128 bits. Equal inputs
    /// give equal tags; without the key, tags reveal nothing else about the input.
    #[must_use]
    pub fn tag16(&self, kind: TagKind, parts: &[&[u8]]) -> [u8; 16] {
        let mut mac = match kind {
            TagKind::Name => self.name_tag.clone(),
            TagKind::Id => self.id_tag.clone(),
        };
        for p in parts {
            // Parts are bounded far below 4 GiB (names ≤ 64 bytes, keys ≤ a few KiB).
            mac.update(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_le_bytes());
            mac.update(p);
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_unwraps_only_with_the_right_kek_and_header() {
        let dk = DataKey::generate().expect("rng");
        let w = dk.wrap(&[1; 32], b"hdr");
        assert_eq!(w.len(), WRAPPED_KEY_LEN);
        let back = DataKey::unwrap(&[1; 32], b"hdr", &w).expect("unwrap");
        assert_eq!(*back.0, *dk.0);
        assert!(DataKey::unwrap(&[2; 32], b"hdr", &w).is_err());
        assert!(DataKey::unwrap(&[1; 32], b"hdx", &w).is_err());
    }

    #[test]
    fn tags_are_deterministic_keyed_and_unambiguous() {
        let a = DataKey::generate().expect("rng").keyring();
        let b = DataKey::generate().expect("rng").keyring();
        assert_eq!(a.tag16(TagKind::Id, &[b"x"]), a.tag16(TagKind::Id, &[b"x"]));
        assert_ne!(a.tag16(TagKind::Id, &[b"x"]), b.tag16(TagKind::Id, &[b"x"]));
        assert_ne!(
            a.tag16(TagKind::Id, &[b"x"]),
            a.tag16(TagKind::Name, &[b"x"])
        );
        assert_ne!(
            a.tag16(TagKind::Id, &[b"ab", b"c"]),
            a.tag16(TagKind::Id, &[b"a", b"bc"])
        );
    }
}
