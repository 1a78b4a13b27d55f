//! The REPL's background sync against a real `blazedb-server`: `sync start` syncs live
//! while commands go on, `sync now` waits until it is in step, `status` shows it,
//! `sync stop` ends it, and the server is remembered; a one-shot `sync` meanwhile, or
//! `sync now` with none running, is a clear usage error.

mod support;

use serde_json::Value as Json;
use support::server::{ServerProc, TOKEN};
use support::{Run, Scratch, id_in};

fn repl(s: &Scratch, db: &str, script: &str) -> Run {
    let mut c = s.cmd();
    c.args(["--db", db])
        .env("BLAZEDB_AUTH_TOKEN", TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn blazedb");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), script.as_bytes())
        .expect("write the script");
    Run::of(child.wait_with_output().expect("the REPL ends"))
}

#[test]
fn the_repl_syncs_in_the_background_while_commands_go_on() {
    let s = Scratch::new();
    let srv = ServerProc::start(&s);
    s.create("a", None);
    s.create("b", None);
    let start = format!(
        "sync start --server {} --fingerprint {}",
        srv.addr(),
        srv.fingerprint
    );
    let script = format!(
        "{start}\ninsert todo {{\"title\": \"typed while syncing\"}}\nsync now\nstatus\nsync stop\n"
    );
    let r = repl(&s, "a", &script);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.ndjson();
    let id = id_in(&out[0]);
    let now = &out[1];
    assert_eq!(now["state"], "synced", "{now}");
    assert_eq!(now["pending_local_writes"], 0, "{now}");
    assert_eq!(now["has_synced"], true, "{now}");
    let status = &out[2];
    assert_eq!(status["live"]["state"], "synced", "{status}");
    assert_eq!(status["live"]["connected"], true, "{status}");
    assert!(
        out[3]["state"].is_string(),
        "sync stop's last status: {}",
        out[3]
    );
    // The state changes, one JSON line each (stdin is not a terminal), with a time.
    let lines: Vec<Json> = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["time"].is_string() && l["state"].is_string()),
        "{}",
        r.stderr
    );
    // The write reached the server: another client gets it.
    let b = Run::of(
        s.cmd()
            .args(["--db", "b", "sync", "--server", &srv.addr()])
            .args(["--fingerprint", &srv.fingerprint])
            .env("BLAZEDB_AUTH_TOKEN", TOKEN)
            .output()
            .expect("run blazedb"),
    );
    assert_eq!(b.code, 0, "{}", b.stderr);
    let got = s.on("b", &["get", "todo", &id]).json();
    assert_eq!(got["fields"]["title"], "typed while syncing", "{got}");
    // Remembered: `sync start` alone dials the same server next time.
    let again = repl(&s, "a", "sync start\nsync now\nsync stop\n");
    assert_eq!(again.code, 0, "{}", again.stderr);
    srv.stop();
}

#[test]
fn a_one_shot_sync_during_a_background_sync_and_sync_now_without_one_are_refused() {
    let s = Scratch::new();
    let srv = ServerProc::start(&s);
    s.create("a", None);
    let r = repl(&s, "a", "sync now\n");
    r.fails(2, "no sync runs in the background");
    assert!(r.stderr.contains("line 1"), "{}", r.stderr);
    let script = format!(
        "sync start --server {addr} --fingerprint {fp}\nsync --server {addr} --fingerprint {fp}\n",
        addr = srv.addr(),
        fp = srv.fingerprint
    );
    let r = repl(&s, "a", &script);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: line 2: sync runs in the background already"),
        "{}",
        r.stderr
    );
    srv.stop();
}

#[test]
fn on_a_terminal_the_prompt_shows_the_background_syncs_state_and_its_changes() {
    let s = Scratch::new();
    let srv = ServerProc::start(&s);
    s.create("a", None);
    std::fs::write(s.path("token"), TOKEN).expect("write the token file");
    // Synced once, the server is remembered: the REPL line stays short (a line wider
    // than the terminal is redrawn, prompt and all, which the typing helper would take
    // for a new prompt).
    let once = Run::of(
        s.cmd()
            .args(["--db", "a", "sync", "--server", &srv.addr()])
            .args(["--fingerprint", &srv.fingerprint, "--token-file", "token"])
            .output()
            .expect("run blazedb"),
    );
    assert_eq!(once.code, 0, "{}", once.stderr);
    let start = "sync start --token-file token";
    let r = s.repl_on_terminal("a", &[start, "sync now", "sync stop", "exit"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("blazedb [synced]> "),
        "the state in the prompt: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("synced with ") && r.stdout.contains(" · pending 0"),
        "a state line on the terminal: {}",
        r.stdout
    );
    srv.stop();
}
