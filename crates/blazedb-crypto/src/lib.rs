//! BlazeDB's cryptography: key derivation, key wrapping, sealing of stored values, keyed
//! tags for names and ids, and size padding.
//!
//! - [`kdf`]: Argon2id password → key-encryption key, with stored parameters.
//! - [`keys`]: the random data key, its wrapping under the password key, and the
//!   HKDF subkeys derived from it ([`KeyRing`]).
//! - [`seal`]: XChaCha20-Poly1305 sealing with associated data, and size padding.
//! - [`auth`]: proofs of sync credentials (auth token, per-database shared secret),
//!   bound to one connection.
//!
//! Architecture invariants:
//! - Key material lives only in types that zeroize on drop.
//! - Every sealed value uses a fresh random 192-bit nonce; nonces are never derived.
//! - This crate knows nothing of storage: callers supply the associated data that binds
//!   a sealed value to its location.

#![forbid(unsafe_code)]

pub mod auth;
pub mod kdf;
pub mod keys;
pub mod seal;

pub use kdf::KdfParams;
pub use keys::{DataKey, KeyRing, TagKind, WRAPPED_KEY_LEN};
pub use seal::{SEAL_OVERHEAD, SealKey};

/// Why a cryptographic operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: wrong key, or the data or its associated data changed.
    #[error("authentication failed")]
    Authentication,
    /// The input is shorter than any valid sealed value, or its padding is malformed.
    #[error("malformed sealed data: {0}")]
    Malformed(&'static str),
    /// The KDF parameters are outside what this build accepts.
    #[error("invalid KDF parameters: {0}")]
    InvalidParams(String),
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Errors
/// [`CryptoError::Random`] when the OS generator fails.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}
