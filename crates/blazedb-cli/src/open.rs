//! Finding, unlocking and opening the database a command names.

use std::path::{Path, PathBuf};

use blazedb::{Database, KdfParams, OpenMode};
use blazedb_cmd::secret::{self, SecretError, Sources};
use zeroize::Zeroizing;

use crate::args::Global;
use crate::exit::{CliError, CliResult, Exit};

/// The directory a database lives in and its name, from `DIR/NAME` (a trailing
/// `.blazedb`, the on-disk directory's suffix, is accepted too).
///
/// # Errors
/// A path without a name.
pub fn split_db_path(path: &Path) -> CliResult<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".blazedb").unwrap_or(n).to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                format!("'{}' does not name a database", path.display()),
            )
            .hint("give --db DIR/NAME, e.g. --db ./data/notes")
        })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// The `--db` path, or a usage error saying how to give it.
///
/// # Errors
/// No `--db` and no `BLAZEDB_DB`.
pub fn db_path(g: &Global) -> CliResult<&Path> {
    g.db.as_deref().ok_or_else(|| {
        CliError::new(Exit::Usage, "no database given").hint("pass --db DIR/NAME or set BLAZEDB_DB")
    })
}

/// A secret from the first line of `path` (`blazedb_cmd::secret`, shared with the
/// server).
///
/// # Errors
/// An unreadable or empty file.
pub fn read_secret_file(path: &Path, what: &str) -> CliResult<Zeroizing<String>> {
    Ok(secret::read_file(path, what)?)
}

/// A secret from a file, else an environment variable, else a terminal prompt.
///
/// # Errors
/// None of the three gives one (say which to use).
pub fn secret_from(
    file: Option<&Path>,
    env: &str,
    prompt: &str,
    what: &str,
    flag: &str,
) -> CliResult<Zeroizing<String>> {
    Ok(secret::require(&sources(file, env, prompt, what, flag))?)
}

fn sources<'a>(
    file: Option<&'a Path>,
    env: &'a str,
    prompt: &'a str,
    what: &'a str,
    flag: &'a str,
) -> Sources<'a> {
    Sources {
        what,
        file,
        file_flag: flag,
        env,
        prompt: Some(prompt),
    }
}

/// A new secret, as [`secret_from`] gives it; typed at a terminal it is asked twice
/// and the two must match, as `passwd(1)` does (a typo would lock the data away).
///
/// # Errors
/// As [`secret_from`]; [`Exit::BadInput`] when the two typed differ.
pub fn new_secret_from(
    file: Option<&Path>,
    env: &str,
    prompt: &str,
    what: &str,
    flag: &str,
) -> CliResult<Zeroizing<String>> {
    Ok(secret::require_new(&sources(
        file, env, prompt, what, flag,
    ))?)
}

impl From<SecretError> for CliError {
    fn from(e: SecretError) -> CliError {
        match e {
            SecretError::Unreadable { what, path, source } => CliError::from(source).hint(format!(
                "the {what} file {} must be readable",
                path.display()
            )),
            e @ SecretError::Empty { .. } => CliError::bad_input(e.to_string()),
            SecretError::Missing { what, hint } => {
                CliError::new(Exit::Usage, format!("no {what} given")).hint(hint)
            }
            e @ SecretError::Prompt { .. } => CliError::new(Exit::Failure, e.to_string()),
            e @ SecretError::Mismatch { .. } => {
                CliError::bad_input(e.to_string()).hint("type the same one twice")
            }
        }
    }
}

/// The password of a database `g` is about to create (asked twice at a terminal).
///
/// # Errors
/// As [`new_secret_from`].
pub fn new_password(g: &Global) -> CliResult<Zeroizing<String>> {
    new_secret_from(
        g.password_file.as_deref(),
        "BLAZEDB_PASSWORD",
        "database password: ",
        "password",
        "--password-file",
    )
}

/// The database password of `g`.
///
/// # Errors
/// As [`secret_from`].
pub fn password(g: &Global) -> CliResult<Zeroizing<String>> {
    secret_from(
        g.password_file.as_deref(),
        "BLAZEDB_PASSWORD",
        "database password: ",
        "password",
        "--password-file",
    )
}

/// Opens `path` with `password`: an existing database (read-only with `mode`
/// `ReadOnly`), or a new one with `mode` `CreateNew` (missing parent directories are
/// created mode 0700).
///
/// # Errors
/// The typed open errors (wrong password, in use, not found, damaged).
pub fn open_with(
    path: &Path,
    password: &str,
    mode: OpenMode,
    insecure_fast_kdf: bool,
) -> CliResult<Database> {
    let (dir, name) = split_db_path(path)?;
    let mut opts = Database::builder().mode(mode);
    if insecure_fast_kdf {
        opts = opts.kdf(KdfParams::INSECURE_FAST);
    }
    opts.open(&dir, &name, password.as_bytes()).map_err(|e| {
        let e = CliError::from(e);
        if e.exit == Exit::NotFound {
            CliError::new(Exit::NotFound, format!("no database at {}", path.display())).hint(
                format!("create it with `blazedb --db {} create`", path.display()),
            )
        } else {
            e
        }
    })
}

/// Opens the existing database of `g` with `mode` (`OpenExisting` or `ReadOnly`).
///
/// # Errors
/// As [`open_with`] and [`password`].
pub fn open(g: &Global, mode: OpenMode) -> CliResult<Database> {
    let path = db_path(g)?;
    let pw = password(g)?;
    open_with(path, &pw, mode, g.insecure_fast_kdf)
}
