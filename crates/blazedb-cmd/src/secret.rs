//! Secrets (passwords, tokens) from a file, else an environment variable, else a prompt
//! on a terminal: never from a flag's value, which the process list shows to every
//! user. A secret is the first line of its file (a trailing `\r` dropped), held in
//! memory that is zeroed when dropped.

use std::io::IsTerminal as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Permission bits that let the group or others read a file.
const MODE_READABLE_BY_OTHERS: u32 = 0o044;

/// Why no secret was read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the {what} file {}: {source}", path.display())]
    Unreadable {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} file {} is empty", path.display())]
    Empty { what: String, path: PathBuf },
    #[error("no {what} given: {hint}")]
    Missing {
        what: String,
        /// What the user can do: `pass FLAG FILE, set ENV, or run on a terminal`.
        hint: String,
    },
    #[error("reading the {what} from the terminal: {source}")]
    Prompt {
        what: String,
        source: std::io::Error,
    },
    #[error("the two {what}s typed differ; nothing was done")]
    Mismatch { what: String },
}

/// Where one secret may come from, in order.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    /// What it is, for messages ("password", "auth token").
    pub what: &'a str,
    /// A file named by the user (its flag or configuration key).
    pub file: Option<&'a Path>,
    /// The flag naming a file, for the hint when nothing gives the secret.
    pub file_flag: &'a str,
    /// The environment variable holding it.
    pub env: &'a str,
    /// Asked on a terminal when neither gives it (`None`: never asked).
    pub prompt: Option<&'a str>,
}

/// The first line of `path`.
///
/// # Errors
/// [`SecretError::Unreadable`], or [`SecretError::Empty`] when that line is empty.
pub fn read_file(path: &Path, what: &str) -> Result<Zeroizing<String>, SecretError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        SecretError::Unreadable {
            what: what.to_owned(),
            path: path.to_owned(),
            source,
        }
    })?);
    let line = text.lines().next().unwrap_or_default();
    let line = Zeroizing::new(line.strip_suffix('\r').unwrap_or(line).to_owned());
    if line.is_empty() {
        return Err(SecretError::Empty {
            what: what.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(line)
}

/// The secret of the first source that gives one: the file, the environment variable
/// (an empty value counts as unset), a prompt on a terminal. `Ok(None)` when none does
/// and the secret is optional (no prompt).
///
/// # Errors
/// The file's [`read_file`] errors; [`SecretError::Missing`] when a prompt was allowed
/// but stdin is not a terminal; [`SecretError::Prompt`] when the terminal fails.
pub fn find(s: &Sources<'_>) -> Result<Option<Zeroizing<String>>, SecretError> {
    if let Some(f) = s.file {
        return read_file(f, s.what).map(Some);
    }
    if let Some(v) = env_value(s.env) {
        return Ok(Some(v));
    }
    let Some(prompt) = s.prompt else {
        return Ok(None);
    };
    if !std::io::stdin().is_terminal() {
        return Err(SecretError::Missing {
            what: s.what.to_owned(),
            hint: format!(
                "pass {} FILE, set {}, or run on a terminal",
                s.file_flag, s.env
            ),
        });
    }
    ask(prompt, s.what).map(Some)
}

/// As [`find`] with a prompt: a secret that must be given.
///
/// # Errors
/// As [`find`].
pub fn require(s: &Sources<'_>) -> Result<Zeroizing<String>, SecretError> {
    find(s)?.ok_or_else(|| SecretError::Missing {
        what: s.what.to_owned(),
        hint: format!("pass {} FILE or set {}", s.file_flag, s.env),
    })
}

/// A new secret, as [`require`] finds it; typed at a terminal it is asked twice and
/// the two must match, as `passwd(1)` does (a typo would lock the data away).
///
/// # Errors
/// As [`find`]; [`SecretError::Mismatch`] when the two typed differ.
pub fn require_new(s: &Sources<'_>) -> Result<Zeroizing<String>, SecretError> {
    let typed = s.file.is_none()
        && env_value(s.env).is_none()
        && s.prompt.is_some()
        && std::io::stdin().is_terminal();
    let secret = require(s)?;
    if typed && *ask(&format!("{} again: ", s.what), s.what)? != *secret {
        return Err(SecretError::Mismatch {
            what: s.what.to_owned(),
        });
    }
    Ok(secret)
}

fn env_value(env: &str) -> Option<Zeroizing<String>> {
    std::env::var(env)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Zeroizing::new)
}

fn ask(prompt: &str, what: &str) -> Result<Zeroizing<String>, SecretError> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|source| SecretError::Prompt {
            what: what.to_owned(),
            source,
        })
}

/// The permission bits of `path` when the group or others may read it. A file that
/// cannot be inspected is not judged here: reading it reports the real error.
#[must_use]
pub fn readable_by_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & MODE_READABLE_BY_OTHERS != 0).then_some(mode)
}

/// A warning when `path` (holding `what`) is readable by the group or others.
#[must_use]
pub fn exposure_warning(path: &Path, what: &str) -> Option<String> {
    readable_by_others(path).map(|mode| {
        format!(
            "{what} {} is readable by group or others (mode {mode:04o}): restrict it \
             with chmod 600",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn a_secret_file_gives_its_first_line_without_the_line_ending() {
        let d = tempfile::tempdir().expect("tempdir");
        let unix = write(d.path(), "a", "s3cret\nignored\n", 0o600);
        let dos = write(d.path(), "b", "s3cret\r\n", 0o600);
        assert_eq!(&*read_file(&unix, "token").expect("read"), "s3cret");
        assert_eq!(&*read_file(&dos, "token").expect("read"), "s3cret");
    }

    #[test]
    fn an_empty_or_missing_secret_file_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let empty = write(d.path(), "empty", "\n", 0o600);
        let e = read_file(&empty, "password").expect_err("empty");
        assert!(matches!(e, SecretError::Empty { .. }), "{e}");
        assert!(e.to_string().contains("empty"), "{e}");
        let missing = d.path().join("nope");
        let e = read_file(&missing, "password").expect_err("missing");
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn a_file_named_wins_over_the_environment_and_an_optional_secret_may_be_absent() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = write(d.path(), "t", "from-file\n", 0o600);
        // An environment variable no one sets, so the test does not race others.
        let env = "BLAZEDB_CMD_TEST_NEVER_SET";
        let with_file = Sources {
            what: "token",
            file: Some(&f),
            file_flag: "--token-file",
            env,
            prompt: None,
        };
        assert_eq!(
            find(&with_file)
                .expect("find")
                .as_deref()
                .map(String::as_str),
            Some("from-file")
        );
        let nothing = Sources {
            file: None,
            ..with_file
        };
        assert!(find(&nothing).expect("find").is_none());
        let e = require(&nothing).expect_err("required");
        assert!(matches!(e, SecretError::Missing { .. }), "{e}");
    }

    #[test]
    fn a_file_others_may_read_is_reported_and_a_private_one_is_not() {
        let d = tempfile::tempdir().expect("tempdir");
        let open = write(d.path(), "open", "x", 0o644);
        let private = write(d.path(), "private", "x", 0o600);
        let w = exposure_warning(&open, "the token file").expect("warned");
        assert!(w.contains("0644") && w.contains("chmod 600"), "{w}");
        assert!(exposure_warning(&private, "the token file").is_none());
    }
}
