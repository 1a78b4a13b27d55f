//! A throwaway PostgreSQL cluster for tests, real and local: no mock stands in for
//! Postgres. [`Cluster::start`] runs `initdb` into a temporary directory and `pg_ctl`
//! on a free port of 127.0.0.1 (TCP only, no Unix socket), with password
//! (SCRAM-SHA-256) authentication for one superuser; dropping the cluster stops it
//! (`immediate`) and removes its files.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the server's
//! programs run as the unprivileged user `nobody` (`setpriv`), and the data directory
//! is handed to that user. The programs are found in `BLAZEDB_PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), else on `PATH`; `.ci/run` installs
//! the `postgresql` package when they are missing.

#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The superuser the cluster is made with.
pub const USER: &str = "blazedb";
/// How long a start or stop may take before it is reported as failed.
pub const WAIT: Duration = Duration::from_secs(60);
/// Attempts to find a port no one takes between choosing it and the server binding it.
const PORT_TRIES: usize = 5;
/// The unprivileged user the server runs as when the tests run as root.
const UNPRIVILEGED: (u32, u32, &str) = (65_534, 65_534, "nobody");

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    /// Holds the data directory (and the password file); removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    as_root: bool,
    running: bool,
    /// Serving TLS only ([`Cluster::start_tls_only`]).
    tls: bool,
}

/// Why a cluster could not be made or driven: what ran, and what it said.
#[derive(Debug)]
pub struct ClusterError(pub String);

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

type Result<T> = std::result::Result<T, ClusterError>;

fn err(what: impl Into<String>) -> ClusterError {
    ClusterError(what.into())
}

/// The directory holding `initdb` and `pg_ctl`.
fn find_bin() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BLAZEDB_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").exists());
    on_path.ok_or_else(|| {
        err("PostgreSQL is not installed: no initdb in BLAZEDB_PG_BIN, \
             /usr/lib/postgresql/*/bin or PATH (Debian: apt-get install postgresql)")
    })
}

fn running_as_root() -> bool {
    // The owner of a file this process just made is this process's user.
    let probe = tempfile::tempfile().ok().and_then(|f| f.metadata().ok());
    probe.is_some_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A port of 127.0.0.1 free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("binding a port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| err(format!("reading a port: {e}")))
}

impl Cluster {
    /// Makes and starts a cluster.
    ///
    /// # Errors
    /// PostgreSQL missing, `initdb` or `pg_ctl` failing (their output is in the error).
    pub fn start() -> Result<Cluster> {
        Self::make(None, None)
    }

    /// As [`Cluster::start`], with the cluster's files in a temporary directory inside
    /// `parent` (a benchmark puts them on the disk it measures). As root, the server
    /// runs as `nobody`, who must be able to reach `parent`.
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub fn start_in(parent: &Path) -> Result<Cluster> {
        Self::make(None, Some(parent))
    }

    /// Makes and starts a cluster that accepts TLS connections only (`hostssl` in
    /// `pg_hba.conf`: a plain connection is refused), with this certificate chain and
    /// key (PEM).
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub fn start_tls_only(cert_pem: &str, key_pem: &str) -> Result<Cluster> {
        Self::make(Some((cert_pem, key_pem)), None)
    }

    fn make(tls: Option<(&str, &str)>, parent: Option<&Path>) -> Result<Cluster> {
        let bin = find_bin()?;
        let as_root = running_as_root();
        let mut builder = tempfile::Builder::new();
        builder.prefix("blazedb-pg-");
        let dir = match parent {
            Some(p) => builder.tempdir_in(p),
            None => builder.tempdir(),
        }
        .map_err(|e| err(format!("making a temporary directory: {e}")))?;
        let password = random_password()?;
        let mut c = Cluster {
            bin,
            dir,
            port: 0,
            password,
            as_root,
            running: false,
            tls: false,
        };
        c.init()?;
        if let Some((cert, key)) = tls {
            c.serve_tls_only(cert, key)?;
        }
        let mut last = None;
        for _ in 0..PORT_TRIES {
            c.port = free_port()?;
            match c.start_again() {
                Ok(()) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| err("no port")))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the cluster's programs, as `nobody` when this process is root.
    fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_root {
            let (uid, gid, _) = UNPRIVILEGED;
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
            ])
            .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // The server's own locale and time zone, not the test machine's.
        cmd.args(args).env("LC_ALL", "C").env("TZ", "UTC");
        let out = cmd
            .output()
            .map_err(|e| err(format!("running {}: {e}", exe.display())))?;
        if !out.status.success() {
            return Err(err(format!(
                "{program} {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out)
    }

    /// Writes the certificate and key into the data directory (the server's user owns
    /// them, mode 0600, as Postgres requires) and allows TLS connections only.
    fn serve_tls_only(&mut self, cert: &str, key: &str) -> Result<()> {
        let data = self.data();
        for (name, pem) in [("server.crt", cert), ("server.key", key)] {
            let path = data.join(name);
            std::fs::write(&path, pem).map_err(|e| err(format!("writing {name}: {e}")))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(format!("chmod {name}: {e}")))?;
            if self.as_root {
                let (uid, gid, _) = UNPRIVILEGED;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| err(format!("handing {name} to nobody: {e}")))?;
            }
        }
        let hba = data.join("pg_hba.conf");
        let text =
            std::fs::read_to_string(&hba).map_err(|e| err(format!("reading pg_hba.conf: {e}")))?;
        let tls_only: String = text
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, tls_only).map_err(|e| err(format!("writing pg_hba.conf: {e}")))?;
        self.tls = true;
        Ok(())
    }

    fn init(&self) -> Result<()> {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, &self.password).map_err(|e| err(format!("pwfile: {e}")))?;
        if self.as_root {
            let (uid, gid, _) = UNPRIVILEGED;
            for p in [self.dir.path(), pwfile.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(|e| err(format!("handing {} to nobody: {e}", p.display())))?;
            }
            std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| err(format!("chmod: {e}")))?;
        }
        let data = self.data();
        self.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                USER,
                "--pwfile",
                path_str(&pwfile)?,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            ],
        )?;
        std::fs::remove_file(&pwfile).map_err(|e| err(format!("removing the pwfile: {e}")))?;
        Ok(())
    }

    /// Starts the (stopped) cluster again on its port, keeping its data.
    ///
    /// # Errors
    /// `pg_ctl start` failing or not ready within [`WAIT`].
    pub fn start_again(&mut self) -> Result<()> {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='' \
             -c fsync=on -c max_connections=200",
            self.port
        );
        if self.tls {
            opts.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let wait = WAIT.as_secs().to_string();
        let r = self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                &wait,
                "-o",
                &opts,
            ],
        );
        if let Err(e) = r {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(err(format!("{e}\nserver log:\n{said}")));
        }
        self.running = true;
        Ok(())
    }

    /// Stops the cluster (`-m immediate`: as a crash would, the data kept); it can be
    /// started again with [`Cluster::start_again`].
    ///
    /// # Errors
    /// `pg_ctl stop` failing.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let data = self.data();
        let wait = WAIT.as_secs().to_string();
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-D",
                path_str(&data)?,
                "-m",
                "immediate",
                "-w",
                "-t",
                &wait,
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// `pg_dump` of database `db`, schema and data, as text: everything an
    /// administrator (or a thief of the cluster's files) can read.
    ///
    /// # Errors
    /// `pg_dump` failing.
    pub fn dump(&self, db: &str) -> Result<String> {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                USER,
                "--no-password",
                db,
            ])
            .env("PGPASSWORD", &self.password)
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| err(format!("running pg_dump: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "pg_dump failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        String::from_utf8(out.stdout).map_err(|e| err(format!("pg_dump wrote non-UTF-8: {e}")))
    }

    /// The port it listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://blazedb@127.0.0.1:PORT/DB` (the password apart: [`Cluster::password`]).
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A `tokio-postgres` / libpq key-value connection string with the password.
    #[must_use]
    pub fn conn_string(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={} dbname={db}",
            self.port, self.password
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Best effort: a cluster left running would hold its port until the machine
        // stops; its files go with the temporary directory either way.
        let _ = self.stop();
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| err(format!("{} is not UTF-8", p.display())))
}

/// 32 random hex digits.
fn random_password() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| err(format!("random bytes: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
