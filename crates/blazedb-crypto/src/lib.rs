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
mod error;
pub mod kdf;
pub mod keys;
pub mod seal;

pub use error::{CryptoError, random_bytes};
pub use kdf::KdfParams;
pub use keys::{DataKey, KeyRing, TagKind, WRAPPED_KEY_LEN};
pub use seal::{SEAL_OVERHEAD, SealKey};
