//! Password → key-encryption key (KEK) with Argon2id.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// Argon2id cost parameters. They are stored in the key file, so they can be raised
/// later (by changing the password) without touching data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl KdfParams {
    /// Smallest memory cost accepted when opening a file: refuses key files whose
    /// parameters were lowered below anything BlazeDB would write.
    pub const MEMORY_KIB_MIN: u32 = 8;
    /// Largest memory cost accepted (4 GiB): a tampered key file cannot make `open`
    /// allocate without bound.
    pub const MEMORY_KIB_MAX: u32 = 4 * 1024 * 1024;
    /// Largest iteration count accepted: bounds the time a tampered key file can cost.
    pub const ITERATIONS_MAX: u32 = 64;
    /// Largest parallelism accepted.
    pub const PARALLELISM_MAX: u32 = 64;

    /// The default: OWASP's recommended Argon2id setting (19 MiB, 2 passes, 1 lane).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// A deliberately cheap setting for tests and benchmarks of everything but the KDF.
    /// Never use it for real data: it makes password guessing cheap.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    /// Checks the parameters against this build's accepted bounds.
    ///
    /// # Errors
    /// [`CryptoError::InvalidParams`] naming the parameter out of range.
    pub fn validate(&self) -> Result<(), CryptoError> {
        let bad = |m: String| Err(CryptoError::InvalidParams(m));
        if !(1..=Self::PARALLELISM_MAX).contains(&self.parallelism) {
            return bad(format!("parallelism {} not in 1..=64", self.parallelism));
        }
        if !(1..=Self::ITERATIONS_MAX).contains(&self.iterations) {
            return bad(format!("iterations {} not in 1..=64", self.iterations));
        }
        let min = Self::MEMORY_KIB_MIN.max(8 * self.parallelism);
        if !(min..=Self::MEMORY_KIB_MAX).contains(&self.memory_kib) {
            return bad(format!(
                "memory {} KiB not in {min}..={} KiB",
                self.memory_kib,
                Self::MEMORY_KIB_MAX
            ));
        }
        Ok(())
    }

    /// Derives a 32-byte key-encryption key from `password` and `salt`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidParams`] when the parameters are out of range.
    pub fn derive(
        &self,
        password: &[u8],
        salt: &[u8; 16],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        self.validate()?;
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| CryptoError::InvalidParams(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, salt, out.as_mut())
            .map_err(|e| CryptoError::InvalidParams(e.to_string()))?;
        Ok(out)
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_depends_on_password_and_salt() {
        let p = KdfParams::INSECURE_FAST;
        let a = p.derive(b"pw", &[1; 16]).expect("derive");
        let b = p.derive(b"pw", &[1; 16]).expect("derive");
        let c = p.derive(b"pw2", &[1; 16]).expect("derive");
        let d = p.derive(b"pw", &[2; 16]).expect("derive");
        assert_eq!(*a, *b);
        assert_ne!(*a, *c);
        assert_ne!(*a, *d);
    }

    #[test]
    fn out_of_range_parameters_are_rejected() {
        for p in [
            KdfParams {
                memory_kib: 1,
                ..KdfParams::INSECURE_FAST
            },
            KdfParams {
                iterations: 0,
                ..KdfParams::INSECURE_FAST
            },
            KdfParams {
                iterations: 65,
                ..KdfParams::INSECURE_FAST
            },
            KdfParams {
                parallelism: 0,
                ..KdfParams::INSECURE_FAST
            },
            KdfParams {
                memory_kib: u32::MAX,
                ..KdfParams::INSECURE_FAST
            },
        ] {
            assert!(p.derive(b"pw", &[0; 16]).is_err(), "{p:?}");
        }
    }
}
