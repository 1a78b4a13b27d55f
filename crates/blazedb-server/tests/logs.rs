//! The server's log as an operator reads it, from the real program: JSON lines with
//! `--log-format json`, refused clients (wrong token, server busy) at WARN with their
//! address, the fingerprint as
//! clients pin it, and the sync path at DEBUG.

mod common;

use blazedb_net::{Credentials, RefuseCode};
use blazedb_sync::{EnableSync, Role};
use common::{T, open, spawn_server_logging};
use serde_json::Value as Json;
use tokio::io::AsyncReadExt;

fn field<'a>(line: &'a Json, name: &str) -> &'a str {
    line["fields"][name].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_refused_peers_at_warn_and_trace_the_sync_path_at_debug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = spawn_server_logging(
        &dir.path().join("server"),
        "info,blazedb_sync=debug",
        &["--log-format", "json", "--max-connections", "1"],
    )
    .await;
    let intruder = open(dir.path(), "intruder");
    let h = intruder
        .enable_sync(
            p.remote(Credentials::none().token("wrong-token")).relay(),
            Role::Client,
        )
        .await
        .expect("enable sync");
    // The client retries with backoff until its deadline; one refusal is enough here.
    h.sync_now(std::time::Duration::from_secs(1))
        .await
        .expect_err("a wrong token is refused");
    p.metric_at_least("blazedb_connections_refused_auth_total", 1)
        .await;
    h.stop().await;
    let client = open(dir.path(), "client");
    let h = client
        .enable_sync(
            p.remote(Credentials::none().token("tok")).relay(),
            Role::Client,
        )
        .await
        .expect("enable sync");
    h.sync_now(T).await.expect("the right token syncs");
    // The one slot is taken: the next client is refused as busy, and that is logged
    // too (its own kind: the refused token a moment ago does not hide it).
    let e = p
        .relay(Credentials::none().token("tok"))
        .connect_frames()
        .await
        .expect_err("at the connection limit");
    assert_eq!(e.refused(), Some(RefuseCode::Busy), "{e}");
    h.stop().await;
    p.sigterm();
    let status = tokio::time::timeout(T, p.child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success(), "{status}");
    let mut log = String::new();
    p.stderr
        .take()
        .expect("captured")
        .read_to_string(&mut log)
        .await
        .expect("read the log");
    let lines: Vec<Json> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |level: &str, message: &str| {
        lines
            .iter()
            .find(|l| l["level"] == level && field(l, "message") == message)
            .unwrap_or_else(|| panic!("{level} {message:?} in {log}"))
    };
    let refused = find("WARN", "sync connection refused");
    assert!(
        field(refused, "peer").starts_with("127.0.0.1:"),
        "{refused}"
    );
    let serving = find("INFO", "serving");
    assert_eq!(field(serving, "database"), "main", "{serving}");
    assert!(
        field(serving, "from").starts_with("the database at "),
        "{serving}"
    );
    let listening = find("INFO", "sync server listening");
    assert_eq!(field(listening, "fingerprint"), p.fingerprint.to_string());
    let started = find("INFO", "sync session started");
    assert_eq!(field(started, "role"), "client", "{started}");
    let hello = find("DEBUG", "received");
    assert!(
        field(hello, "msg").starts_with("hello role=client"),
        "{hello}"
    );
    find("DEBUG", "sending");
    assert!(
        !log.contains("Some("),
        "debug formatting leaks into the log: {log}"
    );
}
