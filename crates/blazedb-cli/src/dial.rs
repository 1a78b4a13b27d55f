//! Dialing a server from the command line: the relay the flags describe (address,
//! trust, credentials) and a first connection that reports an unreachable, refusing or
//! mismatched server in words a user can act on; the role a database syncs with, and
//! a failed sync in words a user can act on.

use std::path::Path;

use blazedb::net::{Credentials, Fingerprint, NetError, Security, ServerTrust, TcpRelay};
use blazedb::sync::Relay;

use blazedb::Database;
use blazedb::sync::{Role, SyncConfig, SyncNode};

use crate::args::{RoleArg, SyncArgs};
use crate::exit::{CliError, CliResult, Exit};
use crate::remote;

fn optional_secret(file: Option<&Path>, env: &str, what: &str) -> CliResult<Option<String>> {
    let found = blazedb_cmd::secret::find(&blazedb_cmd::secret::Sources {
        what,
        file,
        file_flag: "",
        env,
        prompt: None,
    })?;
    Ok(found.map(|s| s.to_string()))
}

pub fn relay_for(a: &SyncArgs, server: &str) -> CliResult<TcpRelay> {
    let (host, port) = server
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            CliError::new(Exit::Usage, format!("'{server}' is not HOST:PORT"))
                .hint("e.g. --server 127.0.0.1:7070")
        })?;
    let security = if a.plain_tcp_insecure {
        Security::PlainTcpInsecure
    } else if let Some(fp) = &a.fingerprint {
        Security::Tls(ServerTrust::Pinned(Fingerprint::parse(fp).map_err(
            |e| {
                CliError::bad_input(e.to_string())
                    .hint("copy the fingerprint blazedb-server printed at start")
            },
        )?))
    } else if let Some(ca) = &a.ca {
        Security::Tls(ServerTrust::roots_from_pem_file(ca).map_err(|e| {
            CliError::bad_input(e.to_string()).hint("--ca takes a PEM file of CA certificates")
        })?)
    } else {
        return Err(CliError::new(Exit::Usage, "no way to trust the server")
            .hint("pass --fingerprint SHA256 (blazedb-server prints it) or --ca ROOTS.pem"));
    };
    let mut creds = Credentials::none();
    let user = a
        .user
        .clone()
        .or_else(|| std::env::var("BLAZEDB_USER").ok().filter(|u| !u.is_empty()));
    match (
        optional_secret(a.token_file.as_deref(), "BLAZEDB_AUTH_TOKEN", "auth token")?,
        user,
    ) {
        (Some(t), Some(u)) => creds = creds.user(u, t),
        (Some(t), None) => creds = creds.token(t),
        (None, Some(u)) => {
            return Err(
                CliError::new(Exit::Usage, format!("no token for user {u:?}"))
                    .hint("give the user's token with --token-file FILE or BLAZEDB_AUTH_TOKEN"),
            );
        }
        (None, None) => {}
    }
    if let Some(t) = optional_secret(
        a.peer_token_file.as_deref(),
        "BLAZEDB_PEER_TOKEN",
        "peer token",
    )? {
        creds = creds.peer_token(t);
    }
    if let Some(s) = optional_secret(
        a.secret_file.as_deref(),
        "BLAZEDB_SHARED_SECRET",
        "shared secret",
    )? {
        creds = creds.secret(s);
    }
    let remote_db = a.remote_db.as_deref().unwrap_or("main");
    Ok(TcpRelay::new(host, port, remote_db, security, creds))
}

/// Dials once, so a refusal (credentials, pin, unknown database) is reported with its
/// type and exit code instead of as a timeout of the retrying connection.
/// An I/O failure shown as the operating system says it; other failures as typed.
fn io_or(e: &NetError) -> &dyn std::fmt::Display {
    match e {
        NetError::Io(io) => io,
        other => other,
    }
}

/// Dials once to report an unreachable or refusing server clearly; `plain`: the
/// relay speaks plain TCP (`--plain-tcp-insecure`).
pub async fn probe(relay: &TcpRelay, plain: bool) -> CliResult {
    match relay.dial().await {
        Ok(wire) => {
            drop(wire);
            Ok(())
        }
        Err(e) => Err(match &e {
            NetError::Refused { code, message }
                if matches!(
                    code,
                    blazedb::net::RefuseCode::Busy | blazedb::net::RefuseCode::ShuttingDown
                ) =>
            {
                CliError::new(
                    Exit::Sync,
                    format!("the server is busy: {message} ({})", code.as_str()),
                )
                .hint("try again later; local writes are kept and sync then")
            }
            NetError::Unavailable(m) => {
                CliError::new(Exit::Sync, format!("the server is unavailable: {m}"))
                    .hint("try again later; local writes are kept and sync then")
            }
            NetError::Refused { code, message } => CliError::new(
                if *code == blazedb::net::RefuseCode::Auth {
                    Exit::Denied
                } else {
                    Exit::Sync
                },
                format!("the server refused: {message} ({})", code.as_str()),
            )
            .hint("check the auth token / user / shared secret (BLAZEDB_AUTH_TOKEN, BLAZEDB_USER, BLAZEDB_SHARED_SECRET) and --remote-db"),
            NetError::Tls(t) => CliError::new(Exit::Denied, format!("TLS: {t}"))
                .hint("the server's certificate does not match --fingerprint / --ca"),
            NetError::Auth(t) => CliError::new(Exit::Denied, format!("authentication: {t}"))
                .hint(
                    "give the server's token with --token-file FILE or BLAZEDB_AUTH_TOKEN (a \
                     user's with --user), or its shared secret with --secret-file or \
                     BLAZEDB_SHARED_SECRET",
                ),
            _ if plain && e.to_string().contains("frame") => CliError::new(
                Exit::Sync,
                format!(
                    "{} did not answer in plain TCP: {}",
                    relay.describe(),
                    io_or(&e)
                ),
            )
            .hint(
                "the server most likely speaks TLS: drop --plain-tcp-insecure and pass \
                 --fingerprint (blazedb-server prints it) or --ca",
            ),
            _ => CliError::new(
                Exit::Sync,
                format!("cannot reach {}: {}", relay.describe(), io_or(&e)),
            )
            .hint("is blazedb-server running there?"),
        }),
    }
}

fn role_of(r: RoleArg) -> Role {
    match r {
        RoleArg::Client => Role::Client,
        RoleArg::Server => Role::Server,
    }
}

/// The role to sync `db` with: the one it keeps, or the one asked for (default
/// client). Asking for the other role than the kept one is a conflict.
///
/// # Errors
/// [`Exit::Conflict`] for a role mismatch; database errors.
pub fn role_for(db: &Database, asked: Option<RoleArg>) -> CliResult<Role> {
    let stored = SyncNode::stored_role(db)?;
    match (stored, asked.map(role_of)) {
        (Some(s), Some(a)) if s != a => {
            Err(CliError::from(blazedb::sync::SyncError::RoleMismatch {
                stored: s,
                requested: a,
            }))
        }
        (Some(s), _) => Ok(s),
        (None, a) => Ok(a.unwrap_or(Role::Client)),
    }
}

/// Keeps `role` with the database (the first time) and returns its sync node.
///
/// # Errors
/// As [`SyncNode::enable`].
pub fn enable(db: &Database, role: Role) -> CliResult<SyncNode> {
    Ok(SyncNode::enable(db, role, &SyncConfig::default())?)
}

pub fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::new(Exit::Failure, format!("starting the runtime: {e}")))
}

/// What `sync` and the REPL's `sync start` dial: the role, the relay, and how the
/// server was reached (remembered after a successful sync).
pub struct Dial {
    pub role: Role,
    pub relay: TcpRelay,
    pub dialed: remote::Remote,
    pub plain: bool,
}

/// The server `a` names, else the one the database remembers.
///
/// # Errors
/// No server given or remembered, bad flags, unreadable credentials.
pub fn dial_for(db: &Database, a: &SyncArgs) -> CliResult<Dial> {
    let role = role_for(db, a.role)?;
    // `enable` only reads on a database synced before; the first time it writes the
    // node, which the sync below does anyway.
    let last = match SyncNode::stored_role(db)? {
        Some(r) => remote::remembered(&enable(db, r)?)?,
        None => None,
    };
    let (a, dialed) = remote::resolve(a, last.as_ref())?;
    let server = a.server.as_deref().unwrap_or_default();
    Ok(Dial {
        role,
        relay: relay_for(&a, server)?,
        dialed,
        plain: a.plain_tcp_insecure,
    })
}

/// A failed sync as the user sees it.
pub fn sync_error(e: blazedb::sync::SyncError) -> CliError {
    match e {
        blazedb::sync::SyncError::Forbidden(_) => CliError::new(Exit::Denied, e.to_string()).hint(
            "this user may not write (read-only) or not these collections; the \
                 server's data arrived, local writes stay pending here",
        ),
        e => CliError::new(Exit::Sync, e.to_string())
            .hint("the server may be unreachable; local writes are kept and sync later"),
    }
}
