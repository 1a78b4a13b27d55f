//! A real `blazedb-server` process for the CLI's sync tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{PASSWORD, Scratch};

/// The auth token the test server takes.
pub const TOKEN: &str = "cli-test-token";

/// The `blazedb-server` binary of this build (built on demand when the test runs alone).
pub fn server_bin() -> PathBuf {
    let dir = PathBuf::from(super::bin())
        .parent()
        .expect("the binary has a directory")
        .to_owned();
    let path = dir.join(format!("blazedb-server{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["build", "-p", "blazedb-server"]);
        if !cfg!(debug_assertions) {
            c.arg("--release");
        }
        assert!(c.status().expect("cargo build").success());
    }
    path
}

pub struct ServerProc {
    pub child: Child,
    pub port: u16,
    pub fingerprint: String,
}

impl ServerProc {
    /// Starts `blazedb-server` on `s`'s `srv/main`, port 0, and reads its ready line.
    pub fn start(s: &Scratch) -> ServerProc {
        ServerProc::start_with(s, &[])
    }

    /// As [`ServerProc::start`], with more server flags.
    pub fn start_with(s: &Scratch, extra: &[&str]) -> ServerProc {
        let mut child = Command::new(server_bin())
            .current_dir(s.dir.path())
            .args([
                "--data-dir",
                "srv",
                "--database",
                "main",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("BLAZEDB_PASSWORD", PASSWORD)
            .env("BLAZEDB_AUTH_TOKEN", TOKEN)
            .env("BLAZEDB_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn blazedb-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the ready line");
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} in {line:?}"))
                .to_owned()
        };
        let listen: std::net::SocketAddr = field("listen").parse().expect("address");
        ServerProc {
            child,
            port: listen.port(),
            fingerprint: field("fingerprint"),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, and the graceful exit code.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
        let st = self.child.wait().expect("wait");
        assert_eq!(st.code(), Some(0), "graceful shutdown exits 0");
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // After `stop` the process is gone and this does nothing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
