//! Where the real `blazedb-server` listens: `--listen` takes a host name, and an address
//! it cannot bind is reported before the data directory, the database or a certificate
//! is created, in one sentence.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn server(data: &std::path::Path, listen: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blazedb-server"));
    c.args([
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--database",
        "main",
    ])
    .args(["--listen", listen])
    .env("BLAZEDB_PASSWORD", "server-pw")
    .env("BLAZEDB_AUTH_TOKEN", "tok")
    .env("BLAZEDB_LOG", "warn");
    c
}

#[test]
fn a_busy_address_is_reported_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr");
    let out = server(&data, &addr.to_string()).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert_eq!(err.matches("in use").count(), 1, "said once: {err}");
    assert!(
        !data.exists(),
        "no data directory, database or certificate was made"
    );
}

#[test]
fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = server(&dir.path().join("data"), "localhost:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(T).expect("the ready line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("ready listen=127.0.0.1:") || line.starts_with("ready listen=[::1]:"),
        "{line}"
    );
}
