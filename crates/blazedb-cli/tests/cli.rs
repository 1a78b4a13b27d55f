//! The `blazedb` binary, driven as a user would: every local subcommand's success and
//! error paths, the documented exit codes, password sources, and the JSON shapes
//! (pinned by snapshots in `tests/snapshots`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use serde_json::json;
use support::{PASSWORD, Scratch, id_in, redact};

#[test]
fn document_commands_round_trip_with_pinned_json_shapes() {
    let s = Scratch::new();
    insta::assert_json_snapshot!("create", redact(&s.create("db/main", None)));
    let ins = s
        .on(
            "db/main",
            &[
                "insert",
                "todo",
                r#"{"title": "write docs", "n": 1, "tags": ["a"]}"#,
            ],
        )
        .json();
    insta::assert_json_snapshot!("insert", redact(&ins));
    let id = id_in(&ins);
    let got = s.on("db/main", &["get", "todo", &id]).json();
    assert_eq!(got["fields"]["title"], "write docs");
    insta::assert_json_snapshot!("get", redact(&got));
    let patched = s
        .on(
            "db/main",
            &["patch", "todo", &id, r#"{"done": true}"#, "--unset", "tags"],
        )
        .json();
    assert_eq!(
        patched["fields"],
        json!({"done": true, "n": 1, "title": "write docs"})
    );
    insta::assert_json_snapshot!("patch", redact(&patched));
    let put = s
        .on("db/main", &["put", "todo", &id, r#"{"title": "replaced"}"#])
        .json();
    assert_eq!(put["created"], false);
    let new_id = "01900000-0000-7000-8000-000000000001";
    let put_new = s.on("db/main", &["put", "todo", new_id, "{}"]).json();
    assert_eq!(put_new, json!({"id": new_id, "created": true}));
    assert_eq!(
        s.on("db/main", &["get", "todo", &id]).json()["fields"],
        json!({"title": "replaced"})
    );
    let del = s.on("db/main", &["delete", "todo", &id]).json();
    insta::assert_json_snapshot!("delete", redact(&del));
    s.on("db/main", &["get", "todo", &id]).fails(3, "not found");
    s.on("db/main", &["delete", "todo", &id])
        .fails(3, "not found");
    s.on("db/main", &["patch", "todo", &id, "{}"])
        .fails(3, "not found");
    let cols = s.on("db/main", &["collections"]).ndjson();
    assert_eq!(cols, vec![json!({"collection": "todo", "documents": 1})]);
    let info = s.on("db/main", &["info"]).json();
    let (file, unused) = (info["file_bytes"].as_u64(), info["unused_bytes"].as_u64());
    assert!(
        file.is_some_and(|f| f > 0) && unused.is_some_and(|u| Some(u) <= file),
        "info says the data file's size and what compact would give back: {info}"
    );
    insta::assert_json_snapshot!(
        "info",
        support::redact_also(&info, &["file_bytes", "unused_bytes"])
    );
}

#[test]
fn insert_from_stdin_takes_ndjson_in_one_transaction() {
    let s = Scratch::new();
    s.create("db/main", None);
    let out = s
        .on_with_input(
            "db/main",
            &["insert", "n", "-"],
            "{\"i\": 1}\n\n{\"i\": 2}\n",
        )
        .json();
    assert_eq!(out, json!({"inserted": 2, "collection": "n"}), "a summary");
    let ids = s
        .on_with_input("db/main", &["insert", "n", "-", "--ids"], "{}\n{}\n")
        .ndjson();
    assert_eq!(ids.len(), 2, "--ids: one line per new document");
    assert!(ids.iter().all(|r| r["id"].is_string()));
    // One bad line: nothing of the batch is stored.
    s.on_with_input("db/main", &["insert", "n", "-"], "{\"i\": 3}\nnot json\n")
        .fails(7, "line 2");
    assert_eq!(s.on("db/main", &["count", "n"]).json(), json!({"count": 4}));
}

#[test]
fn bad_input_is_refused_with_exit_7_and_nothing_changes() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["insert", "t", "not json"])
        .fails(7, "not JSON");
    s.on("db/main", &["insert", "t", "[1, 2]"])
        .fails(7, "JSON object");
    s.on("db/main", &["insert", "t", r#"{"$x": 1}"#])
        .fails(7, "$x");
    s.on("db/main", &["get", "t", "not-a-uuid"])
        .fails(7, "not a document id");
    s.on("db/main", &["insert", "bad name!", "{}"])
        .fails(7, "invalid collection name");
    s.on("db/main", &["query", "t", "-w", "age"])
        .fails(7, "condition 'age'");
    s.on("db/main", &["query", "t", "--sort", "a:sideways"])
        .fails(7, "asc");
    assert_eq!(
        s.on("db/main", &["collections"]).ndjson(),
        Vec::<serde_json::Value>::new()
    );
}

#[test]
fn open_failures_have_their_own_exit_codes_and_hints() {
    let s = Scratch::new();
    s.run(&["info"]).fails(2, "no database given");
    s.on("db/none", &["info"]).fails(3, "no database at");
    s.create("db/main", None);
    s.on("db/main", &["--insecure-fast-kdf", "create"])
        .fails(6, "already exists");
    let wrong = s
        .cmd()
        .args(["--db", "db/main", "info"])
        .env("BLAZEDB_PASSWORD", "wrong")
        .output()
        .expect("run");
    assert_eq!(wrong.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("hint: check BLAZEDB_PASSWORD"));
    // No password source and no terminal: a usage error saying where to put it.
    let none = s
        .cmd()
        .args(["--db", "db/main", "info"])
        .env_remove("BLAZEDB_PASSWORD")
        .output()
        .expect("run");
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--password-file"));
}

#[test]
fn a_damaged_database_exits_9_and_says_to_restore() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["insert", "t", r#"{"a": 1}"#]).json();
    let data = s.path("db/main.blazedb/data.redb");
    let mut bytes = std::fs::read(&data).expect("read the data file");
    for i in (4096..bytes.len()).step_by(97) {
        bytes[i] ^= 0x55;
    }
    std::fs::write(&data, bytes).expect("damage it");
    let r = s.on("db/main", &["info"]);
    // The storage engine may panic on damaged pages (caught and typed, but the panic
    // message is printed first), so look for the error line anywhere.
    assert_eq!(r.code, 9, "{}", r.stderr);
    assert!(
        r.stderr.contains("error: corruption detected"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("restore from a backup"));
}

#[test]
fn the_password_comes_from_a_file_or_the_environment() {
    let s = Scratch::new();
    s.create("db/main", None);
    let pw = s.path("pw.txt");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("write");
    let pw_arg = pw.to_str().expect("utf-8");
    let out = s
        .cmd()
        .args(["--db", "db/main", "--password-file", pw_arg, "count", "t"])
        .env_remove("BLAZEDB_PASSWORD")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&pw, "\n").expect("write");
    s.on("db/main", &["--password-file", pw_arg, "count", "t"])
        .fails(7, "is empty");
    s.on("db/main", &["--password-file", "missing.txt", "count", "t"])
        .fails(3, "password file");
}

#[test]
fn a_database_held_by_another_process_is_reported_in_use() {
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
    assert_eq!(first.trim(), r#"{"count":0}"#);
    let r = s.on("db/main", &["insert", "t", "{}"]);
    r.fails(5, "in use");
    assert!(r.stderr.contains("hint:"));
    drop(stdin);
    assert!(holder.wait().expect("wait").success());
    // Released: the write goes through now.
    s.on("db/main", &["insert", "t", "{}"]).json();
}

#[test]
fn queries_filter_sort_limit_count_and_explain_with_an_index() {
    let s = Scratch::new();
    s.create("db/main", None);
    let docs: String = (0..20)
        .map(|i| {
            format!(
                "{{\"n\": {i}, \"parity\": \"{}\"}}\n",
                if i % 2 == 0 { "even" } else { "odd" }
            )
        })
        .collect();
    s.on_with_input("db/main", &["insert", "nums", "-"], &docs)
        .ndjson();
    let q = s
        .on(
            "db/main",
            &[
                "query",
                "nums",
                "-w",
                "parity=odd",
                "-w",
                "n>=5",
                "--sort",
                "n:desc",
                "--limit",
                "3",
            ],
        )
        .ndjson();
    let ns: Vec<i64> = q
        .iter()
        .map(|d| d["fields"]["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(ns, vec![19, 17, 15]);
    let off = s
        .on(
            "db/main",
            &["query", "nums", "--sort", "n", "--offset", "18"],
        )
        .ndjson();
    assert_eq!(off.len(), 2);
    assert_eq!(
        s.on("db/main", &["count", "nums", "-w", "n in [1, 2, 30]"])
            .json(),
        json!({"count": 2})
    );
    let scan = s
        .on("db/main", &["explain", "nums", "-w", "parity=odd"])
        .json();
    assert_eq!(scan["index"], serde_json::Value::Null);
    let idx = s
        .on(
            "db/main",
            &["index", "create", "by_parity", "nums", "parity"],
        )
        .json();
    insta::assert_json_snapshot!("index_create", idx);
    let plan = s
        .on("db/main", &["explain", "nums", "-w", "parity=odd"])
        .json();
    assert_eq!(plan["index"], "by_parity");
    insta::assert_json_snapshot!("explain_indexed", plan);
    assert_eq!(
        s.on("db/main", &["count", "nums", "-w", "parity=odd"])
            .json(),
        json!({"count": 10})
    );
    insta::assert_json_snapshot!("index_list", s.on("db/main", &["index", "list"]).ndjson());
    s.on(
        "db/main",
        &["index", "create", "u", "nums", "parity", "--unique"],
    )
    .fails(6, "unique");
    s.on("db/main", &["index", "drop", "by_parity"]).json();
    s.on("db/main", &["index", "drop", "by_parity"])
        .fails(3, "no index");
}

#[test]
fn export_is_canonical_and_import_reproduces_it_byte_for_byte() {
    let s = Scratch::new();
    s.create("db/a", None);
    s.create("db/b", None);
    for (c, j) in [
        ("x", r#"{"z": 1, "a": {"$bytes": "AAE="}}"#),
        ("w", r#"{"t": {"$ts": 5}}"#),
    ] {
        s.on("db/a", &["insert", c, j]).json();
    }
    let exported = s.on("db/a", &["export"]);
    assert_eq!(exported.code, 0);
    let lines: Vec<&str> = exported.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains(r#""collection":"w""#),
        "collections in name order"
    );
    let imp = s
        .on_with_input("db/b", &["import"], &exported.stdout)
        .json();
    assert_eq!(imp, json!({"imported": 2, "skipped": []}));
    assert_eq!(s.on("db/b", &["export"]).stdout, exported.stdout);
    // To a file: the summary goes to stdout; an existing file is not overwritten.
    let sum = s.on("db/a", &["export", "x", "-o", "x.ndjson"]).json();
    assert_eq!(sum["documents"], 1);
    s.on("db/a", &["export", "-o", "x.ndjson"])
        .fails(6, "exists");
    // A bad record: nothing imported (exit 7), unless --partial.
    let bad = format!("{}\n{{\"nope\": 1}}\n", lines[1]);
    s.on_with_input("db/b", &["import", "--replace"], &bad)
        .fails(7, "line 2");
    let part = s
        .on_with_input("db/b", &["import", "--replace", "--partial"], &bad)
        .json();
    assert_eq!(part["imported"], 1);
    assert_eq!(part["skipped"][0]["line"], 2);
    s.on_with_input("db/b", &["import"], lines[1])
        .fails(6, "already exists");
}

#[test]
fn backup_copies_and_passwd_changes_the_password() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["insert", "t", r#"{"k": "v"}"#]).json();
    s.on("db/main", &["backup", "bak/copy"]).json();
    assert_eq!(
        s.on("bak/copy", &["count", "t"]).json(),
        json!({"count": 1})
    );
    s.on("db/main", &["backup", "bak/copy"])
        .fails(6, "already exists");
    let changed = s
        .cmd()
        .args(["--db", "db/main", "passwd"])
        .env("BLAZEDB_NEW_PASSWORD", "new password")
        .output()
        .expect("run");
    assert_eq!(
        changed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    s.on("db/main", &["count", "t"]).fails(4, "wrong password");
    // No new password anywhere (and no terminal): nothing changes.
    let none = s
        .cmd()
        .args(["--db", "db/main", "passwd"])
        .env("BLAZEDB_PASSWORD", "new password")
        .output()
        .expect("run");
    assert_eq!(none.status.code(), Some(2));
    let with_new = s
        .cmd()
        .args(["--db", "db/main", "count", "t"])
        .env("BLAZEDB_PASSWORD", "new password")
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&with_new.stdout).trim(),
        r#"{"count":1}"#
    );
    // The backup keeps the password it was made with.
    assert_eq!(
        s.on("bak/copy", &["count", "t"]).json(),
        json!({"count": 1})
    );
}

#[test]
fn compact_gives_back_the_space_a_replacing_import_left_and_the_export_is_unchanged() {
    let s = Scratch::new();
    s.create("db/main", None);
    let docs: String = (0..3000)
        .map(|i| format!("{{\"n\": {i}, \"text\": \"{}\"}}\n", "x".repeat(150)))
        .collect();
    s.on_with_input("db/main", &["insert", "t", "-"], &docs);
    let exported = s.on("db/main", &["export"]).stdout;
    s.on_with_input("db/main", &["import", "--replace"], &exported)
        .json();
    let r = s.on("db/main", &["compact"]).json();
    let (before, after) = (
        r["before_bytes"].as_u64().expect("before_bytes"),
        r["after_bytes"].as_u64().expect("after_bytes"),
    );
    assert!(
        after < before * 3 / 4,
        "a file rewritten by a replacing import shrinks: {r}"
    );
    assert_eq!(r["saved_bytes"].as_u64(), Some(before - after));
    assert!(r["summary"].as_str().is_some_and(|t| t.contains("MiB ->")));
    assert_eq!(s.on("db/main", &["export"]).stdout, exported);
    // The shell holds the database for its whole session: compaction is refused there.
    let repl = s.on_with_input("db/main", &["repl"], "compact\n");
    assert_eq!(repl.code, 2, "{}", repl.stderr);
    assert!(repl.stderr.contains("blazedb compact"), "{}", repl.stderr);
}

#[test]
fn the_repl_runs_commands_and_transactions_commit_or_roll_back() {
    let s = Scratch::new();
    s.create("db/main", None);
    let script = "\
insert t '{\"n\": 1}'
begin
insert t '{\"n\": 2}'
rollback
begin
put t 01900000-0000-7000-8000-000000000002 '{\"n\": 3}'
get t 01900000-0000-7000-8000-000000000002
query t
commit
count t
";
    let r = s.on_with_input("db/main", &["repl"], script);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    // insert, insert (rolled back), put, get and query (inside the transaction: its
    // own writes), count.
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(lines[3].contains(r#""n":3"#));
    let seen = format!("{} {}", lines[4], lines[5]);
    assert!(
        seen.contains(r#""n":1"#) && seen.contains(r#""n":3"#),
        "{seen}"
    );
    assert_eq!(lines[6], r#"{"count":2}"#);
    // An open transaction at the end of input is rolled back, and a failing last
    // command makes the piped session fail with its exit code.
    let r = s.on_with_input("db/main", &["repl"], "begin\ninsert t '{}'\n");
    assert!(r.stderr.contains("rolled back"));
    assert_eq!(s.on("db/main", &["count", "t"]).json(), json!({"count": 2}));
    let r = s.on_with_input(
        "db/main",
        &[],
        "get t 01900000-0000-7000-8000-00000000000f\n",
    );
    assert_eq!(
        r.code, 3,
        "no command means the REPL; its last failure is the exit code"
    );
    let r = s.on_with_input("db/main", &["repl"], "frobnicate\ncommit\n");
    assert!(
        r.stderr.contains("line 1: unrecognized subcommand"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("no open transaction"),
        "a script stops at its first failure"
    );
    assert_eq!(r.code, 2);
}

#[test]
fn the_sync_role_is_kept_and_cli_writes_are_stamped_with_it() {
    let s = Scratch::new();
    let created = s.create("db/hub", Some("server"));
    assert_eq!(created["role"], "server");
    let id = id_in(&s.on("db/hub", &["insert", "t", r#"{"a": 1}"#]).json());
    let got = s.on("db/hub", &["get", "t", &id, "--meta"]).json();
    assert_eq!(got["meta"]["a"]["role"], "server");
    assert_eq!(got["meta"]["a"]["local"], true);
    insta::assert_json_snapshot!("get_meta", redact(&got));
    s.on(
        "db/hub",
        &[
            "sync",
            "--server",
            "127.0.0.1:1",
            "--fingerprint",
            &"00".repeat(32),
            "--role",
            "client",
        ],
    )
    .fails(6, "keeps the sync role 'server'");
    let status = s.on("db/hub", &["status"]).json();
    insta::assert_json_snapshot!("status_never_synced_server", redact(&status));
    // A database that never synced has no stamps yet.
    s.create("db/plain", None);
    let pid = id_in(&s.on("db/plain", &["insert", "t", "{}"]).json());
    assert_eq!(
        s.on("db/plain", &["get", "t", &pid, "--meta"]).json()["meta"],
        serde_json::Value::Null
    );
    assert_eq!(s.on("db/plain", &["status"]).json()["sync"], false);
    assert_eq!(
        s.on("db/plain", &["conflicts"]).ndjson(),
        Vec::<serde_json::Value>::new()
    );
}

#[test]
fn sync_without_a_trust_anchor_or_a_reachable_server_fails_clearly() {
    let s = Scratch::new();
    s.create("db/c", None);
    s.on("db/c", &["sync", "--server", "127.0.0.1:1"])
        .fails(2, "no way to trust the server");
    s.on("db/c", &["sync", "--server", "nowhere"])
        .fails(2, "HOST:PORT");
    s.on(
        "db/c",
        &["sync", "--server", "127.0.0.1:1", "--fingerprint", "zz"],
    )
    .fails(7, "fingerprint");
    std::fs::write(s.path("roots.pem"), "not a certificate").expect("write");
    s.on(
        "db/c",
        &["sync", "--server", "127.0.0.1:1", "--ca", "roots.pem"],
    )
    .fails(7, "CA roots");
    let r = s.on(
        "db/c",
        &[
            "sync",
            "--server",
            "127.0.0.1:1",
            "--fingerprint",
            &"00".repeat(32),
        ],
    );
    r.fails(8, "cannot reach");
    assert!(r.stderr.contains("is blazedb-server running"));
}
