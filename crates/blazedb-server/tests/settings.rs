//! Where the real `blazedb-server` takes each setting from: the flag, else the
//! configuration file, else the environment, else the default — and `--help` says
//! which variable and which default, and the exit codes.

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blazedb-server"));
    c.args(args)
        .env_remove("BLAZEDB_MAX_CONNECTIONS")
        .env("BLAZEDB_PASSWORD", "server-pw")
        .env("BLAZEDB_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run blazedb-server")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_shows_each_settings_variable_and_default_and_the_exit_codes() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "[env: BLAZEDB_MAX_CONNECTIONS=]",
        "[default: 1024]",
        "[env: BLAZEDB_LISTEN=]",
        "[default: 127.0.0.1:7447]",
        "[env: BLAZEDB_LOG_FORMAT=]",
        "Exit codes: 0 stopped cleanly",
    ] {
        assert!(help.contains(needle), "{needle} in {help}");
    }
    // A secret in the environment is never printed by --help.
    let out = run(&["--help"], &[("BLAZEDB_AUTH_TOKEN", "s3cret-never-shown")]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("BLAZEDB_AUTH_TOKEN") && !help.contains("s3cret-never-shown"));
    let out = run(&["--version"], &[]);
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.contains("(commit "), "{version}");
}

#[test]
fn the_flag_beats_the_file_and_the_file_beats_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let cfg = dir.path().join("server.toml");
    std::fs::write(&cfg, "max_connections = 5\n").expect("write");
    let cfg = cfg.to_str().expect("utf-8");
    let bad_env = [("BLAZEDB_MAX_CONNECTIONS", "0")];
    // `user list` resolves every setting first, then needs the database: a setting
    // out of range is refused before that, naming where it came from.
    let o = run(&["--data-dir", data, "user", "list"], &bad_env);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("BLAZEDB_MAX_CONNECTIONS=0 is out of range"),
        "{}",
        stderr(&o)
    );
    let o = run(
        &["--data-dir", data, "--config", cfg, "user", "list"],
        &bad_env,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no database") && !stderr(&o).contains("out of range"),
        "the file's 5 wins over the environment's 0: {}",
        stderr(&o)
    );
    let o = run(
        &[
            "--data-dir",
            data,
            "--config",
            cfg,
            "--max-connections",
            "0",
            "user",
            "list",
        ],
        &[],
    );
    assert!(
        stderr(&o).contains("--max-connections 0 is out of range"),
        "the flag wins over the file: {}",
        stderr(&o)
    );
    let o = run(&["user", "list"], &[("BLAZEDB_DATA_DIR", data)]);
    assert!(
        stderr(&o).contains("no database \"main\" in"),
        "the data directory from the environment: {}",
        stderr(&o)
    );
}
