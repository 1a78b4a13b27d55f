//! Why a cryptographic operation failed, and the one source of randomness. Apart from
//! the crate root so that the modules using them do not import the root back.

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
