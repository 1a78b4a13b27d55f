//! TLS to PostgreSQL: off (the default, for a Postgres on the same host or a private
//! network), or required with Postgres's certificate verified against roots the
//! operator gives and the host name of the store URL. There is no "encrypt without
//! verifying": a connection an attacker in the middle can terminate protects nothing
//! the store sends (sealed values and keyed tags already hide the data; TLS is for
//! the rest: which rows change when, and the connection itself).

use std::sync::Arc;

use blazedb_core::{Error, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// How a store connects to PostgreSQL.
#[derive(Clone, Default)]
pub enum StoreTls {
    /// Plain TCP.
    #[default]
    Off,
    /// TLS 1.2 or 1.3 (Postgres servers commonly offer 1.2), the server's certificate
    /// verified against these roots and the URL's host name.
    Verified(Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for StoreTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreTls::Off => "Off",
            StoreTls::Verified(_) => "Verified",
        })
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidValue { reason }
}

impl StoreTls {
    /// TLS verified against the certificates in `pem` (one or more PEM blocks).
    ///
    /// # Errors
    /// `Error::InvalidValue`: no certificate in `pem`, or one that does not parse.
    pub fn from_roots_pem(pem: &[u8]) -> Result<StoreTls> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("the store's CA file: {e}")))?;
        if certs.is_empty() {
            return Err(invalid(
                "the store's CA file holds no PEM certificate".into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots
                .add(c)
                .map_err(|e| invalid(format!("the store's CA file: {e}")))?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(StoreTls::Verified(Arc::new(cfg)))
    }

    /// `config` as this TLS setting needs it: TLS required when on; a URL that asks
    /// for TLS (`sslmode=require`) refused when off, rather than silently not
    /// verifying.
    pub(crate) fn apply(&self, config: &mut postgres::Config) -> Result<()> {
        use postgres::config::SslMode;
        match self {
            StoreTls::Verified(_) => {
                config.ssl_mode(SslMode::Require);
            }
            StoreTls::Off => {
                if config.get_ssl_mode() == SslMode::Require {
                    return Err(invalid(
                        "the store URL asks for TLS (sslmode=require): give the certificate \
                         that signed Postgres's in --store-ca-file"
                            .into(),
                    ));
                }
                config.ssl_mode(SslMode::Disable);
            }
        }
        Ok(())
    }

    /// A connection to Postgres with `config`.
    pub(crate) fn connect(
        &self,
        config: &postgres::Config,
    ) -> std::result::Result<postgres::Client, postgres::Error> {
        match self {
            StoreTls::Off => config.connect(postgres::NoTls),
            StoreTls::Verified(cfg) => config.connect(
                tokio_postgres_rustls::MakeRustlsConnect::new(rustls::ClientConfig::clone(cfg)),
            ),
        }
    }
}
