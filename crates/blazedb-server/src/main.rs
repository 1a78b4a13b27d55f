//! `blazedb-server`: serves one BlazeDB database to sync clients.
//!
//! Prints one machine-readable line on stdout once it serves
//! (`ready listen=<addr> fingerprint=<sha256|none> metrics=<addr|none>`), logs with
//! `tracing` on stderr (`RUST_LOG` filters), and on SIGINT or SIGTERM stops accepting,
//! ends every session (each apply is one transaction), flushes the database and exits 0.
//! The signal handlers are installed before anything is printed, so a signal sent as
//! soon as `ready` shows takes that graceful path too.

#![forbid(unsafe_code)]

mod config;
mod metrics;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use blazedb::net::{Liveness, Server, ServerIdentity, TlsSetup};
use clap::Parser;
use tokio::signal::unix::{Signal, SignalKind, signal};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = config::Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(args: config::Args) -> Result<()> {
    // Before anything can be printed: a SIGTERM sent as soon as `ready` shows must find
    // the handlers in place (the default action would kill the process unflushed). One
    // arriving during start-up is kept and ends the server gracefully once it serves.
    let shutdown = Shutdown::install()?;
    let settings = config::Settings::resolve(args)?;
    let password = settings.password()?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let (dir, name) = (settings.data_dir.clone(), settings.database.clone());
    let db = tokio::task::spawn_blocking(move || {
        blazedb::Database::open(&dir, &name, password.as_bytes())
    })
    .await?
    .with_context(|| {
        format!(
            "opening database {:?} in {}",
            settings.database,
            settings.data_dir.display()
        )
    })?;
    let tls = match &settings.tls {
        config::Tls::SelfSigned => TlsSetup::SelfSigned(settings.data_dir.join("tls")),
        config::Tls::Files { cert, key } => {
            TlsSetup::Identity(Arc::new(ServerIdentity::from_pem_files(cert, key)?))
        }
        config::Tls::PlainTcpInsecure => TlsSetup::PlainTcpInsecure,
    };
    let mut server = Server::new(
        settings.listen.port(),
        &db,
        &settings.database,
        settings.auth_token.as_deref(),
        settings.shared_secret.as_deref(),
    )
    .listen_on(settings.listen.ip())
    .tls(tls);
    server.max_connections = settings.max_connections;
    server.handshake_timeout = Duration::from_millis(settings.handshake_timeout_ms);
    server.liveness = Liveness {
        heartbeat: Duration::from_millis((settings.idle_timeout_ms / 3).max(1)),
        idle_timeout: Duration::from_millis(settings.idle_timeout_ms.max(1)),
    };
    let addr = server.start().await?;
    let fingerprint = server.fingerprint();
    let server = Arc::new(server);
    let metrics = match settings.metrics {
        Some(a) => Some(
            metrics::spawn(a, Arc::clone(&server))
                .await
                .context("binding the metrics endpoint")?,
        ),
        None => None,
    };
    if let Some(fp) = fingerprint {
        tracing::info!(%fp, "TLS certificate fingerprint (clients pin this)");
    }
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
