//! The server's settings: command-line flags over an optional TOML file over defaults.
//! Secrets (auth token, shared secret, database password) may come from files or the
//! environment so they stay out of process listings and shell history.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Deserialize;

/// The BlazeDB sync server: serves one database to sync clients over TLS.
#[derive(Parser, Debug, Default)]
#[command(name = "blazedb-server", version)]
pub struct Args {
    /// TOML configuration file (flags override it).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Directory holding the database (and its TLS certificate).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Name of the database served (clients ask for it by name).
    #[arg(long)]
    pub database: Option<String>,
    /// Address to listen on [default: 127.0.0.1:7447].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Auth token clients must prove they know (prefer --auth-token-file or
    /// BLAZEDB_AUTH_TOKEN).
    #[arg(long)]
    pub auth_token: Option<String>,
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
    /// Shared secret clients must prove they know (prefer --shared-secret-file or
    /// BLAZEDB_SHARED_SECRET).
    #[arg(long)]
    pub shared_secret: Option<String>,
    #[arg(long)]
    pub shared_secret_file: Option<PathBuf>,
    /// File holding the database password (else BLAZEDB_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// PEM certificate chain to serve (with --tls-key) instead of a self-signed one.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Serve without TLS (loopback tests and trusted local links only).
    #[arg(long)]
    pub plain_tcp_insecure: bool,
    /// Address of the health and Prometheus metrics endpoint (off unless given).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Most connections at once.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Milliseconds a connection has to finish TLS and authentication.
    #[arg(long)]
    pub handshake_timeout_ms: Option<u64>,
    /// Milliseconds without a frame before a connection is closed.
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
}

/// The TOML file's contents (every key optional).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub listen: Option<SocketAddr>,
    pub auth_token: Option<String>,
    pub auth_token_file: Option<PathBuf>,
    pub shared_secret: Option<String>,
    pub shared_secret_file: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub plain_tcp_insecure: bool,
    pub metrics: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub handshake_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

/// How the server presents itself.
#[derive(Debug, Clone)]
pub enum Tls {
    SelfSigned,
    Files { cert: PathBuf, key: PathBuf },
    PlainTcpInsecure,
}

/// Everything resolved.
#[derive(Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database: String,
    pub listen: SocketAddr,
    pub auth_token: Option<String>,
    pub shared_secret: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Tls,
    pub metrics: Option<SocketAddr>,
    pub max_connections: usize,
    pub handshake_timeout_ms: u64,
    pub idle_timeout_ms: u64,
}

fn read_secret(path: &Path, what: &str) -> Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))?;
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    if s.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(s)
}

fn secret(
    value: Option<String>,
    file: Option<PathBuf>,
    env: &str,
    what: &str,
) -> Result<Option<String>> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("give the {what} or its file, not both"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => read_secret(&f, what).map(Some),
        (None, None) => Ok(std::env::var(env).ok().filter(|v| !v.is_empty())),
    }
}

impl Settings {
    /// Flags over the file (if any) over defaults.
    ///
    /// # Errors
    /// An unreadable or invalid file, conflicting or missing settings.
    pub fn resolve(args: Args) -> Result<Settings> {
        let file: File = match &args.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid configuration {}", p.display()))?
            }
            None => File::default(),
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .context("no data directory: give --data-dir or data_dir in the configuration")?;
        let database = args
            .database
            .or(file.database)
            .unwrap_or_else(|| "main".to_owned());
        let auth_token = secret(
            args.auth_token.or(file.auth_token),
            args.auth_token_file.or(file.auth_token_file),
            "BLAZEDB_AUTH_TOKEN",
            "auth token",
        )?;
        let shared_secret = secret(
            args.shared_secret.or(file.shared_secret),
            args.shared_secret_file.or(file.shared_secret_file),
            "BLAZEDB_SHARED_SECRET",
            "shared secret",
        )?;
        if auth_token.is_none() && shared_secret.is_none() {
            bail!("a sync server needs an auth token or a shared secret (or both)");
        }
        let plain = args.plain_tcp_insecure || file.plain_tcp_insecure;
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            plain,
        ) {
            (Some(_), _, true) | (_, Some(_), true) => {
                bail!("TLS files and plain TCP exclude each other")
            }
            (Some(cert), Some(key), false) => Tls::Files { cert, key },
            (Some(_), None, _) | (None, Some(_), _) => bail!("give both --tls-cert and --tls-key"),
            (None, None, true) => Tls::PlainTcpInsecure,
            (None, None, false) => Tls::SelfSigned,
        };
        Ok(Settings {
            data_dir,
            database,
            listen: args.listen.or(file.listen).unwrap_or_else(|| {
                SocketAddr::from(([127, 0, 0, 1], blazedb::net::server::PORT_DEFAULT))
            }),
            auth_token,
            shared_secret,
            password_file: args.password_file.or(file.password_file),
            tls,
            metrics: args.metrics.or(file.metrics),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(1024),
            handshake_timeout_ms: args
                .handshake_timeout_ms
                .or(file.handshake_timeout_ms)
                .unwrap_or(10_000),
            idle_timeout_ms: args
                .idle_timeout_ms
                .or(file.idle_timeout_ms)
                .unwrap_or(35_000),
        })
    }

    /// The database password: its file, `BLAZEDB_PASSWORD`, or a prompt on a terminal.
    ///
    /// # Errors
    /// No source available, or an unreadable file.
    pub fn password(&self) -> Result<String> {
        if let Some(f) = &self.password_file {
            return read_secret(f, "password");
        }
        if let Ok(p) = std::env::var("BLAZEDB_PASSWORD")
            && !p.is_empty()
        {
            return Ok(p);
        }
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return rpassword::prompt_password("database password: ")
                .context("reading the password");
        }
        bail!(
            "no database password: give --password-file, set BLAZEDB_PASSWORD, or run on a terminal"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::parse_from(std::iter::once("blazedb-server").chain(list.iter().copied()))
    }

    #[test]
    fn a_toml_file_sets_everything_and_flags_override_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("server.toml");
        std::fs::write(
            &cfg,
            r#"
data_dir = "/srv/blazedb"
database = "inventory"
listen = "0.0.0.0:9000"
auth_token = "from-file"
metrics = "127.0.0.1:9100"
max_connections = 50
handshake_timeout_ms = 2000
idle_timeout_ms = 9000
"#,
        )
        .expect("write");
        let s = Settings::resolve(args(&[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--database",
            "flag-wins",
        ]))
        .expect("resolves");
        assert_eq!(s.data_dir, PathBuf::from("/srv/blazedb"));
        assert_eq!(s.database, "flag-wins");
        assert_eq!(s.listen, "0.0.0.0:9000".parse().expect("addr"));
        assert_eq!(s.auth_token.as_deref(), Some("from-file"));
        assert_eq!(s.metrics, Some("127.0.0.1:9100".parse().expect("addr")));
        assert_eq!(
            (s.max_connections, s.handshake_timeout_ms, s.idle_timeout_ms),
            (50, 2000, 9000)
        );
        assert!(matches!(s.tls, Tls::SelfSigned));
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, "data_dir = \"/x\"\nauth_tokn = \"typo\"\n").expect("write");
        let e = Settings::resolve(args(&["--config", cfg.to_str().expect("utf-8")]))
            .expect_err("unknown key");
        assert!(format!("{e:#}").contains("auth_tokn"), "{e:#}");
        let e = Settings::resolve(args(&[
            "--data-dir",
            "/x",
            "--shared-secret",
            "s",
            "--tls-cert",
            "c.pem",
        ]))
        .expect_err("cert without key");
        assert!(e.to_string().contains("--tls-key"), "{e}");
        let e = Settings::resolve(args(&[
            "--data-dir",
            "/x",
            "--auth-token",
            "t",
            "--auth-token-file",
            "f",
        ]))
        .expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let e = Settings::resolve(args(&[
            "--data-dir",
            "/x",
            "--auth-token-file",
            empty.to_str().expect("utf-8"),
        ]))
        .expect_err("empty secret file");
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
