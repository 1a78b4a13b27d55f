//! Running the real `blazedb` binary in a scratch directory, and pinning its JSON
//! output: ids, node ids, clock readings and paths vary per run, so they are replaced
//! by placeholders before snapshotting.

#![allow(dead_code)]

pub mod server;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub const PASSWORD: &str = "test password";

/// A scratch directory and the database `db/main` in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

/// What one run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout's one JSON value.
    #[track_caller]
    pub fn json(&self) -> Json {
        assert_eq!(
            self.code, 0,
            "stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {:?}", self.stdout))
    }

    /// Asserts success and returns stdout's NDJSON lines.
    #[track_caller]
    pub fn ndjson(&self) -> Vec<Json> {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    /// Asserts failure with `code`, an `error:` line and a message containing `needle`.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.starts_with("error: ") && self.stderr.contains(needle),
            "stderr should say {needle:?}: {}",
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "nothing on stdout on failure: {}",
            self.stdout
        );
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_blazedb")
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `blazedb` with the password in the environment, in the scratch directory.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.dir.path())
            .env("BLAZEDB_PASSWORD", PASSWORD)
            .env_remove("BLAZEDB_DB")
            .env_remove("BLAZEDB_AUTH_TOKEN")
            .env_remove("BLAZEDB_SHARED_SECRET")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.cmd().args(args).output().expect("run blazedb"))
    }

    /// `blazedb --db <db> ARGS`.
    pub fn on(&self, db: &str, args: &[&str]) -> Run {
        let mut all = vec!["--db", db];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Runs with `input` on stdin.
    pub fn on_with_input(&self, db: &str, args: &[&str], input: &str) -> Run {
        let mut child = self
            .cmd()
            .arg("--db")
            .arg(db)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn blazedb");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        Run::of(child.wait_with_output().expect("wait"))
    }

    /// Runs the REPL on database `db` on a pseudo-terminal (util-linux `script`, part of
    /// every Debian base system), as [`Scratch::cmd`] would (password in the
    /// environment, HOME the scratch directory), typing each of `lines` and Enter once
    /// its prompt shows: the line editor discards input typed ahead of its prompt.
    /// stdout is all the terminal showed.
    pub fn repl_on_terminal(&self, db: &str, lines: &[&str]) -> Run {
        const PROMPT_WAIT: Duration = Duration::from_secs(60);
        let mut child = Command::new("script")
            .current_dir(self.dir.path())
            .env("BLAZEDB_PASSWORD", PASSWORD)
            .env_remove("BLAZEDB_DB")
            .env_remove("BLAZEDB_AUTH_TOKEN")
            .env_remove("BLAZEDB_SHARED_SECRET")
            .env("HOME", self.dir.path())
            .args(["-qec", &format!("{} --db {db} repl", bin()), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn script");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut shown = Vec::new();
        let prompts = |shown: &[u8]| prompt_count(&String::from_utf8_lossy(shown));
        for (i, line) in lines.iter().enumerate() {
            let deadline = Instant::now() + PROMPT_WAIT;
            while prompts(&shown) <= i {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(chunk) => shown.extend_from_slice(&chunk),
                    Err(e) => panic!(
                        "no prompt for {line:?} ({e}); the terminal showed: {}",
                        String::from_utf8_lossy(&shown)
                    ),
                }
            }
            write!(stdin, "{line}\r").expect("type");
            stdin.flush().expect("type");
        }
        drop(stdin);
        let status = child.wait().expect("wait");
        reader.join().expect("the reader ends with the terminal");
        shown.extend(rx.try_iter().flatten());
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut stderr).expect("stderr");
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&shown).into_owned(),
            stderr,
        }
    }

    /// Creates database `db` with a fast key derivation (tests only).
    pub fn create(&self, db: &str, role: Option<&str>) -> Json {
        let mut args = vec!["--insecure-fast-kdf", "create"];
        if let Some(r) = role {
            args.extend(["--role", r]);
        }
        self.on(db, &args).json()
    }
}

/// Replaces what varies per run (ids, node ids, clocks, paths) with placeholders.
pub fn redact(v: &Json) -> Json {
    redact_also(v, &[])
}

/// As [`redact`], and the values of keys `extra` too (sizes and positions that depend
/// on timing, for sync status).
pub fn redact_also(v: &Json, extra: &[&str]) -> Json {
    const VARYING: [&str; 12] = [
        "id",
        "node",
        "origin",
        "hlc",
        "time",
        "detected_us",
        "detected",
        "last_sync_us",
        "last_sync",
        "created",
        "path",
        "deleted",
    ];
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, x)| {
                    let varies = VARYING.contains(&k.as_str()) || extra.contains(&k.as_str());
                    let redacted = if varies && !x.is_null() {
                        Json::String(format!("<{k}>"))
                    } else {
                        redact_also(x, extra)
                    };
                    (k.clone(), redacted)
                })
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(|x| redact_also(x, extra)).collect()),
        other => other.clone(),
    }
}

/// The id a JSON output names.
#[track_caller]
pub fn id_in(v: &Json) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// Runs the binary with `args` in a pseudo-terminal (`script`), `typed` as what the
/// user types; stdout holds everything the terminal showed.
pub fn on_terminal(s: &Scratch, args: &str, typed: &str) -> Run {
    let mut c = std::process::Command::new("script");
    c.current_dir(s.dir.path())
        .env_remove("BLAZEDB_PASSWORD")
        .env("HOME", s.dir.path())
        .args(["-qec", &format!("{} {args}", bin()), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = c.spawn().expect("spawn script");
    p.stdin
        .take()
        .expect("stdin")
        .write_all(typed.as_bytes())
        .expect("type");
    Run::of(p.wait_with_output().expect("wait"))
}

/// The REPL prompts in `text`: `blazedb> `, `blazedb*> `, and either with the
/// background sync's state (`blazedb [synced]> `).
pub fn prompt_count(text: &str) -> usize {
    text.match_indices("blazedb")
        .filter(|(at, _)| {
            let rest = &text[at + "blazedb".len()..];
            let rest = rest.strip_prefix('*').unwrap_or(rest);
            let rest = match rest.strip_prefix(" [") {
                Some(r) => match r.find("]") {
                    Some(end) if r[..end].chars().all(|c| c.is_ascii_lowercase()) => &r[end + 1..],
                    _ => return false,
                },
                None => rest,
            };
            rest.starts_with("> ")
        })
        .count()
}
