//! `blazedb` syncing for real: CLI-driven databases syncing through a real
//! `blazedb-server` process over TLS on 127.0.0.1 (conflicts decided by docs/semantics.md and
//! visible in `conflicts`), live sync with `--watch`, peer-to-peer sync of two local
//! databases, and the demo (the README's main job).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value as Json, json};
use support::server::{ServerProc, TOKEN, server_bin};
use support::{PASSWORD, Run, Scratch, id_in, redact, redact_also};

/// `blazedb sync` of `db` with the server, pinning `fingerprint`, proving `token`.
fn sync_with(s: &Scratch, db: &str, srv: &ServerProc, fingerprint: &str, token: &str) -> Run {
    let addr = srv.addr();
    let args = [
        "--db",
        db,
        "sync",
        "--server",
        &addr,
        "--fingerprint",
        fingerprint,
    ];
    Run::of(
        s.cmd()
            .args(args)
            .args(["--timeout", "60"])
            .env("BLAZEDB_AUTH_TOKEN", token)
            .output()
            .expect("run blazedb sync"),
    )
}

fn sync(s: &Scratch, db: &str, srv: &ServerProc) -> Run {
    sync_with(s, db, srv, &srv.fingerprint, TOKEN)
}

fn field(s: &Scratch, db: &str, id: &str, f: &str) -> Json {
    s.on(db, &["get", "t", id]).json()["fields"][f].clone()
}

#[test]
fn two_cli_clients_sync_through_a_real_server_and_losses_show_in_conflicts() {
    let s = Scratch::new();
    // The server's database, made by the CLI with the server role, and written to by
    // the CLI while no server runs: those writes are the server's.
    assert_eq!(s.create("srv/main", Some("server"))["role"], "server");
    let id = id_in(
        &s.on(
            "srv/main",
            &["insert", "t", r#"{"title": "from the server"}"#],
        )
        .json(),
    );
    s.create("a", None);
    s.create("b", None);

    let srv = ServerProc::start(&s);
    s.on("srv/main", &["count", "t"]).fails(5, "in use");

    // Wrong credentials and a wrong pin are refused with exit 4; nothing synced.
    let wrong = sync_with(&s, "a", &srv, &srv.fingerprint, "not the token");
    assert_eq!(wrong.code, 4, "{}", wrong.stderr);
    let pin = sync_with(&s, "a", &srv, &"AB".repeat(32), TOKEN);
    assert_eq!(pin.code, 4, "{}", pin.stderr);
    assert_eq!(s.on("a", &["count", "t"]).json(), json!({"count": 0}));

    for db in ["a", "b"] {
        let st = sync(&s, db, &srv).json();
        assert_eq!(st["connected"], true);
        assert_eq!(st["pending_local_writes"], 0);
        assert_eq!(st["peer"]["role"], "server");
        assert_eq!(field(&s, db, &id, "title"), "from the server");
    }
    let meta = s.on("a", &["get", "t", &id, "--meta"]).json();
    assert_eq!(meta["meta"]["title"]["role"], "server");
    assert_eq!(meta["meta"]["title"]["local"], false);

    // Client vs client: both edit the title without syncing; b writes last and wins.
    s.on("a", &["patch", "t", &id, r#"{"title": "a's title"}"#])
        .json();
    s.on("b", &["patch", "t", &id, r#"{"title": "b's title"}"#])
        .json();
    let pending = s.on("a", &["status"]).json();
    insta::assert_json_snapshot!(
        "status_pending",
        redact_also(
            &pending,
            &[
                "target",
                "peer",
                "acked",
                "cursor",
                "log_last",
                "remembered"
            ]
        )
    );
    assert_eq!(pending["pending_local_writes"], 1);
    assert_eq!(pending["servers"].as_array().map(Vec::len), Some(1));
    for db in ["a", "b"] {
        sync(&s, db, &srv).json();
    }
    let st = sync(&s, "a", &srv).json();
    insta::assert_json_snapshot!(
        "sync_status",
        redact_also(
            &st,
            &[
                "target",
                "bytes_sent",
                "bytes_received",
                "clock_skew_us",
                "cursor",
                "acked",
                "writes_sent",
                "writes_received",
                "peer_log_last"
            ]
        )
    );
    assert_eq!(field(&s, "a", &id, "title"), "b's title");
    assert_eq!(field(&s, "b", &id, "title"), "b's title");
    let lost = s.on("a", &["conflicts"]).ndjson();
    assert_eq!(lost.len(), 1, "{lost:?}");
    insta::assert_json_snapshot!("conflict_entry", redact(&lost[0]));
    assert_eq!(lost[0]["reason"], "later-timestamp");
    assert_eq!(lost[0]["field"], "title");
    assert_eq!(lost[0]["lost"], json!({"value": "a's title"}));
    assert_eq!(lost[0]["won"], json!({"value": "b's title"}));
    assert_eq!(s.on("b", &["conflicts"]).ndjson(), Vec::<Json>::new());
    assert_eq!(s.on("a", &["status"]).json()["pending_local_writes"], 0);
    srv.stop();

    // Server vs client: with the server stopped, the CLI edits the server's database
    // (as the server) while a edits the same field; the server's write wins.
    s.on(
        "srv/main",
        &["patch", "t", &id, r#"{"title": "the server's word"}"#],
    )
    .json();
    s.on("a", &["patch", "t", &id, r#"{"title": "a tries again"}"#])
        .json();
    let srv = ServerProc::start(&s);
    for db in ["a", "b"] {
        sync(&s, db, &srv).json();
    }
    assert_eq!(field(&s, "a", &id, "title"), "the server's word");
    let lost = s.on("a", &["conflicts", "--after", "1"]).ndjson();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["reason"], "server-priority");
    assert_eq!(lost[0]["winner"]["role"], "server");
    srv.stop();
    let (ea, eb, es) = (
        s.on("a", &["export"]).stdout,
        s.on("b", &["export"]).stdout,
        s.on("srv/main", &["export"]).stdout,
    );
    assert_eq!(ea, es, "a equals the server, byte for byte");
    assert_eq!(eb, es, "b equals the server, byte for byte");
}

#[test]
fn sync_watch_receives_live_changes_until_interrupted() {
    let s = Scratch::new();
    s.create("srv/main", Some("server"));
    s.create("a", None);
    s.create("b", None);
    let srv = ServerProc::start(&s);
    let mut watcher = s
        .cmd()
        .args([
            "--db",
            "a",
            "sync",
            "--watch",
            "--server",
            &srv.addr(),
            "--fingerprint",
            &srv.fingerprint,
        ])
        .env("BLAZEDB_AUTH_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the watcher");
    let mut status = BufReader::new(watcher.stderr.take().expect("stderr")).lines();
    // The first status line says it is connected and in sync.
    let first: Json = serde_json::from_str(&status.next().expect("a line").expect("read"))
        .expect("a JSON status line");
    assert_eq!(first["connected"], true);
    assert!(
        first["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "each event line has its time: {first}"
    );
    let id = id_in(&s.on("b", &["insert", "t", r#"{"live": true}"#]).json());
    sync(&s, "b", &srv).json();
    // The server pushes b's write to the connected watcher without being asked.
    let received = status
        .map(|l| serde_json::from_str::<Json>(&l.expect("read")).expect("JSON"))
        .find(|st| st["writes_received"].as_u64().unwrap_or(0) >= 1);
    assert!(received.is_some(), "the watcher reports the pushed write");
    let pid = watcher.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let out = watcher.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let last: Json = serde_json::from_slice(&out.stdout).expect("the final status on stdout");
    assert!(last["writes_received"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(field(&s, "a", &id, "live"), true);
    srv.stop();
}

/// `blazedb-server user add NAME FLAGS` on `s`'s server directory; the token.
fn add_user(s: &Scratch, name: &str, flags: &[&str]) -> String {
    let out = Command::new(server_bin())
        .current_dir(s.dir.path())
        .args([
            "--data-dir",
            "srv",
            "--database",
            "main",
            "user",
            "add",
            name,
        ])
        .args(flags)
        .env("BLAZEDB_PASSWORD", PASSWORD)
        .output()
        .expect("run blazedb-server user add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `blazedb sync` of `db` as user `user`.
fn sync_as(s: &Scratch, db: &str, srv: &ServerProc, user: &str, token: &str) -> Run {
    Run::of(
        s.cmd()
            .args(["--db", db, "sync", "--server", &srv.addr()])
            .args(["--fingerprint", &srv.fingerprint, "--timeout", "60"])
            .args(["--user", user])
            .env("BLAZEDB_AUTH_TOKEN", token)
            .output()
            .expect("run blazedb sync"),
    )
}

#[test]
fn users_sync_with_their_rights_and_a_full_server_says_busy() {
    let s = Scratch::new();
    s.create("w", None);
    s.create("v", None);
    let srv = ServerProc::start_with(&s, &["--max-connections", "1"]);
    let writer = add_user(&s, "writer", &[]);
    let viewer = add_user(&s, "viewer", &["--read-only"]);
    let id = id_in(
        &s.on("w", &["insert", "t", r#"{"title": "by the writer"}"#])
            .json(),
    );
    sync_as(&s, "w", &srv, "writer", &writer).json();

    // The writer stays connected (live): the one connection the server allows.
    let mut watcher = s
        .cmd()
        .args(["--db", "w", "sync", "--watch", "--server", &srv.addr()])
        .args(["--fingerprint", &srv.fingerprint, "--user", "writer"])
        .env("BLAZEDB_AUTH_TOKEN", &writer)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the watcher");
    let mut status = BufReader::new(watcher.stderr.take().expect("stderr")).lines();
    let first: Json = serde_json::from_str(&status.next().expect("a line").expect("read"))
        .expect("a JSON status line");
    assert_eq!(first["connected"], true);
    let busy = sync_as(&s, "v", &srv, "viewer", &viewer);
    assert_eq!(busy.code, 8, "{}", busy.stderr);
    assert!(busy.stderr.contains("busy"), "{}", busy.stderr);
    assert!(busy.stderr.contains("try again later"), "{}", busy.stderr);
    let pid = watcher.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    assert_eq!(watcher.wait().expect("wait").code(), Some(0));

    // The viewer receives, and the writer's user shows on each field it wrote.
    sync_as(&s, "v", &srv, "viewer", &viewer).json();
    let meta = s.on("v", &["get", "t", &id, "--meta"]).json();
    assert_eq!(meta["meta"]["title"]["user"], "writer");
    // The viewer's own write is refused by the server: exit 4, kept locally, pending.
    s.on("v", &["insert", "t", r#"{"title": "by the viewer"}"#])
        .json();
    let refused = sync_as(&s, "v", &srv, "viewer", &viewer);
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(refused.stderr.contains("read-only"), "{}", refused.stderr);
    assert_eq!(s.on("v", &["count", "t"]).json(), json!({"count": 2}));
    assert_eq!(s.on("v", &["status"]).json()["pending_local_writes"], 1);
    sync_as(&s, "w", &srv, "writer", &writer).json();
    assert_eq!(s.on("w", &["count", "t"]).json(), json!({"count": 1}));
    srv.stop();
}

#[test]
fn plain_tcp_works_only_when_both_sides_ask_for_it_and_mismatches_say_so() {
    let s = Scratch::new();
    s.create("srv/main", Some("server"));
    let id = id_in(&s.on("srv/main", &["insert", "t", r#"{"p": 1}"#]).json());
    s.create("a", None);
    let srv = ServerProc::start_with(&s, &["--plain-tcp-insecure"]);
    assert_eq!(srv.fingerprint, "none");
    let addr = srv.addr();
    let run = |flags: &[&str]| {
        Run::of(
            s.cmd()
                .args(["--db", "a", "sync", "--server", &addr, "--timeout", "20"])
                .args(flags)
                .env("BLAZEDB_AUTH_TOKEN", TOKEN)
                .output()
                .expect("run"),
        )
    };
    // A TLS client does not fall back to plain TCP.
    assert_ne!(run(&["--fingerprint", &"AB".repeat(32)]).code, 0);
    // A missing token is refused with a hint that says how to give one.
    let no_token = Run::of(
        s.cmd()
            .args([
                "--db",
                "a",
                "sync",
                "--server",
                &addr,
                "--plain-tcp-insecure",
            ])
            .args(["--timeout", "20"])
            .output()
            .expect("run"),
    );
    no_token.fails(4, "hint: give the server's token");
    assert_eq!(s.on("a", &["count", "t"]).json(), json!({"count": 0}));
    run(&["--plain-tcp-insecure"]).json();
    assert_eq!(field(&s, "a", &id, "p"), 1);
    srv.stop();
}

#[test]
fn sync_peer_merges_two_local_databases_by_timestamp() {
    let s = Scratch::new();
    s.create("p1", None);
    s.create("p2", None);
    let id = id_in(
        &s.on("p1", &["insert", "t", r#"{"v": 1, "only_p1": true}"#])
            .json(),
    );
    s.on("p1", &["sync", "--peer", "p2", "--watch"])
        .fails(2, "cannot be used with");
    let r = s.on("p1", &["sync", "--peer", "p2"]).json();
    assert_eq!(r["conflicts_here"], 0);
    assert_eq!(field(&s, "p2", &id, "v"), 1);
    // Concurrent edits; p2's is later and wins on both (same role: timestamps).
    s.on("p1", &["patch", "t", &id, r#"{"v": 2}"#]).json();
    s.on("p2", &["patch", "t", &id, r#"{"v": 3}"#]).json();
    let r = s.on("p2", &["sync", "--peer", "p1"]).json();
    assert_eq!(r["conflicts_here"], 0, "p2's write won");
    assert_eq!(field(&s, "p1", &id, "v"), 3);
    let lost = s.on("p1", &["conflicts"]).ndjson();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0]["reason"], "later-timestamp");
    assert_eq!(
        s.on("p1", &["export"]).stdout,
        s.on("p2", &["export"]).stdout
    );
    // A peer that does not exist is "not found"; a wrong peer password is "denied".
    s.on("p1", &["sync", "--peer", "nope"])
        .fails(3, "no database");
    let wrong = s
        .cmd()
        .args(["--db", "p1", "sync", "--peer", "p2"])
        .env("BLAZEDB_PEER_PASSWORD", "wrong")
        .output()
        .expect("run");
    Run::of(wrong).fails(4, "wrong password for the peer database p2");
}

#[test]
fn the_demo_plays_every_situation_and_ends_with_identical_replicas() {
    let s = Scratch::new();
    let r = s.run(&["demo"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for needle in [
        "TLS 1.3",
        "all three clients hold the server's notice",
        "lost to server's 15 — server priority",
        "a client's write made after seeing the server's value wins",
        "lost to carol's Carol's title — same role",
        "carol's offline writes reached the server",
        "its update of the document lost to server's delete",
        "all four replicas are identical, byte for byte",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in:\n{}", r.stdout);
    }
}

#[test]
fn sync_remembers_the_server_and_its_trust_and_lists_a_server_reached_by_two_names_once() {
    let s = Scratch::new();
    s.create("srv/main", Some("server"));
    s.create("a", None);
    let srv = ServerProc::start(&s);
    let bare = |extra: &[&str]| {
        let mut args = vec!["--db", "a", "sync", "--timeout", "60"];
        args.extend_from_slice(extra);
        Run::of(
            s.cmd()
                .args(&args)
                .env("BLAZEDB_AUTH_TOKEN", TOKEN)
                .output()
                .expect("run blazedb sync"),
        )
    };
    bare(&[]).fails(2, "no server given");
    s.on_with_input("a", &["insert", "t", "-"], "{}\n{}\n")
        .json();
    let before = s.on("a", &["status"]).json();
    assert_eq!(before["sync"], false);
    assert_eq!(
        before["pending_local_writes"], 2,
        "never synced: what is here uploads at the first sync"
    );
    let first = sync(&s, "a", &srv).json();
    assert_eq!(first["pending_local_writes"], 0);
    let when = first["last_sync"].as_str().expect("an ISO 8601 time");
    assert!(
        when.starts_with("20") && when.ends_with('Z') && when.contains('T'),
        "{when}"
    );
    let again = bare(&[]).json();
    assert_eq!(
        again["connected"], true,
        "`sync` alone dials the remembered server"
    );
    let named = bare(&["--server", &srv.addr()]).json();
    assert_eq!(
        named["connected"], true,
        "the same server again: its pin is reused"
    );
    let st = s.on("a", &["status"]).json();
    assert_eq!(st["remembered"]["server"], srv.addr());
    assert_eq!(st["remembered"]["fingerprint"], srv.fingerprint.as_str());
    assert_eq!(st["remembered"]["remote_db"], "main");
    // Plain TCP against this TLS server: said as such, not as a framing error.
    let plain = bare(&["--server", &srv.addr(), "--plain-tcp-insecure"]);
    plain.fails(8, "did not answer in plain TCP");
    assert!(plain.stderr.contains("speaks TLS"), "{}", plain.stderr);
    let other_name = format!("localhost:{}", srv.port);
    bare(&["--server", &other_name]).fails(2, "no way to trust the server");
    bare(&["--server", &other_name, "--fingerprint", &srv.fingerprint]).json();
    let st = s.on("a", &["status"]).json();
    let servers = st["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1, "one server, two names: {servers:?}");
    let names = servers[0]["target"].as_str().expect("target");
    assert!(
        names.contains("localhost") && names.contains("127.0.0.1"),
        "{names}"
    );
    assert_eq!(
        st["remembered"]["server"], other_name,
        "the last one synced with"
    );
}
