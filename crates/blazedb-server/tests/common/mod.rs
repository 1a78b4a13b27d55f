//! Shared by the tests that drive the real `blazedb-server` program.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use blazedb_engine::{Database, KdfParams};
use blazedb_net::{Credentials, Fingerprint, RemoteNode, Security, ServerTrust, TcpRelay};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for anything a test waits on.
pub const T: Duration = Duration::from_secs(60);

/// A running server process.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub fingerprint: Fingerprint,
    pub metrics: String,
    /// The server's log (stderr), when [`spawn_server_logging`] started it.
    pub stderr: Option<tokio::process::ChildStderr>,
}

/// Runs `blazedb-server ARGS` to its end (database password `server-pw`, no auth token
/// from the environment): whether it succeeded, its stdout, its stderr.
pub fn run_server_cmd(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blazedb-server"))
        .args(args)
        .env("BLAZEDB_PASSWORD", "server-pw")
        .env_remove("BLAZEDB_AUTH_TOKEN")
        .output()
        .expect("run blazedb-server");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A server process over the cluster's PostgreSQL store (its password in a 0600 file
/// under `dir`), with the data directory `dir/name` and `extra` flags.
pub async fn store_server(
    dir: &Path,
    name: &str,
    pg: &blazedb_testpg::Cluster,
    extra: &[&str],
) -> Proc {
    use std::os::unix::fs::PermissionsExt as _;
    let pwfile = dir.join("store-password");
    std::fs::write(&pwfile, pg.password()).expect("write the store password");
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let url = pg.url("postgres");
    let mut args = vec![
        "--store",
        &url,
        "--store-password-file",
        pwfile.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    spawn_server(&dir.join(name), &args).await
}

/// Starts `blazedb-server` on `data` (database `main`, password `server-pw`, auth
/// token `tok`, metrics on, a free port) with `extra` flags; waits for its ready line.
pub async fn spawn_server(data: &Path, extra: &[&str]) -> Proc {
    spawn_server_on(data, 0, extra).await
}

/// As [`spawn_server`], on 127.0.0.1:`port` (0: a free one).
pub async fn spawn_server_on(data: &Path, port: u16, extra: &[&str]) -> Proc {
    let log = std::env::var("BLAZEDB_E2E_LOG").unwrap_or_else(|_| "warn".into());
    spawn(data, port, extra, &log, false).await
}

/// As [`spawn_server`], logging with the filter `log` into [`Proc::stderr`].
pub async fn spawn_server_logging(data: &Path, log: &str, extra: &[&str]) -> Proc {
    spawn(data, 0, extra, log, true).await
}

async fn spawn(data: &Path, port: u16, extra: &[&str], log: &str, capture: bool) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blazedb-server"))
        .args([
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--database",
            "main",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("BLAZEDB_PASSWORD", "server-pw")
        .env("BLAZEDB_AUTH_TOKEN", "tok")
        .env("BLAZEDB_LOG", log)
        .stdout(Stdio::piped())
        .stderr(if capture {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .kill_on_drop(true)
        .spawn()
        .expect("spawn blazedb-server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(T, lines.next_line())
        .await
        .expect("the server gets ready")
        .expect("read")
        .expect("a ready line");
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {line:?}"))
            .to_owned()
    };
    let listen: std::net::SocketAddr = field("listen").parse().expect("addr");
    let stderr = child.stderr.take();
    Proc {
        child,
        port: listen.port(),
        fingerprint: Fingerprint::parse(&field("fingerprint")).expect("fingerprint"),
        metrics: field("metrics"),
        stderr,
    }
}

impl Proc {
    /// A relay to this server with `creds`, pinned to its certificate.
    pub fn relay(&self, creds: Credentials) -> TcpRelay {
        TcpRelay::new(
            "localhost",
            self.port,
            "main",
            Security::Tls(ServerTrust::Pinned(self.fingerprint)),
            creds,
        )
    }

    /// The remote node clients sync with, with `creds`.
    pub fn remote(&self, creds: Credentials) -> RemoteNode {
        RemoteNode::pinned("localhost", self.port, "main", self.fingerprint, creds)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        signal(self, "-TERM");
    }

    /// The process's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    /// One metric's value from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let body = http_get(&self.metrics, "/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {body}"))
    }

    /// Waits until `name` reads `want` (a deadline, not a sleep: polls the endpoint).
    pub async fn metric_becomes(&self, name: &str, want: u64) {
        self.metric_until(name, want, |v| v == want).await;
    }

    /// Waits until `name` reads `least` or more.
    pub async fn metric_at_least(&self, name: &str, least: u64) {
        self.metric_until(name, least, |v| v >= least).await;
    }

    async fn metric_until(&self, name: &str, want: u64, ok: impl Fn(u64) -> bool) {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let v = self.metric(name).await;
            if ok(v) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed {v}, never {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends a signal by name (`-TERM`, `-STOP`, `-CONT`, ...) to the server.
pub fn signal(p: &Proc, sig: &str) {
    let pid = p.child.id().expect("running");
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// A client database with a fast KDF.
pub fn open(dir: &Path, name: &str) -> Database {
    Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open")
}

/// An HTTP/1.0 GET; the whole response.
pub async fn http_get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}
