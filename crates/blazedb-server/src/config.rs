//! The server's settings, each from **the command line, else the TOML file, else the
//! environment, else its default** (`blazedb_cmd::layer`: one rule for every setting;
//! `--help` shows each one's variable and default). Secrets (auth token, shared secret,
//! peer token, database password) may come from files or the environment so they stay
//! out of process listings and shell history.
//!
//! Resolving never prints a secret (see `toml_file` for the file's errors), and what
//! looks unsafe — a secret given as a flag, a secret or key file others may read —
//! becomes a warning in [`Settings::warnings`]. Numeric settings outside their accepted
//! range are refused, naming the setting as the user gave it.

mod store;
mod toml_file;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use blazedb::net::Liveness;
use blazedb_cmd::layer::{Layers, Origin};
use blazedb_cmd::log::LogFormat;
use blazedb_cmd::secret::{self, Sources};
use clap::{CommandFactory as _, FromArgMatches as _, Parser};
use zeroize::Zeroizing;

pub use store::Store;
pub use toml_file::File;

use store::StoreArgs;
#[cfg(test)]
use toml_file::position;

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
/// The address served when none is given.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7447";
/// The database served when none is named.
pub const DATABASE_DEFAULT: &str = "main";

/// `--version`: the release and the commit built from.
static LONG_VERSION: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(blazedb_cmd::version_with_commit);

/// The BlazeDB sync server: serves one database to sync clients over TLS.
///
/// Without a subcommand it serves; `user …` manages the named users clients may
/// authenticate as (the server may be running meanwhile: it picks changes up).
/// Each setting comes from its flag, else the configuration file, else its
/// environment variable, else its default.
///
/// Exit codes: 0 stopped cleanly (SIGINT or SIGTERM), 1 failed (bad settings, the
/// address in use, the database not opening, a wrong password), 2 usage.
#[derive(Parser, Debug)]
#[command(name = "blazedb-server", version, long_version = LONG_VERSION.as_str())]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file (flags override it; it overrides the environment).
    #[arg(long, short = 'c', env = "BLAZEDB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the database (and its TLS certificate).
    #[arg(long, env = "BLAZEDB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the served database's state in PostgreSQL instead of the data directory,
    /// shared with every server process given the same store, database name and
    /// password: `postgres://USER@HOST:PORT/DB` (its password from
    /// --store-password-file or BLAZEDB_STORE_PASSWORD, never in the URL).
    #[arg(long, env = "BLAZEDB_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// File holding the PostgreSQL user's password (its first line).
    #[arg(long, value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// Connect to PostgreSQL over TLS, its certificate verified against the
    /// certificates in this PEM file and the host name of the store URL (without it,
    /// plain TCP: for a Postgres on this host or a private network).
    #[arg(long, env = "BLAZEDB_STORE_CA_FILE", value_name = "FILE")]
    pub store_ca_file: Option<PathBuf>,
    /// Name of the database served (clients ask for it by name).
    #[arg(long, env = "BLAZEDB_DATABASE", default_value = DATABASE_DEFAULT)]
    pub database: String,
    /// Address to listen on, `HOST:PORT` (a name such as `localhost` or an IP).
    #[arg(long, env = "BLAZEDB_LISTEN", default_value = LISTEN_DEFAULT,
          value_parser = crate::addr::resolve_addr)]
    pub listen: SocketAddr,
    /// Auth token clients must prove they know (prefer --auth-token-file or the
    /// environment: a flag's value shows in the process list).
    #[arg(long, env = "BLAZEDB_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// File holding the auth token (its first line).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Shared secret clients must prove they know (prefer --shared-secret-file or the
    /// environment).
    #[arg(long, env = "BLAZEDB_SHARED_SECRET", hide_env_values = true)]
    pub shared_secret: Option<String>,
    /// File holding the shared secret (its first line).
    #[arg(long, value_name = "FILE")]
    pub shared_secret_file: Option<PathBuf>,
    /// Server-to-server token: a server proving it may sync with this one as a server
    /// peer (prefer --peer-token-file or the environment).
    #[arg(long, env = "BLAZEDB_PEER_TOKEN", hide_env_values = true)]
    pub peer_token: Option<String>,
    /// File holding the peer token (its first line).
    #[arg(long, value_name = "FILE")]
    pub peer_token_file: Option<PathBuf>,
    /// File holding the database password (else BLAZEDB_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// PEM certificate chain to serve (with --tls-key) instead of a self-signed one.
    #[arg(long, env = "BLAZEDB_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BLAZEDB_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve without TLS (loopback tests and trusted local links only).
    #[arg(long)]
    pub plain_tcp_insecure: bool,
    /// Address of the health and Prometheus metrics endpoint (off unless given).
    #[arg(long, env = "BLAZEDB_METRICS", value_parser = crate::addr::resolve_addr)]
    pub metrics: Option<SocketAddr>,
    /// Most connections at once, handshaking ones included (1 to 100000).
    #[arg(long, env = "BLAZEDB_MAX_CONNECTIONS", default_value_t = MAX_CONNECTIONS_DEFAULT)]
    pub max_connections: usize,
    /// Milliseconds a connection has to finish TLS and authentication (100 to 600000).
    #[arg(long, env = "BLAZEDB_HANDSHAKE_TIMEOUT_MS",
          default_value_t = HANDSHAKE_TIMEOUT_MS_DEFAULT)]
    pub handshake_timeout_ms: u64,
    /// Connections in TLS or the handshake at once (1 to 100000).
    #[arg(long, env = "BLAZEDB_MAX_HANDSHAKES", default_value_t = MAX_HANDSHAKES_DEFAULT)]
    pub max_handshakes: usize,
    /// Connections in TLS or the handshake at once from one address (1 to 100000).
    #[arg(long, env = "BLAZEDB_MAX_HANDSHAKES_PER_IP",
          default_value_t = MAX_HANDSHAKES_PER_IP_DEFAULT)]
    pub max_handshakes_per_ip: usize,
    /// MiB of sync messages all connections together may hold in memory, half received,
    /// half queued to send (40 to 8192).
    #[arg(long, env = "BLAZEDB_MESSAGE_BUDGET_MIB", default_value_t = MESSAGE_BUDGET_MIB_DEFAULT)]
    pub message_budget_mib: usize,
    /// Milliseconds without a frame before a connection is closed; the server
    /// heartbeats at a third of it, at most every 10 s (1000 to 86400000).
    #[arg(long, env = "BLAZEDB_IDLE_TIMEOUT_MS", default_value_t = IDLE_TIMEOUT_MS_DEFAULT)]
    pub idle_timeout_ms: u64,
    /// MiB of the database's page cache (1 to 65536).
    #[arg(long, env = "BLAZEDB_CACHE_MIB", default_value_t = CACHE_MIB_DEFAULT)]
    pub cache_mib: usize,
    /// Log events as text or as one JSON object per line (the filter is BLAZEDB_LOG,
    /// e.g. `debug` or `info,blazedb_sync=debug`; default `info`).
    #[arg(long, env = "BLAZEDB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A parsed command line: the values, and where each came from.
#[derive(Debug)]
pub struct Cli {
    pub args: Args,
    pub layers: Layers,
}

impl Cli {
    /// Parses the process's command line (exits with usage on errors, as clap does).
    #[must_use]
    pub fn parse() -> Cli {
        Cli::parse_from(std::env::args_os())
    }

    /// Parses `argv` (its first item is the program's name).
    pub fn parse_from<I, T>(argv: I) -> Cli
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Args::command();
        let matches = command.clone().get_matches_from(argv);
        let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        Cli {
            args,
            layers: Layers::new(command, matches),
        }
    }
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
    /// PostgreSQL instead of the data directory's database (see `Args::store`).
    pub store: Option<Store>,
    pub database: String,
    pub listen: SocketAddr,
    pub auth_token: Option<Zeroizing<String>>,
    pub shared_secret: Option<Zeroizing<String>>,
    pub peer_token: Option<Zeroizing<String>>,
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
    pub log_format: LogFormat,
    /// What looked unsafe while resolving (a secret on the command line, a secret or key
    /// file others may read), for the program to log as warnings.
    pub warnings: Vec<String>,
}

/// One secret setting: its value (command line or file) or its file's path, not both;
/// else its environment variable.
struct SecretSetting<'a> {
    key: &'a str,
    what: &'a str,
    value: Option<String>,
    file_value: Option<String>,
    path: Option<PathBuf>,
    file_path: Option<PathBuf>,
}

impl Resolver<'_> {
    fn secret(&mut self, s: SecretSetting<'_>) -> Result<Option<Zeroizing<String>>> {
        let env = self.layers.env_name(s.key).unwrap_or_default();
        let value = match self.layers.pick(s.key, s.value, s.file_value) {
            // The environment is the last layer: a file named anywhere wins over it.
            Some((_, Origin::Environment)) | None => None,
            Some((v, origin)) => {
                if origin == Origin::CommandLine {
                    let flag = format!("--{}", s.key.replace('_', "-"));
                    self.warnings.push(format!(
                        "{flag} on the command line is visible to other users in the \
                         process list: use {flag}-file or {env} instead"
                    ));
                }
                Some(Zeroizing::new(v))
            }
        };
        let file_key = format!("{}_file", s.key);
        let path = self
            .layers
            .pick(&file_key, s.path, s.file_path)
            .map(|(p, _)| p);
        match (value, path) {
            (Some(_), Some(_)) => bail!("give the {} or its file, not both", s.what),
            (Some(v), None) => Ok(Some(v)),
            (None, path) => {
                if let Some(p) = &path {
                    self.warn_exposed(p, &format!("the {} file", s.what));
                }
                Ok(secret::find(&Sources {
                    what: s.what,
                    file: path.as_deref(),
                    file_flag: &format!("--{}", file_key.replace('_', "-")),
                    env: &env,
                    prompt: None,
                })?)
            }
        }
    }

    /// The PostgreSQL store, if one is named, with its password (from its file or
    /// `BLAZEDB_STORE_PASSWORD`; never from the URL or a flag).
    fn store(&mut self, args: StoreArgs, file: StoreArgs) -> Result<Option<Store>> {
        let ca_file = self.pick("store_ca_file", args.ca_file, file.ca_file);
        let Some(url) = self.pick("store", args.url, file.url) else {
            if ca_file.is_some() {
                bail!("--store-ca-file is for a PostgreSQL store: give --store too");
            }
            return Ok(None);
        };
        let (password_file, file_password_file) = (args.password_file, file.password_file);
        let path = self.pick("store_password_file", password_file, file_password_file);
        if let Some(p) = &path {
            self.warn_exposed(p, "the store password file");
        }
        let password = secret::find(&Sources {
            what: "store password",
            file: path.as_deref(),
            file_flag: "--store-password-file",
            env: "BLAZEDB_STORE_PASSWORD",
            prompt: None,
        })?;
        Ok(Some(Store {
            url,
            password,
            ca_file,
        }))
    }

    fn warn_exposed(&mut self, path: &Path, what: &str) {
        self.warnings.extend(secret::exposure_warning(path, what));
    }

    /// The setting `key` from its layers, refused outside `range` with a message naming
    /// it as the user gave it, the value and the accepted range.
    fn bounded<T>(
        &self,
        key: &str,
        parsed: T,
        file: Option<T>,
        range: &RangeInclusive<T>,
    ) -> Result<T>
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        let (value, origin) = self
            .layers
            .pick(key, Some(parsed), file)
            .unwrap_or((parsed, Origin::Default));
        if !range.contains(&value) {
            bail!(
                "{} is out of range: accepted {} to {}",
                self.layers.describe(key, origin, &value, self.config),
                range.start(),
                range.end()
            );
        }
        Ok(value)
    }

    /// The setting `key`: the command line's, else the file's, else clap's.
    fn pick<T>(&self, key: &str, parsed: Option<T>, file: Option<T>) -> Option<T> {
        self.layers.pick(key, parsed, file).map(|(v, _)| v)
    }
}

/// What resolving needs at hand.
struct Resolver<'a> {
    layers: &'a Layers,
    config: Option<&'a Path>,
    warnings: Vec<String>,
}

/// TLS from the certificate and key files given, or plain TCP when asked for (never
/// both), or a self-signed certificate when neither.
fn tls_choice(cert: Option<PathBuf>, key: Option<PathBuf>, plain: bool) -> Result<Tls> {
    Ok(match (cert, key, plain) {
        (Some(_), _, true) | (_, Some(_), true) => {
            bail!("TLS files and plain TCP exclude each other")
        }
        (Some(cert), Some(key), false) => Tls::Files { cert, key },
        (Some(_), None, _) | (None, Some(_), _) => bail!("give both --tls-cert and --tls-key"),
        (None, None, true) => Tls::PlainTcpInsecure,
        (None, None, false) => Tls::SelfSigned,
    })
}

/// A warning when the configuration file holds a secret and others may read it.
fn exposed_config(file: &File, config: Option<&Path>) -> Option<String> {
    let path = config?;
    let held: Vec<&str> = [
        ("auth_token", file.auth_token.is_some()),
        ("shared_secret", file.shared_secret.is_some()),
        ("peer_token", file.peer_token.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, held)| held.then_some(key))
    .collect();
    let mode = secret::readable_by_others(path).filter(|_| !held.is_empty())?;
    Some(format!(
        "the configuration file {} holds {} and is readable by group or others \
         (mode {mode:04o}): restrict it with chmod 600, or name a file with \
         auth_token_file / shared_secret_file instead",
        path.display(),
        held.join(" and ")
    ))
}

impl Settings {
    /// Each setting from the command line, else the file (if any), else the
    /// environment, else its default.
    ///
    /// # Errors
    /// An unreadable or invalid file, conflicting or missing settings, a number outside
    /// its accepted range, an unreadable or empty secret file.
    pub fn resolve(cli: Cli) -> Result<Settings> {
        let Cli { args, layers } = cli;
        let config = layers.pick("config", args.config, None).map(|(p, _)| p);
        let file: File = match &config {
            Some(p) => toml_file::parse_file(p)?,
            None => File::default(),
        };
        let mut r = Resolver {
            layers: &layers,
            config: config.as_deref(),
            warnings: exposed_config(&file, config.as_deref())
                .into_iter()
                .collect(),
        };
        let data_dir = r.pick("data_dir", args.data_dir, file.data_dir).context(
            "no data directory: give --data-dir, data_dir in the configuration or BLAZEDB_DATA_DIR",
        )?;
        let database = r
            .pick("database", Some(args.database), file.database)
            .unwrap_or_else(|| DATABASE_DEFAULT.to_owned());
        let auth_token = r.secret(SecretSetting {
            key: "auth_token",
            what: "auth token",
            value: args.auth_token,
            file_value: file.auth_token,
            path: args.auth_token_file,
            file_path: file.auth_token_file,
        })?;
        let shared_secret = r.secret(SecretSetting {
            key: "shared_secret",
            what: "shared secret",
            value: args.shared_secret,
            file_value: file.shared_secret,
            path: args.shared_secret_file,
            file_path: file.shared_secret_file,
        })?;
        let peer_token = r.secret(SecretSetting {
            key: "peer_token",
            what: "peer token",
            value: args.peer_token,
            file_value: file.peer_token,
            path: args.peer_token_file,
            file_path: file.peer_token_file,
        })?;
        let store = r.store(
            StoreArgs::new(args.store, args.store_password_file, args.store_ca_file),
            StoreArgs::new(file.store, file.store_password_file, file.store_ca_file),
        )?;
        let password_file = r.pick("password_file", args.password_file, file.password_file);
        if let Some(f) = &password_file {
            r.warn_exposed(f, "the password file");
        }
        let tls = tls_choice(
            r.pick("tls_cert", args.tls_cert, file.tls_cert),
            r.pick("tls_key", args.tls_key, file.tls_key),
            args.plain_tcp_insecure || file.plain_tcp_insecure,
        )?;
        if let Tls::Files { key, .. } = &tls {
            r.warn_exposed(&key.clone(), "the TLS key file");
        }
        Ok(Settings {
            data_dir,
            store,
            database,
            listen: r
                .pick("listen", Some(args.listen), file.listen)
                .unwrap_or(args.listen),
            auth_token,
            shared_secret,
            peer_token,
            password_file,
            tls,
            metrics: r.pick("metrics", args.metrics, file.metrics),
            max_connections: r.bounded(
                "max_connections",
                args.max_connections,
                file.max_connections,
                &MAX_CONNECTIONS,
            )?,
            handshake_timeout_ms: r.bounded(
                "handshake_timeout_ms",
                args.handshake_timeout_ms,
                file.handshake_timeout_ms,
                &HANDSHAKE_TIMEOUT_MS,
            )?,
            idle_timeout_ms: r.bounded(
                "idle_timeout_ms",
                args.idle_timeout_ms,
                file.idle_timeout_ms,
                &IDLE_TIMEOUT_MS,
            )?,
            max_handshakes: r.bounded(
                "max_handshakes",
                args.max_handshakes,
                file.max_handshakes,
                &MAX_HANDSHAKES,
            )?,
            max_handshakes_per_ip: r.bounded(
                "max_handshakes_per_ip",
                args.max_handshakes_per_ip,
                file.max_handshakes_per_ip,
                &MAX_HANDSHAKES,
            )?,
            message_budget_mib: r.bounded(
                "message_budget_mib",
                args.message_budget_mib,
                file.message_budget_mib,
                &MESSAGE_BUDGET_MIB,
            )?,
            cache_mib: r.bounded("cache_mib", args.cache_mib, file.cache_mib, &CACHE_MIB)?,
            log_format: r
                .pick("log_format", Some(args.log_format), file.log_format)
                .unwrap_or_default(),
            warnings: r.warnings,
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
    /// No source available, or an unreadable or empty file.
    pub fn password(&self) -> Result<Zeroizing<String>> {
        Ok(secret::require(&Sources {
            what: "database password",
            file: self.password_file.as_deref(),
            file_flag: "--password-file",
            env: "BLAZEDB_PASSWORD",
            prompt: Some("database password: "),
        })?)
    }
}

#[cfg(test)]
mod tests;
