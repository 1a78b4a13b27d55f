//! Sealing stored values: size padding, then XChaCha20-Poly1305 with associated data.
//!
//! Sealed layout: `nonce (24) ‖ ciphertext of padded plaintext ‖ tag (16)`.
//! Padded plaintext: `plaintext ‖ marker ‖ 0x00…` up to a size bucket (see
//! [`padded_len`]), so a stored value reveals only its bucket, not its exact length. The
//! marker is `0x80 | kind`: a 7-bit kind the caller chooses (how it encoded the
//! plaintext, e.g. compressed), sealed with it; [`SealKey::seal`] uses kind 0.
//!
//! XChaCha20-Poly1305 is built the standard way (draft-irtf-cfrg-xchacha): the subkey
//! HChaCha20(key, nonce[0..16]) seals with ChaCha20-Poly1305 (RFC 8439) under the nonce
//! `0⁴ ‖ nonce[16..24]`. HChaCha20 comes from RustCrypto's `chacha20`; the AEAD from
//! `ring`, whose assembly opens a 200-byte record ~3× faster than RustCrypto's
//! `chacha20poly1305` (ARCHITECTURE.md, *Decisions*). The bytes are the same either way;
//! a test checks both directions against `chacha20poly1305`.

use chacha20::hchacha;
use rand::Rng;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

use crate::error::CryptoError;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed value adds on top of the padded plaintext: nonce and tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Smallest padded plaintext: tiny values all look alike.
const BUCKET_MIN: usize = 64;
/// ChaCha20-Poly1305's limit: 2^32 - 1 blocks of 64 bytes per message (256 GiB).
const MAX_MESSAGE: u64 = ((1 << 32) - 1) * 64;

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

/// A sealing key. Zeroized on drop.
///
/// The per-value subkey is zeroized too, except the copy inside `ring`'s key state
/// (ring does not zeroize): it lives on the stack for one seal or open, and reveals at
/// most that one value (HChaCha20 does not run backwards to the key). See
/// docs/security.md.
pub struct SealKey {
    key: Zeroizing<[u8; 32]>,
}

impl SealKey {
    /// A sealing key from 32 key bytes.
    #[must_use]
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(*key),
        }
    }

    /// The ChaCha20-Poly1305 key and nonce of the XChaCha20 nonce `nonce`.
    fn subkey(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let mut input = [0u8; 16];
        input.copy_from_slice(&nonce[..16]);
        let mut sub = hchacha::<chacha20::R20>(&(*self.key).into(), &input.into());
        let key = match UnboundKey::new(&CHACHA20_POLY1305, sub.as_slice()) {
            Ok(k) => LessSafeKey::new(k),
            Err(_) => unreachable!("ChaCha20-Poly1305 refused a 32-byte key"),
        };
        sub.as_mut_slice().zeroize();
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&nonce[16..]);
        (key, Nonce::assume_unique_for_key(n))
    }

    /// Pads and seals `plaintext`, binding it to `aad` (kind 0).
    #[must_use]
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal_kind(aad, plaintext, 0)
    }

    /// Pads and seals `plaintext` of kind `kind` (0..=127; higher bits are dropped),
    /// binding both to `aad`. [`SealKey::open_into`] returns the kind.
    #[must_use]
    pub fn seal_kind(&self, aad: &[u8], plaintext: &[u8], kind: u8) -> Vec<u8> {
        let padded = padded_len(plaintext.len());
        let mut out = Vec::with_capacity(NONCE_LEN + padded + TAG_LEN);
        let mut nonce = [0u8; NONCE_LEN];
        // ThreadRng is a CSPRNG (ChaCha12) seeded and periodically reseeded from the OS.
        rand::rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        out.push(0x80 | (kind & 0x7f));
        out.resize(NONCE_LEN + padded, 0);
        let tag = self.seal_in_place(&nonce, aad, &mut out[NONCE_LEN..]);
        out.extend_from_slice(tag.as_ref());
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
        out.extend_from_slice(tag.as_ref());
        out
    }

    fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Tag {
        let (key, n) = self.subkey(nonce);
        // Encryption only fails for messages beyond 256 GiB, which no caller can build
        // (documents are bounded far below that).
        match key.seal_in_place_separate_tag(n, Aad::from(aad), buf) {
            Ok(tag) => tag,
            Err(_) => unreachable!("ChaCha20-Poly1305 refused a message below its size limit"),
        }
    }

    /// Opens a value sealed by [`SealKey::seal`] with the same `aad`, removing padding.
    ///
    /// # Errors
    /// [`CryptoError::Authentication`] if the key, the value or `aad` differ from sealing;
    /// [`CryptoError::Malformed`] if the value is too short, its padding is invalid or
    /// it was sealed with another kind than 0.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open_vec(aad, sealed.to_vec())
    }

    /// Like [`SealKey::open`], decrypting inside `sealed`'s own buffer (no copy of the
    /// ciphertext).
    ///
    /// # Errors
    /// As [`SealKey::open`].
    pub fn open_vec(&self, aad: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        match self.open_vec_kind(aad, sealed)? {
            (plain, 0) => Ok(plain),
            _ => Err(CryptoError::Malformed("a value of another kind")),
        }
    }

    /// Like [`SealKey::open_vec`] for a value of any kind: the plaintext and its kind.
    ///
    /// # Errors
    /// As [`SealKey::open`], except that any kind is accepted.
    pub fn open_vec_kind(
        &self,
        aad: &[u8],
        mut sealed: Vec<u8>,
    ) -> Result<(Vec<u8>, u8), CryptoError> {
        let kind = self.open_in_buffer(aad, &mut sealed)?;
        Ok((sealed, kind))
    }

    /// Opens a value of any kind into `out` (cleared first), returning its kind: a caller
    /// opening many values reuses one buffer. On error `out` holds no plaintext.
    ///
    /// # Errors
    /// As [`SealKey::open`], except that any kind is accepted.
    pub fn open_into(
        &self,
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, CryptoError> {
        out.clear();
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::Malformed("shorter than nonce and tag"));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        // Only the ciphertext is copied, to where its plaintext goes.
        out.extend_from_slice(body);
        self.decrypt_body(aad, nonce, tag, out)?;
        strip_padding(out)
    }

    /// Opens the sealed value in `buf` in place, leaving the unpadded plaintext; returns
    /// its kind.
    fn open_in_buffer(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<u8, CryptoError> {
        self.decrypt(aad, buf)?;
        strip_padding(buf)
    }

    /// Opens a value sealed by [`SealKey::seal_exact`].
    ///
    /// # Errors
    /// As [`SealKey::open`].
    pub fn open_exact(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = sealed.to_vec();
        self.decrypt(aad, &mut buf)?;
        Ok(buf)
    }

    /// Authenticates and decrypts `body` (a ciphertext, in place) under `nonce` and `tag`.
    /// On error `body` is cleared.
    fn decrypt_body(
        &self,
        aad: &[u8],
        nonce: &[u8],
        tag: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if body.len() as u64 > MAX_MESSAGE {
            body.clear();
            return Err(CryptoError::Malformed("longer than a sealed value can be"));
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        let (key, n) = self.subkey(&n);
        if key
            .open_in_place_separate_tag(n, Aad::from(aad), Tag::from(t), body, 0..)
            .is_err()
        {
            body.clear();
            return Err(CryptoError::Authentication);
        }
        Ok(())
    }

    /// Authenticates and decrypts `nonce ‖ ciphertext ‖ tag` held in `buf`, leaving the
    /// plaintext (still padded, if it was) at its start: ring decrypts and moves it down
    /// over the nonce in one pass. On error `buf` is cleared (ring leaves no plaintext
    /// of a value that failed authentication, and neither do we).
    fn decrypt(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        if buf.len() < SEAL_OVERHEAD {
            buf.clear();
            return Err(CryptoError::Malformed("shorter than nonce and tag"));
        }
        if (buf.len() - SEAL_OVERHEAD) as u64 > MAX_MESSAGE {
            buf.clear();
            return Err(CryptoError::Malformed("longer than a sealed value can be"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[..NONCE_LEN]);
        let (key, n) = self.subkey(&nonce);
        let plain_len = match key.open_within(n, Aad::from(aad), buf, NONCE_LEN..) {
            Ok(plain) => plain.len(),
            Err(_) => {
                buf.clear();
                return Err(CryptoError::Authentication);
            }
        };
        buf.truncate(plain_len);
        Ok(())
    }
}

/// Removes `marker ‖ 0x00…` padding from `buf` and returns the marker's kind; on error
/// clears `buf`.
fn strip_padding(buf: &mut Vec<u8>) -> Result<u8, CryptoError> {
    match buf.iter().rposition(|&b| b != 0) {
        Some(m) if buf[m] & 0x80 != 0 => {
            let kind = buf[m] & 0x7f;
            buf.truncate(m);
            Ok(kind)
        }
        _ => {
            buf.clear();
            Err(CryptoError::Malformed("padding marker missing"))
        }
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
        let mut buf = b"left over".to_vec();
        assert_eq!(k.open_into(b"docs/1", &s, &mut buf), Ok(0));
        assert_eq!(buf, b"hello");
        assert_eq!(
            k.open_into(b"docs/1", &flipped, &mut buf),
            Err(CryptoError::Authentication)
        );
        assert!(
            buf.is_empty(),
            "no plaintext is left behind by a failed open"
        );
    }

    /// Stored values written before ring sealed them (RustCrypto's XChaCha20-Poly1305)
    /// must open, and values sealed now must be standard XChaCha20-Poly1305.
    #[test]
    fn sealed_bytes_are_standard_xchacha20_poly1305_in_both_directions() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let raw = [0x42u8; 32];
        let ours = SealKey::new(&raw);
        let theirs = XChaCha20Poly1305::new(&raw.into());
        for len in [0usize, 1, 15, 16, 63, 64, 200, 1000, 4097, 70_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let aad = format!("table/{len}");
            let sealed = ours.seal_exact(aad.as_bytes(), &plain);
            let (nonce, body) = sealed.split_at(NONCE_LEN);
            let opened = theirs
                .decrypt(
                    &XNonce::try_from(nonce).expect("nonce"),
                    Payload {
                        msg: body,
                        aad: aad.as_bytes(),
                    },
                )
                .expect("RustCrypto opens what ring sealed");
            assert_eq!(opened, plain);

            let nonce = [len as u8; NONCE_LEN];
            let mut theirs_sealed = nonce.to_vec();
            theirs_sealed.extend(
                theirs
                    .encrypt(
                        &XNonce::from(nonce),
                        Payload {
                            msg: &plain,
                            aad: aad.as_bytes(),
                        },
                    )
                    .expect("seal"),
            );
            assert_eq!(
                ours.open_exact(aad.as_bytes(), &theirs_sealed),
                Ok(plain.clone()),
                "ring opens what RustCrypto sealed ({len} bytes)"
            );
            assert_eq!(
                ours.open_exact(b"other", &theirs_sealed),
                Err(CryptoError::Authentication)
            );
        }
    }

    #[test]
    fn a_values_kind_is_sealed_with_it_and_only_kind_zero_opens_as_plain() {
        let k = SealKey::new(&[7; 32]);
        let s = k.seal_kind(b"t", b"packed", 1);
        assert_eq!(
            k.open_vec_kind(b"t", s.clone()),
            Ok((b"packed".to_vec(), 1))
        );
        let mut buf = Vec::new();
        assert_eq!(k.open_into(b"t", &s, &mut buf), Ok(1));
        assert_eq!(buf, b"packed");
        assert!(matches!(k.open(b"t", &s), Err(CryptoError::Malformed(_))));
        let mut flipped = s.clone();
        let last = flipped.len() - 17;
        flipped[last] ^= 0x01;
        assert_eq!(
            k.open_vec_kind(b"t", flipped),
            Err(CryptoError::Authentication),
            "the kind is authenticated like the rest"
        );
        assert_eq!(k.seal(b"t", b"x").len(), k.seal_kind(b"t", b"x", 127).len());
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
