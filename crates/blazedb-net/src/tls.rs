//! TLS 1.3 for sync connections (rustls, ring provider): the server's identity (a
//! supplied certificate, or a self-signed one generated on first start and kept in the
//! data directory) and how a client trusts it (a pinned SHA-256 fingerprint, or CA
//! roots).
//!
//! Invariants:
//! - Only TLS 1.3 is offered or accepted.
//! - A pinned client accepts exactly the certificate whose DER hashes to the pin
//!   (compared in constant time) and still checks the handshake signature made with it,
//!   so a peer that merely replays the certificate cannot complete the handshake.
//! - The private key file is written with mode 0600 before any key bytes go into it;
//!   directories created for it are 0700.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::NetError;
use crate::frame::Bytes32;

/// File names of a generated identity inside a data directory.
pub const CERT_FILE: &str = "tls-cert.pem";
pub const KEY_FILE: &str = "tls-key.pem";
/// The exporter label binding authentication proofs to one TLS session (RFC 8446 §7.5).
pub(crate) const EXPORTER_LABEL: &[u8] = b"EXPORTER-blazedb-auth-v1";

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a certificate's DER encoding: what clients pin.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert`.
    #[must_use]
    pub fn of(cert: &CertificateDer<'_>) -> Fingerprint {
        Fingerprint(Sha256::digest(cert.as_ref()).into())
    }

    /// Parses 64 hex digits; colons and spaces between them are ignored, so the
    /// `AB:CD:..` form tools print works too.
    ///
    /// # Errors
    /// [`NetError::Config`] for anything else.
    pub fn parse(text: &str) -> Result<Fingerprint, NetError> {
        let digits: Vec<u8> = text.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
        let bad = || {
            NetError::Config(format!(
                "not a SHA-256 fingerprint (64 hex digits): {text:?}"
            ))
        };
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A server's certificate chain and private key.
pub struct ServerIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerIdentity({})", self.fingerprint())
    }
}

impl ServerIdentity {
    /// A fresh self-signed certificate for `names` (host names or IP addresses).
    ///
    /// # Errors
    /// [`NetError::Tls`] if generation fails.
    pub fn self_signed(names: &[&str]) -> Result<ServerIdentity, NetError> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| NetError::Tls(format!("generating a certificate: {e}")))?;
        Ok(ServerIdentity {
            certs: vec![ck.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        })
    }

    /// Loads a PEM certificate chain and private key.
    ///
    /// # Errors
    /// [`NetError::Config`] naming the file that is missing or malformed.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerIdentity, NetError> {
        let certs = certificates_in(cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| NetError::Config(format!("private key {}: {e}", key.display())))?;
        let id = ServerIdentity { certs, key };
        id.server_config()?;
        Ok(id)
    }

    /// A fresh self-signed certificate for `localhost` and `127.0.0.1`, as PEM: the
    /// certificate and the private key (to keep elsewhere, e.g. sealed in a shared
    /// store, and load with [`ServerIdentity::from_pem`]).
    ///
    /// # Errors
    /// [`NetError::Tls`] if generation fails.
    pub fn self_signed_pem() -> Result<(String, zeroize::Zeroizing<String>), NetError> {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .map_err(|e| NetError::Tls(format!("generating a certificate: {e}")))?;
        Ok((
            ck.cert.pem(),
            zeroize::Zeroizing::new(ck.signing_key.serialize_pem()),
        ))
    }

    /// Loads a PEM certificate chain and private key from memory.
    ///
    /// # Errors
    /// [`NetError::Config`] when either is malformed or they do not match.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<ServerIdentity, NetError> {
        let certs = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NetError::Config(format!("certificate: {e}")))?;
        if certs.is_empty() {
            return Err(NetError::Config("certificate: none in the PEM".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| NetError::Config(format!("private key: {e}")))?;
        let id = ServerIdentity { certs, key };
        id.server_config()?;
        Ok(id)
    }

    /// The identity kept in `dir` ([`CERT_FILE`], [`KEY_FILE`]), generated there on
    /// first use. Returns whether it was generated now.
    ///
    /// # Errors
    /// I/O errors, or the files exist but do not load.
    pub fn load_or_generate(dir: &Path) -> Result<(ServerIdentity, bool), NetError> {
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if cert.exists() || key.exists() {
            return Ok((ServerIdentity::from_pem_files(&cert, &key)?, false));
        }
        let mut new_dirs = std::fs::DirBuilder::new();
        new_dirs.recursive(true);
        // Directories made here hold the private key: owner only (existing ones keep
        // their mode).
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut new_dirs, 0o700);
        new_dirs.create(dir)?;
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .map_err(|e| NetError::Tls(format!("generating a certificate: {e}")))?;
        write_private(&key, ck.signing_key.serialize_pem().as_bytes())?;
        write_new(&cert, ck.cert.pem().as_bytes())?;
        Ok((ServerIdentity::from_pem_files(&cert, &key)?, true))
    }

    /// The fingerprint of the leaf certificate.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.certs[0])
    }

    /// The leaf certificate (e.g. to hand to clients as a root).
    #[must_use]
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certs[0]
    }

    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, NetError> {
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| NetError::Config(format!("certificate and key do not match: {e}")))?;
        Ok(Arc::new(cfg))
    }
}

fn write_new(path: &PathBuf, bytes: &[u8]) -> Result<(), NetError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn write_private(path: &PathBuf, bytes: &[u8]) -> Result<(), NetError> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// How a client decides the server is the right one.
#[derive(Clone, Debug)]
pub enum ServerTrust {
    /// Exactly the certificate with this fingerprint (self-signed servers).
    Pinned(Fingerprint),
    /// Certificates chaining to these roots, for the host name dialed.
    Roots(Vec<CertificateDer<'static>>),
}

/// The certificates of a PEM file: at least one, or an error naming the file as `what`.
fn certificates_in(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| NetError::Config(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(NetError::Config(format!(
            "{what} {}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

impl ServerTrust {
    /// Trust in the CA roots of a PEM file (one or more certificates).
    ///
    /// # Errors
    /// [`NetError::Config`] naming the file when it is missing, malformed or empty.
    pub fn roots_from_pem_file(path: &Path) -> Result<ServerTrust, NetError> {
        Ok(ServerTrust::Roots(certificates_in(path, "CA roots")?))
    }

    pub(crate) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::Tls(e.to_string()))?;
        let cfg = match self {
            ServerTrust::Pinned(fp) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    pin: *fp,
                    algs: provider().signature_verification_algorithms,
                }))
                .with_no_client_auth(),
            ServerTrust::Roots(roots) => {
                let mut store = rustls::RootCertStore::empty();
                for r in roots {
                    store
                        .add(r.clone())
                        .map_err(|e| NetError::Config(format!("CA root: {e}")))?;
                }
                builder.with_root_certificates(store).with_no_client_auth()
            }
        };
        Ok(Arc::new(cfg))
    }
}

/// Accepts exactly the pinned certificate; signatures are still verified with it.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Fingerprint,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of(end_entity);
        if bool::from(got.0.ct_eq(&self.pin.0)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate fingerprint {got} does not match the pinned {}",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The channel binding of a TLS session: its exporter value under [`EXPORTER_LABEL`],
/// which the handshake's proofs are made over.
pub(crate) fn exporter(r: Result<[u8; 32], rustls::Error>) -> Result<Bytes32, NetError> {
    r.map_err(|e| NetError::Tls(format!("exporting the channel binding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_and_parse_back_in_both_forms() {
        let id = ServerIdentity::self_signed(&["localhost"]).expect("generates");
        let fp = id.fingerprint();
        let text = fp.to_string();
        assert_eq!(Fingerprint::parse(&text).expect("parses"), fp);
        assert_eq!(
            Fingerprint::parse(&text.replace(':', "")).expect("parses"),
            fp
        );
        assert!(Fingerprint::parse("abc").is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_generated_identity_is_kept_and_loaded_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, fresh) = ServerIdentity::load_or_generate(dir.path()).expect("generates");
        assert!(fresh);
        let (b, fresh) = ServerIdentity::load_or_generate(dir.path()).expect("loads");
        assert!(!fresh);
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_generated_key_is_0600_in_directories_created_0700() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("data/tls");
        ServerIdentity::load_or_generate(&dir).expect("generates");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&base.path().join("data")), 0o700);
    }

    #[test]
    fn a_damaged_key_file_is_a_config_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        ServerIdentity::load_or_generate(dir.path()).expect("generates");
        std::fs::write(dir.path().join(KEY_FILE), "not a key").expect("write");
        let e = ServerIdentity::load_or_generate(dir.path()).expect_err("refused");
        assert!(
            matches!(e, NetError::Config(ref m) if m.contains(KEY_FILE)),
            "{e}"
        );
    }
}
