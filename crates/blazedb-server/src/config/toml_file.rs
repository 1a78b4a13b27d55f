//! The configuration file (TOML): its keys, and errors that never show a value.
//!
//! A TOML error is reported by path, line, column and the parser's message: never the
//! offending line (the parser's own text quotes it, and it may hold the auth token),
//! nor a value the message would quote.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use blazedb_cmd::log::LogFormat;
use serde::Deserialize;

/// The TOML file's contents (every key optional).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub data_dir: Option<PathBuf>,
    pub store: Option<String>,
    pub store_password_file: Option<PathBuf>,
    pub store_ca_file: Option<PathBuf>,
    pub database: Option<String>,
    #[serde(default, deserialize_with = "crate::addr::resolve_addr_opt")]
    pub listen: Option<SocketAddr>,
    pub auth_token: Option<String>,
    pub auth_token_file: Option<PathBuf>,
    pub shared_secret: Option<String>,
    pub shared_secret_file: Option<PathBuf>,
    pub peer_token: Option<String>,
    pub peer_token_file: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub plain_tcp_insecure: bool,
    #[serde(default, deserialize_with = "crate::addr::resolve_addr_opt")]
    pub metrics: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub handshake_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_handshakes: Option<usize>,
    pub max_handshakes_per_ip: Option<usize>,
    pub message_budget_mib: Option<usize>,
    pub cache_mib: Option<usize>,
    pub log_format: Option<LogFormat>,
}

/// Reads and parses the TOML file.
pub fn parse_file(path: &Path) -> Result<File> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))
}

/// `invalid configuration PATH:LINE:COLUMN: MESSAGE`. Never the offending line (the
/// toml error's own text quotes it, and it may hold the auth token), and never a value
/// the message would quote.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let at = e
        .span()
        .and_then(|span| position(text, span.start))
        .map_or_else(String::new, |(line, column)| format!(":{line}:{column}"));
    anyhow!(
        "invalid configuration {}{at}: {}",
        path.display(),
        without_values(e.message())
    )
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn position(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    ))
}

/// serde's type errors quote the value they met (`invalid type: string "…", expected
/// usize`), and that value may be a secret typed in the wrong place: keep its kind only.
/// The expectation is taken from the last `, expected ` because the quoted value may
/// contain those words itself.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((met, expected)) = rest.rsplit_once(", expected ")
        {
            let kind = met.split(['`', '"']).next().unwrap_or_default().trim();
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    message.to_owned()
}
