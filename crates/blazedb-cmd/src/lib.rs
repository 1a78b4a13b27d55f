//! What the two programs, `blazedb` and `blazedb-server`, share, so each rule is
//! written once:
//!
//! - [`log`]: one log variable (`BLAZEDB_LOG`) and one `--log-format` for both.
//! - [`secret`]: a secret from a file, else an environment variable, else a prompt on a
//!   terminal; files others may read are reported.
//! - [`layer`]: a setting from the command line, else the configuration file, else the
//!   environment, else its default.

#![forbid(unsafe_code)]

/// The commit the programs were built from (12 hex digits, `-modified` when the work
/// tree had changes, `unknown` outside a git checkout).
pub const COMMIT: &str = env!("BLAZEDB_COMMIT");

/// The release and commit: `0.1.0 (commit 0123456789ab)`.
#[must_use]
pub fn version_with_commit() -> String {
    format!("{} (commit {COMMIT})", env!("CARGO_PKG_VERSION"))
}

pub mod layer;
pub mod log;
pub mod secret;
