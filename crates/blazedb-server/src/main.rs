//! `blazedb-server`: serves one BlazeDB database to sync clients.
//!
//! Prints one machine-readable line on stdout once it serves
//! (`ready listen=<addr> fingerprint=<sha256|none> metrics=<addr|none>`), logs with
//! `tracing` on stderr (`BLAZEDB_LOG` filters, `--log-format json` for JSON lines), and on SIGINT or SIGTERM stops accepting,
//! ends every session (each apply is one transaction), flushes the database and exits 0.
//! The signal handlers are installed before anything is printed, so a signal sent as
//! soon as `ready` shows takes that graceful path too. A data directory the server
//! creates is private to its user (mode 0700).

#![forbid(unsafe_code)]

mod addr;
mod config;
mod metrics;
mod served;
mod users;

use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use blazedb::net::UserDirectory;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The allocator returns freed memory to the operating system (glibc's keeps large
/// freed blocks in its per-thread arenas, so the server stayed at its high-water mark
/// after large documents had passed).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Mode of a data directory the server creates: owner only.
const DATA_DIR_MODE: u32 = 0o700;

fn main() -> std::process::ExitCode {
    let mut cli = config::Cli::parse();
    let user_action = cli
        .args
        .command
        .take()
        .map(|config::Command::User { action }| action);
    let settings = match config::Settings::resolve(cli) {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    if let Some(w) = blazedb_cmd::log::init(settings.log_format, "info") {
        tracing::warn!("{w}");
    }
    if let Some(action) = user_action {
        return match users::run(&settings, action) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => failed(&e),
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failed(&anyhow::Error::from(e).context("starting the runtime")),
    };
    match rt.block_on(run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

/// Exit code 1 with `error: ...` on stderr (see the exit codes in `--help`).
fn failed(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {e:#}");
    std::process::ExitCode::from(1)
}

async fn run(settings: config::Settings) -> Result<()> {
    // Before anything can be printed: a SIGTERM sent as soon as `ready` shows must find
    // the handlers in place (the default action would kill the process unflushed). One
    // arriving during start-up is kept and ends the server gracefully once it serves.
    let shutdown = Shutdown::install()?;
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let password = settings.password()?;
    let users_password = password.clone();
    // Bind first: a busy or forbidden address is reported before the data directory,
    // the database or a certificate is created (the real listener binds it again
    // once they exist; losing that race is reported the same way).
    if let Err(e) = std::net::TcpListener::bind(settings.listen) {
        bail!("cannot listen on {}: {e}", settings.listen);
    }
    create_data_dir(&settings.data_dir)?;
    let served = served::Served::open(&settings, password).await?;
    // Named users: always watched, so users added while the server runs get in.
    if let Some(f) = served.ignored_users_file(&settings) {
        tracing::warn!(
            file = %f.display(),
            "this users file is ignored: with --store, named users live in the store \
             (add them again with `blazedb-server --store … user add NAME`)"
        );
    }
    let users_at = served.users();
    let users = tokio::task::spawn_blocking(move || {
        UserDirectory::open_at(users_at, users_password.as_bytes())
    })
    .await??;
    if settings.auth_token.is_none()
        && settings.shared_secret.is_none()
        && settings.peer_token.is_none()
        && users.is_empty()
    {
        bail!(
            "no way in for clients: give an auth token (--auth-token-file or \
             BLAZEDB_AUTH_TOKEN) or a shared secret, or add a user with \
             `blazedb-server user add NAME`"
        );
    }
    let tls = served.tls(&settings).await?;
    let mut server = served
        .server(
            &settings,
            settings.auth_token.as_deref().map(String::as_str),
            settings.shared_secret.as_deref().map(String::as_str),
        )
        .listen_on(settings.listen.ip())
        .tls(tls)
        .users(users);
    if let Some(t) = &settings.peer_token {
        server = server.peer_token(t);
    }
    server.max_connections = settings.max_connections;
    server.max_handshakes = settings.max_handshakes;
    server.max_handshakes_per_ip = settings.max_handshakes_per_ip;
    server.read_budget = settings.message_budget_mib / 2 * (1 << 20);
    server.send_budget = settings.message_budget_mib / 2 * (1 << 20);
    server.handshake_timeout = Duration::from_millis(settings.handshake_timeout_ms);
    server.liveness = settings.liveness();
    let addr = server.start().await?;
    let fingerprint = server.fingerprint();
    let server = Arc::new(server);
    let metrics = match settings.metrics {
        Some(a) => Some(
            metrics::spawn(a, Arc::clone(&server), served.health())
                .await
                .context("binding the metrics endpoint")?,
        ),
        None => None,
    };
    tracing::info!(
        database = %settings.database,
        from = %served.describe(&settings),
        "serving"
    );
    println!(
        "ready listen={addr} fingerprint={} metrics={}",
        fingerprint.map_or_else(|| "none".to_owned(), |f| f.to_string()),
        metrics
            .as_ref()
            .map_or_else(|| "none".to_owned(), |(a, _)| a.to_string()),
    );
    let _ = std::io::stdout().flush();
    shutdown.wait().await;
    tracing::info!("shutting down: no new connections, ending sessions, flushing");
    if let Some((_, task)) = metrics {
        task.abort();
    }
    server.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Creates the data directory (and missing parents) readable by this user only: it
/// holds the database and the TLS private key. An existing directory is left as it is:
/// its permissions are the operator's choice.
fn create_data_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// The SIGTERM and SIGINT handlers, installed once; a signal received before
/// [`Shutdown::wait`] is kept until it is called.
struct Shutdown {
    term: Signal,
    int: Signal,
}

impl Shutdown {
    fn install() -> Result<Shutdown> {
        Ok(Shutdown {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn a_created_data_directory_is_private_and_an_existing_one_keeps_its_mode() {
        let root = tempfile::tempdir().expect("tempdir");
        let fresh = root.path().join("a/b");
        create_data_dir(&fresh).expect("create");
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(
            mode(&root.path().join("a")),
            0o700,
            "parents it creates too"
        );
        let existing = root.path().join("shared");
        std::fs::create_dir(&existing).expect("mkdir");
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        create_data_dir(&existing).expect("exists already");
        assert_eq!(mode(&existing), 0o755);
    }
}
