//! `blazedb`: the command-line tool and REPL for BlazeDB databases.
//!
//! Results go to stdout as JSON (NDJSON for lists; human tables on a terminal), errors
//! to stderr as `error: ...` with a `hint: ...` saying what to do, and the exit code
//! names the kind of failure ([`exit::Exit`]).

#![forbid(unsafe_code)]

mod admin;
mod args;
mod condition;
mod conflict_text;
mod csv_import;
mod ctx;
mod demo;
mod dial;
mod dispatch;
mod documents;
mod exit;
mod filter;
mod history;
mod live_sync;
mod open;
mod output;
mod progress;
mod query_checks;
mod remote;
mod repl;
mod repl_words;
mod sync_status;
mod syncing;

use std::process::ExitCode;

use blazedb::OpenMode;
use clap::Parser;
use serde_json::json;

use crate::args::{Cli, Cmd, Global, TopCmd};
use crate::exit::{CliError, CliResult};
use crate::output::Out;

fn create(g: &Global, role: Option<args::RoleArg>) -> CliResult {
    let path = open::db_path(g)?;
    let pw = open::new_password(g)?;
    let db = open::open_with(path, &pw, OpenMode::CreateNew, g.insecure_fast_kdf)?;
    let role = match role {
        Some(r) => {
            let role = dial::role_for(&db, Some(r))?;
            dial::enable(&db, role)?;
            json!(role.to_string())
        }
        None => serde_json::Value::Null,
    };
    Out::new(g.format).value(&json!({
        "created": db.path().display().to_string(),
        "role": role,
    }))
}

/// `blazedb compact`: needs the only handle on the database (`Database::compact`), so it
/// runs here, outside the context every other command shares.
fn compact(g: &Global) -> CliResult {
    let mut db = open_for(g, &Cmd::Compact)?;
    let r = db.compact()?;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let saved = r.before_bytes.saturating_sub(r.after_bytes);
    Out::new(g.format).value(&json!({
        "compacted": db.path().display().to_string(),
        "before_bytes": r.before_bytes,
        "after_bytes": r.after_bytes,
        "saved_bytes": saved,
        "summary": format!(
            "{:.1} MiB -> {:.1} MiB (saved {:.1} MiB, {:.0}%)",
            mib(r.before_bytes),
            mib(r.after_bytes),
            mib(saved),
            100.0 * saved as f64 / r.before_bytes.max(1) as f64
        ),
    }))
}

/// Opens the database for `cmd`: read-only for the commands that only read, so they
/// never modify the database's files; read-write for the others.
fn open_for(g: &Global, cmd: &Cmd) -> CliResult<blazedb::Database> {
    let path = open::db_path(g)?;
    let pw = open::password(g)?;
    let db = open::open_with(path, &pw, cmd.open_mode(), g.insecure_fast_kdf)?;
    if documents::needs_stamping(&db, cmd)? {
        // Stamping local writes is a write: reopen read-write (one more key derivation).
        drop(db);
        return open::open_with(path, &pw, OpenMode::OpenExisting, g.insecure_fast_kdf);
    }
    Ok(db)
}

fn run(cli: Cli) -> CliResult {
    let g = cli.global;
    match cli.cmd {
        Some(TopCmd::Demo(a)) => demo::run(a.keep.as_deref()),
        Some(TopCmd::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "blazedb", &mut std::io::stdout());
            Ok(())
        }
        Some(TopCmd::Man) => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map_err(CliError::from),
        Some(TopCmd::Db(Cmd::Create { role })) => create(&g, role),
        Some(TopCmd::Db(Cmd::Compact)) => compact(&g),
        Some(TopCmd::Db(cmd)) => {
            let db = open_for(&g, &cmd)?;
            let r = dispatch::run(&mut ctx::Ctx::new(&db, g), cmd);
            db.flush()?;
            r
        }
        Some(TopCmd::Repl) | None => {
            let db = open::open(&g, OpenMode::OpenExisting)?;
            repl::run(&db, g)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(w) = blazedb_cmd::log::init(cli.global.log_format, "warn") {
        eprintln!("warning: {w}");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            e.code()
        }
    }
}
