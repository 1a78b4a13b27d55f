//! Sealing stored values: size padding, then XChaCha20-Poly1305 with associated data.
//!
//! Sealed layout: `nonce (24) ‖ ciphertext of padded plaintext ‖ tag (16)`.
//! Padded plaintext: `plaintext ‖ 0x80 ‖ 0x00…` up to a size bucket (see [`padded_len`]),
//! so a stored value reveals only its bucket, not its exact length.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use rand::Rng;

use crate::error::CryptoError;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed value adds on top of the padded plaintext: nonce and tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Smallest padded plaintext: tiny values all look alike.
const BUCKET_MIN: usize = 64;

/// The padded length for `len` plaintext bytes (the `0x80` marker included): at least
/// 64 bytes, then rounded up to a multiple of one eighth of the largest power of two not
/// above it. Overhead is at most 12.5 % beyond 64 bytes.
#[must_use]
pub fn padded_len(len: usize) -> usize {
    let n = len + 1;
    if n <= BUCKET_MIN {
        return BUCKET_MIN;
    }
    let high = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let step = (high / 8).max(BUCKET_MIN);
    n.div_ceil(step) * step
}

/// A sealing key. Zeroized on drop (the cipher's key schedule zeroizes itself).
pub struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    /// A sealing key from 32 key bytes.
    #[must_use]
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    /// Pads and seals `plaintext`, binding it to `aad`.
    #[must_use]
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let padded = padded_len(plaintext.len());
        let mut out = Vec::with_capacity(NONCE_LEN + padded + TAG_LEN);
        let mut nonce = [0u8; NONCE_LEN];
        // ThreadRng is a CSPRNG (ChaCha12) seeded and periodically reseeded from the OS.
        rand::rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        out.push(0x80);
        out.resize(NONCE_LEN + padded, 0);
        let tag = self.seal_in_place(&nonce, aad, &mut out[NONCE_LEN..]);
        out.extend_from_slice(&tag);
        out
    }

    /// Seals without padding, for fixed-size secrets (the wrapped data key).
    #[must_use]
    pub fn seal_exact(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self.seal_in_place(&nonce, aad, &mut out[NONCE_LEN..]);
        out.extend_from_slice(&tag);
        out
    }

    fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Tag {
        // Encryption only fails for messages beyond 256 GiB, which no caller can build
        // (documents are bounded far below that).
        match self
            .cipher
            .encrypt_inout_detached(&XNonce::from(*nonce), aad, buf.into())
        {
            Ok(tag) => tag,
            Err(_) => unreachable!("XChaCha20-Poly1305 refused a message below its size limit"),
        }
    }

    /// Opens a value sealed by [`SealKey::seal`] with the same `aad`, removing padding.
    ///
    /// # Errors
    /// [`CryptoError::Authentication`] if the key, the value or `aad` differ from sealing;
    /// [`CryptoError::Malformed`] if the value is too short or its padding is invalid.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open_vec(aad, sealed.to_vec())
    }

    /// Like [`SealKey::open`], decrypting inside `sealed`'s own buffer (no copy of the
    /// ciphertext).
    ///
    /// # Errors
    /// As [`SealKey::open`].
    pub fn open_vec(&self, aad: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        let mut plain = self.decrypt(aad, sealed)?;
        let marker = plain
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(CryptoError::Malformed("padding marker missing"))?;
        if plain[marker] != 0x80 {
            return Err(CryptoError::Malformed("padding marker missing"));
        }
        plain.truncate(marker);
        Ok(plain)
    }

    /// Opens a value sealed by [`SealKey::seal_exact`].
    ///
    /// # Errors
    /// As [`SealKey::open`].
    pub fn open_exact(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.decrypt(aad, sealed.to_vec())
    }

    /// Authenticates and decrypts `nonce ‖ ciphertext ‖ tag` in its own buffer,
    /// returning the plaintext (still padded, if it was).
    fn decrypt(&self, aad: &[u8], mut sealed: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::Malformed("shorter than nonce and tag"));
        }
        let body_end = sealed.len() - TAG_LEN;
        let tag =
            Tag::try_from(&sealed[body_end..]).map_err(|_| CryptoError::Malformed("tag length"))?;
        let nonce = XNonce::try_from(&sealed[..NONCE_LEN])
            .map_err(|_| CryptoError::Malformed("nonce length"))?;
        self.cipher
            .decrypt_inout_detached(&nonce, aad, (&mut sealed[NONCE_LEN..body_end]).into(), &tag)
            .map_err(|_| CryptoError::Authentication)?;
        sealed.truncate(body_end);
        sealed.drain(..NONCE_LEN);
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_associated_data() {
        let k = SealKey::new(&[7; 32]);
        let s = k.seal(b"docs/1", b"hello");
        assert_eq!(k.open(b"docs/1", &s).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(k.open(b"docs/2", &s), Err(CryptoError::Authentication));
        assert_eq!(
            SealKey::new(&[8; 32]).open(b"docs/1", &s),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            k.open_vec(b"docs/1", s.clone()).as_deref(),
            Ok(&b"hello"[..])
        );
        assert_eq!(
            k.open_vec(b"docs/2", s.clone()),
            Err(CryptoError::Authentication)
        );
        let mut flipped = s.clone();
        flipped[30] ^= 1;
        assert_eq!(
            k.open(b"docs/1", &flipped),
            Err(CryptoError::Authentication)
        );
        assert!(k.open(b"docs/1", &s[..10]).is_err());
    }

    #[test]
    fn sealing_twice_uses_fresh_nonces() {
        let k = SealKey::new(&[7; 32]);
        assert_ne!(k.seal(b"", b"same"), k.seal(b"", b"same"));
    }

    #[test]
    fn padding_hides_exact_lengths_within_a_bucket_and_round_trips_trailing_zeros() {
        let k = SealKey::new(&[7; 32]);
        assert_eq!(k.seal(b"", b"a").len(), k.seal(b"", &[1; 60]).len());
        for len in [0usize, 1, 63, 64, 65, 200, 1000, 4097] {
            let p = vec![0u8; len];
            assert_eq!(k.open(b"x", &k.seal(b"x", &p)).expect("open"), p);
            let padded = padded_len(len);
            assert!(
                padded > len && padded <= (len + 1).max(64) * 9 / 8 + 64,
                "{len}"
            );
        }
    }
}
