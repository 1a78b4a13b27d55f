//! The server's settings: command-line flags over an optional TOML file over defaults.
//! Secrets (auth token, shared secret, database password) may come from files or the
//! environment so they stay out of process listings and shell history.
//!
//! Resolving never prints a secret: a TOML error is reported by path, line, column and
//! the parser's message (never the offending line, which may hold the auth token, nor a
//! value the message would quote), and what looks unsafe — a secret given as a flag, a
//! secret or key file others may read — becomes a warning in [`Settings::warnings`].
//! Numeric settings outside their accepted range are refused, naming the setting.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use blazedb::net::Liveness;
use clap::Parser;
use serde::Deserialize;

/// Connections the sync listener may hold at once (`max_connections`): zero would serve
/// nobody; past this the process runs out of descriptors long before.
pub const MAX_CONNECTIONS: RangeInclusive<usize> = 1..=100_000;
pub const MAX_CONNECTIONS_DEFAULT: usize = blazedb::net::CONNECTIONS_MAX_DEFAULT;
/// Milliseconds to finish TLS and authentication (`handshake_timeout_ms`): below this a
/// client on a real network cannot finish; above it a stalled handshake holds its slot
/// for too long.
pub const HANDSHAKE_TIMEOUT_MS: RangeInclusive<u64> = 100..=600_000;
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Milliseconds without a frame before a session is closed (`idle_timeout_ms`): the
/// server heartbeats at a third of it, so the floor keeps heartbeats at least 333 ms
/// apart; the ceiling is a day.
pub const IDLE_TIMEOUT_MS: RangeInclusive<u64> = 1_000..=86_400_000;
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 35_000;
/// Connections still in TLS or the handshake (`max_handshakes`, and per address
/// `max_handshakes_per_ip`): anonymous sockets hold only these.
pub const MAX_HANDSHAKES: RangeInclusive<usize> = 1..=100_000;
pub const MAX_HANDSHAKES_DEFAULT: usize = blazedb::net::HANDSHAKES_MAX_DEFAULT;
pub const MAX_HANDSHAKES_PER_IP_DEFAULT: usize = blazedb::net::HANDSHAKES_PER_IP_DEFAULT;
/// MiB of sync messages held in memory by all connections together
/// (`message_budget_mib`), half for received messages, half for messages to send: each
/// half must hold one largest frame (18 MiB).
pub const MESSAGE_BUDGET_MIB: RangeInclusive<usize> = 40..=8_192;
pub const MESSAGE_BUDGET_MIB_DEFAULT: usize =
    (blazedb::net::READ_BUDGET_DEFAULT + blazedb::net::SEND_BUDGET_DEFAULT) >> 20;
/// MiB of the database's cache (`cache_mib`; `OpenOptions::cache_size`).
pub const CACHE_MIB: RangeInclusive<usize> = 1..=65_536;
pub const CACHE_MIB_DEFAULT: usize = blazedb::DEFAULT_CACHE_BYTES >> 20;
/// Permission bits that let the group or others read a file.
const MODE_READABLE_BY_OTHERS: u32 = 0o044;

/// The BlazeDB sync server: serves one database to sync clients over TLS.
///
/// Without a subcommand it serves; `user …` manages the named users clients may
/// authenticate as (the server may be running meanwhile: it picks changes up).
#[derive(Parser, Debug, Default)]
#[command(name = "blazedb-server", version)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file (flags override it).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Directory holding the database (and its TLS certificate).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Name of the database served (clients ask for it by name).
    #[arg(long)]
    pub database: Option<String>,
    /// Address to listen on, `HOST:PORT` (a name such as `localhost` or an IP)
    /// [default: 127.0.0.1:7447].
    #[arg(long, value_parser = crate::addr::resolve_addr)]
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
    /// Server-to-server token: a server proving it may sync with this one as a server
    /// peer (prefer --peer-token-file or BLAZEDB_PEER_TOKEN).
    #[arg(long)]
    pub peer_token: Option<String>,
    #[arg(long)]
    pub peer_token_file: Option<PathBuf>,
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
    #[arg(long, value_parser = crate::addr::resolve_addr)]
    pub metrics: Option<SocketAddr>,
    /// Most connections at once, handshaking ones included (1 to 100000)
    /// [default: 1024].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Milliseconds a connection has to finish TLS and authentication (100 to 600000)
    /// [default: 10000].
    #[arg(long)]
    pub handshake_timeout_ms: Option<u64>,
    /// Connections in TLS or the handshake at once (1 to 100000) [default: 256].
    #[arg(long)]
    pub max_handshakes: Option<usize>,
    /// Connections in TLS or the handshake at once from one address (1 to 100000)
    /// [default: 64].
    #[arg(long)]
    pub max_handshakes_per_ip: Option<usize>,
    /// MiB of sync messages all connections together may hold in memory, half received,
    /// half queued to send (40 to 8192) [default: 128].
    #[arg(long)]
    pub message_budget_mib: Option<usize>,
    /// Milliseconds without a frame before a connection is closed; the server
    /// heartbeats at a third of it, at most every 10 s (1000 to 86400000)
    /// [default: 35000].
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// MiB of the database's page cache (1 to 65536) [default: 128].
    #[arg(long)]
    pub cache_mib: Option<usize>,
}

/// The TOML file's contents (every key optional).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub data_dir: Option<PathBuf>,
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
}

/// What the program does besides serving.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Named users: each authenticates with its own token and has its own permissions.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

/// `blazedb-server user …`.
#[derive(clap::Subcommand, Debug)]
pub enum UserAction {
    /// Adds a user and prints its token on stdout (once: only a key derived from it is
    /// kept). Clients sync as it with `--user NAME` and the token.
    Add {
        name: String,
        /// The user may read, never write.
        #[arg(long)]
        read_only: bool,
        /// The only collections the user may read and write (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "NAME,..")]
        collections: Option<Vec<String>>,
    },
    /// Lists the users and their permissions.
    List,
    /// Removes a user: its next handshake fails, and its open sessions are closed.
    Revoke { name: String },
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
    pub peer_token: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Tls,
    pub metrics: Option<SocketAddr>,
    pub max_connections: usize,
    pub handshake_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_handshakes: usize,
    pub max_handshakes_per_ip: usize,
    pub message_budget_mib: usize,
    pub cache_mib: usize,
    /// What looked unsafe while resolving (a secret on the command line, a secret or key
    /// file others may read), for the program to log as warnings.
    pub warnings: Vec<String>,
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
    warnings: &mut Vec<String>,
) -> Result<Option<String>> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("give the {what} or its file, not both"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => {
            warn_if_readable_by_others(&f, &format!("the {what} file"), warnings);
            read_secret(&f, what).map(Some)
        }
        (None, None) => Ok(std::env::var(env).ok().filter(|v| !v.is_empty())),
    }
}

/// The permission bits of `path` when the group or others may read it. A file that
/// cannot be inspected is not judged here: using it reports the real error.
fn readable_by_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & MODE_READABLE_BY_OTHERS != 0).then_some(mode)
}

/// TLS from the certificate and key files given, or plain TCP when asked for (never
/// both), or a self-signed certificate when neither.
fn tls_choice(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    plain: bool,
    warnings: &mut Vec<String>,
) -> Result<Tls> {
    Ok(match (cert, key, plain) {
        (Some(_), _, true) | (_, Some(_), true) => {
            bail!("TLS files and plain TCP exclude each other")
        }
        (Some(cert), Some(key), false) => {
            warn_if_readable_by_others(&key, "the TLS key file", warnings);
            Tls::Files { cert, key }
        }
        (Some(_), None, _) | (None, Some(_), _) => bail!("give both --tls-cert and --tls-key"),
        (None, None, true) => Tls::PlainTcpInsecure,
        (None, None, false) => Tls::SelfSigned,
    })
}

fn warn_if_readable_by_others(path: &Path, what: &str, warnings: &mut Vec<String>) {
    if let Some(mode) = readable_by_others(path) {
        warnings.push(format!(
            "{what} {} is readable by group or others (mode {mode:04o}): restrict it \
             with chmod 600",
            path.display()
        ));
    }
}

/// Reads and parses the TOML file.
fn parse_file(path: &Path) -> Result<File> {
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
fn position(text: &str, offset: usize) -> Option<(usize, usize)> {
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

/// The flag's value, else the file's, else `default`; refused outside `range` with a
/// message naming the setting as the user gave it, the value and the accepted range.
fn bounded<T>(
    key: &str,
    flag: Option<T>,
    file: Option<T>,
    config: Option<&Path>,
    default: T,
    range: &RangeInclusive<T>,
) -> Result<T>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    let (value, named) = match (flag, file, config) {
        (Some(v), _, _) => (v, format!("--{} {v}", key.replace('_', "-"))),
        (None, Some(v), Some(path)) => (v, format!("{key} = {v} in {}", path.display())),
        (None, Some(v), None) => (v, format!("{key} = {v}")),
        (None, None, _) => return Ok(default),
    };
    if !range.contains(&value) {
        bail!(
            "{named} is out of range: accepted {} to {}",
            range.start(),
            range.end()
        );
    }
    Ok(value)
}

/// Warnings for secrets others may see: given as flags (the process list shows them to
/// every user), or held in a configuration file the group or others may read.
fn exposed_secrets(args: &Args, file: &File, config: Option<&Path>) -> Vec<String> {
    let mut warnings = Vec::new();
    for (given, flag, instead) in [
        (
            args.auth_token.is_some(),
            "--auth-token",
            "--auth-token-file or BLAZEDB_AUTH_TOKEN",
        ),
        (
            args.shared_secret.is_some(),
            "--shared-secret",
            "--shared-secret-file or BLAZEDB_SHARED_SECRET",
        ),
        (
            args.peer_token.is_some(),
            "--peer-token",
            "--peer-token-file or BLAZEDB_PEER_TOKEN",
        ),
    ] {
        if given {
            warnings.push(format!(
                "{flag} on the command line is visible to other users in the process \
                 list: use {instead} instead"
            ));
        }
    }
    if let Some(path) = config {
        let held: Vec<&str> = [
            ("auth_token", file.auth_token.is_some()),
            ("shared_secret", file.shared_secret.is_some()),
            ("peer_token", file.peer_token.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, held)| held.then_some(key))
        .collect();
        if !held.is_empty()
            && let Some(mode) = readable_by_others(path)
        {
            warnings.push(format!(
                "the configuration file {} holds {} and is readable by group or others \
                 (mode {mode:04o}): restrict it with chmod 600, or name a file with \
                 auth_token_file / shared_secret_file instead",
                path.display(),
                held.join(" and ")
            ));
        }
    }
    warnings
}

impl Settings {
    /// Flags over the file (if any) over defaults.
    ///
    /// # Errors
    /// An unreadable or invalid file, conflicting or missing settings, a number outside
    /// its accepted range.
    pub fn resolve(args: Args) -> Result<Settings> {
        let config = args.config.as_deref();
        let file: File = match config {
            Some(p) => parse_file(p)?,
            None => File::default(),
        };
        let mut warnings = exposed_secrets(&args, &file, config);
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
            &mut warnings,
        )?;
        let shared_secret = secret(
            args.shared_secret.or(file.shared_secret),
            args.shared_secret_file.or(file.shared_secret_file),
            "BLAZEDB_SHARED_SECRET",
            "shared secret",
            &mut warnings,
        )?;
        let peer_token = secret(
            args.peer_token.or(file.peer_token),
            args.peer_token_file.or(file.peer_token_file),
            "BLAZEDB_PEER_TOKEN",
            "peer token",
            &mut warnings,
        )?;
        let password_file = args.password_file.or(file.password_file);
        if let Some(f) = &password_file {
            warn_if_readable_by_others(f, "the password file", &mut warnings);
        }
        let tls = tls_choice(
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.plain_tcp_insecure || file.plain_tcp_insecure,
            &mut warnings,
        )?;
        Ok(Settings {
            data_dir,
            database,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], blazedb::net::PORT_DEFAULT))),
            auth_token,
            shared_secret,
            peer_token,
            password_file,
            tls,
            metrics: args.metrics.or(file.metrics),
            max_connections: bounded(
                "max_connections",
                args.max_connections,
                file.max_connections,
                config,
                MAX_CONNECTIONS_DEFAULT,
                &MAX_CONNECTIONS,
            )?,
            handshake_timeout_ms: bounded(
                "handshake_timeout_ms",
                args.handshake_timeout_ms,
                file.handshake_timeout_ms,
                config,
                HANDSHAKE_TIMEOUT_MS_DEFAULT,
                &HANDSHAKE_TIMEOUT_MS,
            )?,
            idle_timeout_ms: bounded(
                "idle_timeout_ms",
                args.idle_timeout_ms,
                file.idle_timeout_ms,
                config,
                IDLE_TIMEOUT_MS_DEFAULT,
                &IDLE_TIMEOUT_MS,
            )?,
            max_handshakes: bounded(
                "max_handshakes",
                args.max_handshakes,
                file.max_handshakes,
                config,
                MAX_HANDSHAKES_DEFAULT,
                &MAX_HANDSHAKES,
            )?,
            max_handshakes_per_ip: bounded(
                "max_handshakes_per_ip",
                args.max_handshakes_per_ip,
                file.max_handshakes_per_ip,
                config,
                MAX_HANDSHAKES_PER_IP_DEFAULT,
                &MAX_HANDSHAKES,
            )?,
            message_budget_mib: bounded(
                "message_budget_mib",
                args.message_budget_mib,
                file.message_budget_mib,
                config,
                MESSAGE_BUDGET_MIB_DEFAULT,
                &MESSAGE_BUDGET_MIB,
            )?,
            cache_mib: bounded(
                "cache_mib",
                args.cache_mib,
                file.cache_mib,
                config,
                CACHE_MIB_DEFAULT,
                &CACHE_MIB,
            )?,
            warnings,
        })
    }

    /// The session timers. Each side closes a session after its idle timeout without a
    /// frame and heartbeats when it has nothing to say, so the server heartbeats at a
    /// third of its idle timeout, but never less often than the default clients expect
    /// (a client closes a silent server after its own idle timeout, 35 s by default:
    /// with `idle_timeout_ms` at a day, heartbeats every 8 hours would drop every quiet
    /// client).
    #[must_use]
    pub fn liveness(&self) -> Liveness {
        let idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        Liveness {
            heartbeat: (idle_timeout / 3).min(Liveness::default().heartbeat),
            idle_timeout,
        }
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
mod tests;
