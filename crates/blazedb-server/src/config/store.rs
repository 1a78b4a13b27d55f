//! The PostgreSQL store's settings (`--store`, `--store-password-file`,
//! `--store-ca-file`), resolved like every other setting.

use std::path::PathBuf;

use zeroize::Zeroizing;

/// Where a PostgreSQL store is and how to log in (the password never in the URL).
#[derive(Clone)]
pub struct Store {
    pub url: String,
    pub password: Option<Zeroizing<String>>,
    /// The roots Postgres's certificate is verified against (TLS on when given).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// The store's settings as one layer gave them.
pub(super) struct StoreArgs {
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl StoreArgs {
    pub fn new(
        url: Option<String>,
        password_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
    ) -> StoreArgs {
        StoreArgs {
            url,
            password_file,
            ca_file,
        }
    }
}
