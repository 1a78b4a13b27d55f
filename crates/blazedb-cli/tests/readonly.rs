//! The commands that only read never modify the database: every file under the
//! database directory has exactly the same bytes after each of them (the real `blazedb`
//! binary, on a database that syncs and on one that never did). They open the database
//! read-only, so a writer holding it still makes them fail with "in use".

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use support::{Scratch, id_in};

/// Every file under `dir` (recursively) with its bytes.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// The files that differ between two [`files_under`] (changed, added or removed).
fn changed(a: &BTreeMap<PathBuf, Vec<u8>>, b: &BTreeMap<PathBuf, Vec<u8>>) -> BTreeSet<PathBuf> {
    a.keys()
        .chain(b.keys())
        .filter(|p| a.get(*p) != b.get(*p))
        .cloned()
        .collect()
}

/// A database `db` with documents, an index, and (with `role`) sync enabled and its
/// local writes already stamped, so nothing is waiting for a write.
fn prepared(s: &Scratch, db: &str, role: Option<&str>) -> String {
    s.create(db, role);
    let id = id_in(&s.on(db, &["insert", "t", r#"{"n": 1, "s": "a"}"#]).json());
    s.on(db, &["insert", "t", r#"{"n": 2, "s": "b"}"#]).json();
    s.on(db, &["index", "create", "by_n", "t", "n"]).json();
    // With sync enabled, this stamps the local writes (a write, once).
    s.on(db, &["get", "t", &id, "--meta"]).json();
    id
}

#[test]
fn every_read_only_command_leaves_every_file_of_the_database_byte_identical() {
    let s = Scratch::new();
    for (db, role) in [("db/synced", Some("client")), ("db/plain", None)] {
        let id = prepared(&s, db, role);
        let dir = s.path(&format!("{db}.blazedb"));
        let before = files_under(&dir);
        // Key file, lock, data file and the commit journal.
        assert_eq!(before.len(), 4, "{:?}", before.keys().collect::<Vec<_>>());
        let export = format!("{db}-export.ndjson");
        let backup = format!("{db}-backup/copy");
        let commands: [&[&str]; 14] = [
            &["info"],
            &["collections"],
            &["get", "t", &id],
            &["get", "t", &id, "--meta"],
            &["query", "t", "-w", "n>=1", "--sort", "n:desc"],
            &["count", "t", "-w", "s=a"],
            &["explain", "t", "-w", "n=2"],
            &["index", "list"],
            &["export"],
            &["export", "t", "-o", &export],
            &["backup", &backup],
            &["status"],
            &["conflicts"],
            &["conflicts", "--after", "1"],
        ];
        for args in commands {
            let r = s.on(db, args);
            assert_eq!(r.code, 0, "{db}: `{}`: {}", args.join(" "), r.stderr);
            let now = files_under(&dir);
            assert!(
                now == before,
                "{db}: `{}` changed {:?}",
                args.join(" "),
                changed(&before, &now)
            );
        }
        // The read-only commands still saw everything.
        assert_eq!(s.on(db, &["count", "t"]).json()["count"], 2);
        assert_eq!(s.on(&backup, &["count", "t"]).json()["count"], 2);
    }
}

#[test]
fn a_read_only_command_is_refused_while_a_writer_holds_the_database() {
    let s = Scratch::new();
    s.create("db/main", None);
    let mut holder = s
        .cmd()
        .args(["--db", "db/main", "repl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the REPL");
    let mut stdin = holder.stdin.take().expect("stdin");
    writeln!(stdin, "count t").expect("write");
    let mut first = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the REPL answers, so it holds the database");
    for args in [&["info"][..], &["export"], &["status"]] {
        s.on("db/main", args).fails(5, "in use");
    }
    drop(stdin);
    assert!(holder.wait().expect("wait").success());
    s.on("db/main", &["info"]).json();
}
