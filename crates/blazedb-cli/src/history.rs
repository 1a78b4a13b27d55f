//! The REPL's history file, `~/.blazedb_history`: the shape of each command, never its
//! values.
//!
//! A REPL line can carry a whole document (`insert people '{"ssn": "…"}'`), an id, a
//! condition on a secret field (`query people --where ssn=…`), a path. Writing lines as
//! typed would leak an encrypted database into a plaintext file of the user's home. So
//! the file keeps what recalls which command was run — its command words (`index
//! create`) and flags (`--where`, `--unique`) — and every value, positional or a flag's,
//! becomes [`ELIDED`]: `query … --where … --limit …`. Words the grammar does not know
//! are values too (they may be a typo'd command holding a secret). The running
//! session's in-memory history stays whole (arrow-up recalls lines as typed); only the
//! file is reduced.
//!
//! The file is written whole on exit (to a temporary file beside it, mode 0600, renamed
//! over it), so it is never readable by others, even for a moment. A file found with
//! wider permissions, or holding lines that are more than shapes (written by an older
//! version, or by hand), is rewritten as soon as it is read.

use std::io;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use clap::Command;

/// The history file's name, in the home directory.
pub const FILE_NAME: &str = ".blazedb_history";
/// The history file's permissions: its owner's only.
pub const FILE_MODE: u32 = 0o600;
/// What every value is replaced by.
pub const ELIDED: &str = "…";
/// The first line of a file written by rustyline (older versions of this REPL).
const RUSTYLINE_HEADER: &str = "#V2";

/// The shape of `line` under `grammar` (a built clap command: see [`HistoryFile::new`]):
/// command words and flags as typed, every value [`ELIDED`]. Empty for a line with no
/// words (a comment). Shapes are fixed points: the shape of a shape is itself.
#[must_use]
pub fn shape(grammar: &Command, line: &str) -> String {
    let Some(words) = crate::repl_words::split(line).ok() else {
        // Unbalanced quotes or brackets: only the first word may still be shown, if it
        // is a command.
        let first = line.split_whitespace().next().unwrap_or_default();
        return match grammar.find_subcommand(first) {
            Some(_) if first != line.trim() => format!("{first} {ELIDED}"),
            Some(_) => first.to_owned(),
            None => ELIDED.to_owned(),
        };
    };
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut cmd = grammar;
    // Once a command has taken a value, later words are no subcommand of it.
    let mut took_value = false;
    let mut words = words.iter();
    while let Some(w) = words.next() {
        if w == "--" {
            out.push(w.clone());
            out.extend(words.by_ref().map(|_| ELIDED.to_owned()));
        } else if let Some(long) = w.strip_prefix("--") {
            let (name, inline) = long
                .split_once('=')
                .map_or((long, false), |(n, _)| (n, true));
            match cmd.get_arguments().find(|a| a.get_long() == Some(name)) {
                Some(_) if inline => out.push(format!("--{name}={ELIDED}")),
                Some(arg) => {
                    out.push(format!("--{name}"));
                    if takes_value(arg) && words.next().is_some() {
                        out.push(ELIDED.to_owned());
                    }
                }
                None => out.push(ELIDED.to_owned()),
            }
        } else if let Some(shorts) = w.strip_prefix('-').filter(|s| !s.is_empty()) {
            let (shown, value_follows) = short_flags(cmd, shorts);
            out.push(shown);
            if value_follows && words.next().is_some() {
                out.push(ELIDED.to_owned());
            }
        } else if let Some(sub) = cmd.find_subcommand(w).filter(|_| !took_value) {
            out.push(w.clone());
            cmd = sub;
        } else {
            took_value = true;
            out.push(ELIDED.to_owned());
        }
    }
    out.join(" ")
}

/// A cluster of short flags (`-w`, `-wCOND`, `-o`): the flags shown, and whether the
/// next word is the last one's value. Anything unknown makes the whole word a value.
fn short_flags(cmd: &Command, shorts: &str) -> (String, bool) {
    let mut shown = String::from("-");
    for (at, c) in shorts.char_indices() {
        let Some(arg) = cmd.get_arguments().find(|a| a.get_short() == Some(c)) else {
            return (ELIDED.to_owned(), false);
        };
        shown.push(c);
        if takes_value(arg) {
            let attached = at + c.len_utf8() < shorts.len();
            if attached {
                shown.push_str(ELIDED);
            }
            return (shown, !attached);
        }
    }
    (shown, false)
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values()
}

/// The history file and the grammar its lines are reduced by.
pub struct HistoryFile {
    path: PathBuf,
    grammar: Command,
}

impl HistoryFile {
    /// The history file at `path`, reducing lines by `grammar` (the REPL's command line).
    #[must_use]
    pub fn new(path: PathBuf, mut grammar: Command) -> HistoryFile {
        // Built, the grammar knows its generated parts too (`help`, `--help`).
        grammar.build();
        HistoryFile { path, grammar }
    }

    /// `$HOME/.blazedb_history`, if there is a home.
    #[must_use]
    pub fn in_home(grammar: Command) -> Option<HistoryFile> {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
        Some(HistoryFile::new(
            PathBuf::from(home).join(FILE_NAME),
            grammar,
        ))
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shape of `line` (see [`shape`]).
    #[must_use]
    pub fn shape(&self, line: &str) -> String {
        shape(&self.grammar, line)
    }

    /// The file's lines as shapes (none if it does not exist). A file holding anything
    /// but shapes, or readable by others, is rewritten at once.
    ///
    /// # Errors
    /// Reading, or rewriting, the file failed.
    pub fn load(&self, max: usize) -> io::Result<Vec<String>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let raw: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, l)| !(*i == 0 && *l == RUSTYLINE_HEADER))
            .map(|(_, l)| l)
            .collect();
        let shapes = self.reduce(raw.iter().copied(), max);
        let mode = std::fs::metadata(&self.path)?.permissions().mode() & 0o777;
        if shapes.len() != raw.len() || shapes.iter().zip(&raw).any(|(s, r)| s != r) {
            self.write(&shapes)?;
        } else if mode & !FILE_MODE != 0 {
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(FILE_MODE))?;
        }
        Ok(shapes)
    }

    /// Writes the shapes of `lines` (the last `max` of them, a repeated shape once).
    ///
    /// # Errors
    /// Creating, writing or renaming the file failed.
    pub fn save<'a>(&self, lines: impl IntoIterator<Item = &'a str>, max: usize) -> io::Result<()> {
        let shapes = self.reduce(lines, max);
        self.write(&shapes)
    }

    /// Shapes, without empty ones or a repeat of the one before, the last `max` kept.
    fn reduce<'a>(&self, lines: impl IntoIterator<Item = &'a str>, max: usize) -> Vec<String> {
        let mut shapes: Vec<String> = Vec::new();
        for line in lines {
            let s = self.shape(line);
            if !s.is_empty() && shapes.last() != Some(&s) {
                shapes.push(s);
            }
        }
        let excess = shapes.len().saturating_sub(max);
        shapes.split_off(excess)
    }

    /// Replaces the file: a temporary file beside it (mode 0600 from creation), synced,
    /// renamed over it.
    fn write(&self, shapes: &[String]) -> io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(FILE_NAME)
            .permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .tempfile_in(dir)?;
        for s in shapes {
            writeln!(tmp, "{s}")?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grammar() -> Command {
        let mut g = crate::repl::grammar();
        g.build();
        g
    }

    #[test]
    fn values_become_ellipses_and_command_words_and_flags_stay() {
        let g = grammar();
        for (line, expected) in [
            (r#"insert notes '{"card": "4111 1111"}'"#, "insert … …"),
            (
                "query people --where 'ssn=078-05-1120' --sort age:desc --limit 5",
                "query … --where … --sort … --limit …",
            ),
            ("count people -w ssn=1 -wage>3", "count … -w … -w…"),
            ("query people --where=ssn=1", "query … --where=…"),
            (
                "index create by_ssn people ssn --unique",
                "index create … … … --unique",
            ),
            ("get people 0190-id --meta", "get … … --meta"),
            (
                "patch t id '{}' --unset secret_field",
                "patch … … … --unset …",
            ),
            ("export a b -o /home/me/out.ndjson", "export … … -o …"),
            ("import -", "import …"),
            ("backup /mnt/backups/db", "backup …"),
            (
                "sync --server h:1 --token-file t --watch --timeout 5",
                "sync --server … --token-file … --watch --timeout …",
            ),
            ("begin", "begin"),
            ("quit", "quit"),
            ("help query", "help query"),
            ("query people --help", "query … --help"),
            // Unknown words and flags may hold anything.
            ("frobnicate s3cret", "… …"),
            ("query t --secret-flag s3cret", "query … … …"),
            ("query t -Z", "query … …"),
            // A value spelled like a command is still a value.
            ("get insert insert", "get … …"),
            ("index create create t f", "index create … … …"),
            ("query t -- --where", "query … -- …"),
            // Unbalanced quotes: the command word only.
            (r#"insert t '{"ssn": "078"#, "insert …"),
            ("'unbalanced", "…"),
            ("# a comment with s3cret", ""),
        ] {
            let s = shape(&g, line);
            assert_eq!(s, expected, "{line}");
            assert_eq!(shape(&g, &s), s, "a shape is its own shape: {s}");
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_file_holds_shapes_only_with_mode_0600_and_older_files_are_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let h = HistoryFile::new(path.clone(), grammar());
        assert_eq!(h.load(10).expect("missing is empty"), Vec::<String>::new());
        h.save(
            [
                "insert t '{\"pin\": 1234}'",
                "insert t '{\"pin\": 5678}'",
                "# note 9999",
                "count t",
            ],
            10,
        )
        .expect("save");
        assert_eq!(mode(&path), FILE_MODE);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "insert … …\ncount …\n", "a repeated shape once");
        // An older file: rustyline's header, whole lines, readable by others.
        std::fs::write(&path, "#V2\nget t 0190-id\nput t 0190 {\"pin\":1}\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let shapes = h.load(10).expect("load");
        assert_eq!(shapes, ["get … …", "put … … …"]);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "get … …\nput … … …\n"
        );
        assert_eq!(mode(&path), FILE_MODE);
        // Shapes only, but readable by others: only the mode changes.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert_eq!(h.load(10).expect("load"), shapes);
        assert_eq!(mode(&path), FILE_MODE);
        // At most `max` lines, the latest.
        h.save(["begin", "commit", "rollback"], 2).expect("save");
        assert_eq!(h.load(10).expect("load"), ["commit", "rollback"]);
    }
}
