//! The interactive REPL: the command line's database commands, one per line, plus
//! `begin` / `commit` / `rollback` and `exit` (and `sqlite3`'s `.tables`, `.schema`,
//! `.help`, `.quit`). JSON is typed as-is (`insert todo {"title": "x"}`, see
//! `repl_words.rs`). Tab completes commands and collection names. With stdin not a
//! terminal it reads commands line by line, so scripts can pipe into it; like
//! `sqlite3 -bail`, a script stops at its first failing line, which the error names,
//! and the exit code is that failure's.
//!
//! History: within a session, every line typed is recalled whole (arrow-up). Across
//! sessions, `~/.blazedb_history` keeps only the *shape* of each command — its command
//! words and flags, every value replaced by `…` (`query … --where … --limit …`) — since
//! documents, ids, conditions and paths typed into the REPL of an encrypted database
//! must not land in a plaintext file. The file has mode 0600 (a wider one is narrowed),
//! holds at most [`HISTORY_MAX`] lines, and is read and written by interactive sessions
//! only: a piped script adds nothing to it. See [`crate::history`].

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blazedb::Database;
use clap::{CommandFactory, Parser, Subcommand};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{History as _, MemHistory, SearchDirection};
use rustyline::validate::Validator;
use rustyline::{Config, Context, Editor, Helper};

use crate::args::{Cmd, Global, SyncArgs};
use crate::ctx::Ctx;
use crate::dispatch;
use crate::exit::{CliError, CliResult, Exit};
use crate::history::HistoryFile;
use crate::live_sync::LiveSync;
use crate::repl_words;
use crate::sync_status::{state, status_json};

/// Most lines kept in the history file.
pub const HISTORY_MAX: usize = 10_000;

/// One REPL line.
#[derive(Debug, Parser)]
#[command(name = "", no_binary_name = true, disable_version_flag = true)]
struct Line {
    #[command(subcommand)]
    cmd: LineCmd,
}

#[derive(Debug, Subcommand)]
enum LineCmd {
    #[command(flatten)]
    Db(Box<Cmd>),
    /// Start a transaction: writes and gets go through it until commit or rollback.
    Begin,
    /// Commit the open transaction (durably, atomically).
    Commit,
    /// Discard the open transaction's writes.
    Rollback,
    /// Leave the REPL (an open transaction is rolled back).
    #[command(alias = "quit")]
    Exit,
    /// `sync start [--server HOST:PORT …]`: sync live with a server in the background
    /// while the REPL goes on; a line at each change of state (`sync stop` ends it).
    #[command(name = "sync-start")]
    SyncStart(Box<SyncArgs>),
    /// `sync now`: wait until the background sync is in step (writes confirmed, the
    /// server's arrived).
    #[command(name = "sync-now")]
    SyncNow {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        timeout: u64,
    },
    /// `sync stop`: end the background sync.
    #[command(name = "sync-stop")]
    SyncStop,
}

/// Completion of command names, then of a command's flags (a word starting with `-`)
/// and of collection names.
struct Complete {
    commands: Vec<String>,
    collections: Arc<Mutex<Vec<String>>>,
    /// The REPL's grammar, for the flags of each command.
    grammar: clap::Command,
}

impl Complete {
    /// The long flags of the command a line starts with (`--where`, …), sorted.
    fn flags_of(&self, line: &str) -> Vec<String> {
        let mut cmd = &self.grammar;
        for word in line.split_whitespace() {
            match cmd.find_subcommand(word) {
                Some(sub) => cmd = sub,
                None => break,
            }
        }
        let mut flags: Vec<String> = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        flags.sort();
        flags
    }
}

impl Completer for Complete {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let start = head.rfind(' ').map_or(0, |i| i + 1);
        let word = &head[start..];
        let pool: Vec<String> = if start == 0 {
            self.commands.clone()
        } else if word.starts_with('-') {
            self.flags_of(&head[..start])
        } else {
            self.collections
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        let pairs = pool
            .into_iter()
            .filter(|c| c.starts_with(word))
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for Complete {
    type Hint = String;
}
impl Highlighter for Complete {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}
impl Validator for Complete {}
impl Helper for Complete {}

/// The grammar of a REPL line (what the history file's shapes are made by).
pub fn grammar() -> clap::Command {
    Line::command()
}

fn refresh(db: &Database, into: &Mutex<Vec<String>>) {
    if let Ok(names) = db.begin_read().and_then(|r| r.collections()) {
        *into.lock().unwrap_or_else(PoisonError::into_inner) = names;
    }
}

/// Runs the REPL on `db` until `exit` or end of input. When input is not a terminal,
/// stops at the first failing line and returns its failure (naming the line), so a
/// piped script's exit code tells.
///
/// # Errors
/// Reading input failed; with piped input, the first failing command's error.
pub fn run(db: &Database, global: Global) -> CliResult {
    let collections = Arc::new(Mutex::new(Vec::new()));
    refresh(db, &collections);
    let mut commands: Vec<String> = Line::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    commands.push("help".into());
    commands.sort();
    let config = Config::builder()
        .max_history_size(HISTORY_MAX)
        .map_err(|e| CliError::new(Exit::Failure, e.to_string()))?
        .auto_add_history(true)
        .build();
    let mut ed: Editor<Complete, MemHistory> = Editor::with_config(config)
        .map_err(|e| CliError::new(Exit::Failure, format!("starting the REPL: {e}")))?;
    ed.set_helper(Some(Complete {
        commands,
        collections: Arc::clone(&collections),
        grammar: grammar(),
    }));
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let history = interactive
        .then(|| HistoryFile::in_home(grammar()))
        .flatten();
    if let Some(h) = &history {
        load_history(h, &mut ed);
    }
    if interactive {
        eprintln!(
            "BlazeDB {} on {} — `help` lists commands, `exit` leaves",
            env!("CARGO_PKG_VERSION"),
            db.path().display()
        );
    }
    let mut ctx = Ctx::new(db, global);
    let mut failed: Option<CliError> = None;
    let mut line_no = 0usize;
    loop {
        let prompt = prompt_of(&ctx);
        let line = match ed.readline(&prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(CliError::new(Exit::Failure, format!("reading input: {e}"))),
        };
        line_no += 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match step(&mut ctx, text) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) if interactive => eprintln!("{e}"),
            Err(e) => {
                // A script stops at its first failure, saying where.
                failed = Some(CliError {
                    message: format!("line {line_no}: {}", e.message),
                    ..e
                });
                break;
            }
        }
        refresh(db, &collections);
    }
    if ctx.tx.take().is_some() {
        eprintln!("the open transaction was rolled back");
    }
    if let Some(live) = ctx.live.take() {
        live.stop();
    }
    if let Some(h) = &history {
        save_history(h, &ed);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `blazedb> `, `blazedb*> ` in a transaction, with the background sync's state
/// (`blazedb [synced]> `); the state lines kept since the last prompt are shown first.
fn prompt_of(ctx: &Ctx<'_>) -> String {
    let tx = if ctx.tx.is_some() { "*" } else { "" };
    match &ctx.live {
        Some(live) => {
            show_lines(&live.take_lines());
            format!("blazedb{tx} [{}]> ", state(&live.status()))
        }
        None => format!("blazedb{tx}> "),
    }
}

fn show_lines(lines: &[String]) {
    for l in lines {
        eprintln!("{l}");
    }
}

/// Earlier sessions' shapes, oldest first, into the in-memory history. Failing to read
/// the file must not fail the session: it is said, and the session goes on.
fn load_history(h: &HistoryFile, ed: &mut Editor<Complete, MemHistory>) {
    match h.load(HISTORY_MAX) {
        Ok(shapes) => {
            for s in shapes {
                let _ = ed.add_history_entry(s);
            }
        }
        Err(e) => eprintln!("note: history not read from {}: {e}", h.path().display()),
    }
}

/// This session's lines (and the earlier shapes) as shapes into the file.
fn save_history(h: &HistoryFile, ed: &Editor<Complete, MemHistory>) {
    let mem = ed.history();
    let lines: Vec<Cow<'_, str>> = (0..mem.len())
        .filter_map(|i| mem.get(i, SearchDirection::Forward).ok().flatten())
        .map(|found| found.entry)
        .collect();
    if let Err(e) = h.save(lines.iter().map(AsRef::as_ref), HISTORY_MAX) {
        eprintln!("note: history not saved to {}: {e}", h.path().display());
    }
}

/// Runs one line; `Ok(true)` means leave.
fn step(ctx: &mut Ctx<'_>, text: &str) -> CliResult<bool> {
    let text = repl_words::dot_command(text).unwrap_or(text);
    let words = repl_words::sync_action(repl_words::split(text)?);
    let line = match Line::try_parse_from(&words) {
        Ok(l) => l,
        Err(e) => {
            let kind = e.kind();
            let shown = e.render().to_string();
            if matches!(
                kind,
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                println!("{shown}");
                return Ok(false);
            }
            return Err(CliError::new(
                Exit::Usage,
                shown.trim_end().trim_start_matches("error: "),
            ));
        }
    };
    match line.cmd {
        LineCmd::Exit => return Ok(true),
        LineCmd::Begin => {
            if ctx.tx.is_some() {
                return Err(CliError::new(Exit::Usage, "a transaction is already open")
                    .hint("`commit` or `rollback` it first"));
            }
            ctx.tx = Some(ctx.db.begin_write()?);
        }
        LineCmd::Commit => match ctx.tx.take() {
            Some(tx) => tx.commit()?,
            None => return Err(CliError::new(Exit::Usage, "no open transaction")),
        },
        LineCmd::Rollback => match ctx.tx.take() {
            Some(tx) => tx.rollback(),
            None => return Err(CliError::new(Exit::Usage, "no open transaction")),
        },
        LineCmd::Db(cmd) => dispatch::run(ctx, *cmd)?,
        LineCmd::SyncStart(a) => {
            if ctx.live.is_some() {
                return Err(
                    CliError::new(Exit::Usage, "sync runs in the background already")
                        .hint("`sync stop` first"),
                );
            }
            ctx.outside_tx("sync start")?;
            let table = ctx.out.is_table();
            ctx.live = Some(LiveSync::start(ctx.db, &a, table)?);
        }
        LineCmd::SyncNow { timeout } => {
            let live = ctx.live.as_ref().ok_or_else(not_live)?;
            let s = live.sync_now(Duration::from_secs(timeout))?;
            ctx.out.value(&status_json(&s))?;
        }
        LineCmd::SyncStop => {
            let live = ctx.live.take().ok_or_else(not_live)?;
            let (last, lines) = live.stop();
            show_lines(&lines);
            ctx.out.value(&status_json(&last))?;
        }
    }
    Ok(false)
}

fn not_live() -> CliError {
    CliError::new(Exit::Usage, "no sync runs in the background")
        .hint("`sync start` starts one (`sync` alone syncs once)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_completes_commands_first_then_flags_and_collection_names() {
        let c = Complete {
            commands: vec!["count".into(), "query".into(), "commit".into()],
            collections: Arc::new(Mutex::new(vec!["todo".into(), "tags".into()])),
            grammar: grammar(),
        };
        let h = MemHistory::new();
        let ctx = Context::new(&h);
        let names = |line: &str| {
            let (start, pairs) = c.complete(line, line.len(), &ctx).expect("complete");
            (
                start,
                pairs.into_iter().map(|p| p.replacement).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            names("co"),
            (0, vec!["count".to_owned(), "commit".to_owned()])
        );
        assert_eq!(
            names("query t"),
            (6, vec!["todo".to_owned(), "tags".to_owned()])
        );
        assert_eq!(names("query to"), (6, vec!["todo".to_owned()]));
        assert_eq!(names("query todo --wh"), (11, vec!["--where".to_owned()]));
        assert_eq!(
            names("query todo --s"),
            (11, vec!["--select".to_owned(), "--sort".to_owned()])
        );
        assert_eq!(names("index create --u"), (13, vec!["--unique".to_owned()]));
    }
}
