//! `Settings::resolve`: precedence, errors that never show a secret, warnings, ranges.

use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn args(list: &[&str]) -> Cli {
    Cli::parse_from(std::iter::once("blazedb-server").chain(list.iter().copied()))
}

#[test]
fn a_toml_file_sets_everything_and_flags_override_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        r#"
data_dir = "/srv/blazedb"
database = "inventory"
listen = "0.0.0.0:9000"
auth_token = "from-file"
metrics = "127.0.0.1:9100"
max_connections = 50
handshake_timeout_ms = 2000
idle_timeout_ms = 9000
"#,
    )
    .expect("write");
    let s = Settings::resolve(args(&[
        "--config",
        cfg.to_str().expect("utf-8"),
        "--database",
        "flag-wins",
    ]))
    .expect("resolves");
    assert_eq!(s.data_dir, PathBuf::from("/srv/blazedb"));
    assert_eq!(s.database, "flag-wins");
    assert_eq!(s.listen, "0.0.0.0:9000".parse().expect("addr"));
    assert_eq!(
        s.auth_token.as_deref().map(String::as_str),
        Some("from-file")
    );
    assert_eq!(s.metrics, Some("127.0.0.1:9100".parse().expect("addr")));
    assert_eq!(
        (s.max_connections, s.handshake_timeout_ms, s.idle_timeout_ms),
        (50, 2000, 9000)
    );
    assert!(matches!(s.tls, Tls::SelfSigned));
}

#[test]
fn bad_settings_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "data_dir = \"/x\"\nauth_tokn = \"typo\"\n").expect("write");
    let e = Settings::resolve(args(&["--config", cfg.to_str().expect("utf-8")]))
        .expect_err("unknown key");
    assert!(format!("{e:#}").contains("auth_tokn"), "{e:#}");
    let e = Settings::resolve(args(&[
        "--data-dir",
        "/x",
        "--shared-secret",
        "s",
        "--tls-cert",
        "c.pem",
    ]))
    .expect_err("cert without key");
    assert!(e.to_string().contains("--tls-key"), "{e}");
    let e = Settings::resolve(args(&[
        "--data-dir",
        "/x",
        "--auth-token",
        "t",
        "--auth-token-file",
        "f",
    ]))
    .expect_err("both");
    assert!(e.to_string().contains("not both"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let e = Settings::resolve(args(&[
        "--data-dir",
        "/x",
        "--auth-token-file",
        empty.to_str().expect("utf-8"),
    ]))
    .expect_err("empty secret file");
    assert!(e.to_string().contains("empty"), "{e}");
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_malformed_secret_line_is_reported_by_position_and_never_quoted() {
    const TOKEN: &str = "s3cr3t-7f3a9c-do-not-print";
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("server.toml");
    for (line, message) in [
        (format!("auth_token = \"{TOKEN}\n"), "invalid basic string"),
        (format!("auth_token = {TOKEN}\n"), "must be quoted"),
        (format!("auth_token = '{TOKEN}\n"), "invalid literal string"),
        (
            format!("auth_token = \"{TOKEN}\" {TOKEN}\n"),
            "expected newline",
        ),
        (
            "auth_token = 987654321\n".to_owned(),
            "invalid type: integer,",
        ),
        (
            format!("max_connections = \"{TOKEN}, expected x\"\n"),
            "invalid type: string, expected usize",
        ),
    ] {
        std::fs::write(&cfg, format!("data_dir = \"/x\"\n{line}")).expect("write");
        let e = Settings::resolve(args(&["--config", cfg.to_str().expect("utf-8")]))
            .expect_err("malformed");
        let shown = format!("{e:#} {e:?}");
        assert!(
            !shown.contains(TOKEN) && !shown.contains("987654321"),
            "a value is shown: {shown}"
        );
        assert!(!shown.contains(line.trim()), "the line is shown: {shown}");
        assert!(
            shown.contains(&format!("{}:2:", cfg.display())),
            "path and line: {shown}"
        );
        assert!(shown.contains(message), "the parser's message: {shown}");
    }
}

#[test]
fn positions_count_lines_and_characters_from_one() {
    let text = "a = 1\nbé = \"x";
    assert_eq!(position(text, 0), Some((1, 1)));
    assert_eq!(position(text, 6), Some((2, 1)));
    let at_x = text.find('x').expect("x");
    assert_eq!(position(text, at_x), Some((2, 7)), "é is one column");
    assert_eq!(position(text, text.len() + 1), None);
}

fn bounded_cases() -> [(&'static str, u64, u64); 3] {
    let n = |v: usize| u64::try_from(v).expect("fits");
    [
        (
            "max_connections",
            n(*MAX_CONNECTIONS.start()),
            n(*MAX_CONNECTIONS.end()),
        ),
        (
            "handshake_timeout_ms",
            *HANDSHAKE_TIMEOUT_MS.start(),
            *HANDSHAKE_TIMEOUT_MS.end(),
        ),
        (
            "idle_timeout_ms",
            *IDLE_TIMEOUT_MS.start(),
            *IDLE_TIMEOUT_MS.end(),
        ),
    ]
}

fn resolved(s: &Settings, key: &str) -> u64 {
    match key {
        "max_connections" => u64::try_from(s.max_connections).expect("fits"),
        "handshake_timeout_ms" => s.handshake_timeout_ms,
        _ => s.idle_timeout_ms,
    }
}

#[test]
fn numeric_flags_accept_their_bounds_and_refuse_one_step_beyond() {
    for (key, lo, hi) in bounded_cases() {
        let flag = format!("--{}", key.replace('_', "-"));
        for (value, accepted) in [(lo, true), (hi, true), (lo - 1, false), (hi + 1, false)] {
            let r = Settings::resolve(args(&[
                "--data-dir",
                "/x",
                "--shared-secret",
                "s",
                &flag,
                &value.to_string(),
            ]));
            match (r, accepted) {
                (Ok(s), true) => assert_eq!(resolved(&s, key), value, "{flag}"),
                (Err(e), false) => {
                    let e = e.to_string();
                    assert!(e.contains(&format!("{flag} {value}")), "{e}");
                    assert!(e.contains(&format!("accepted {lo} to {hi}")), "{e}");
                }
                (r, _) => panic!("{flag} {value}: accepted {}", r.is_ok()),
            }
        }
    }
}

#[test]
fn numeric_file_settings_accept_their_bounds_and_refuse_one_step_beyond() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("server.toml");
    for (key, lo, hi) in bounded_cases() {
        for (value, accepted) in [(lo, true), (hi, true), (lo - 1, false), (hi + 1, false)] {
            std::fs::write(&cfg, format!("data_dir = \"/x\"\n{key} = {value}\n")).expect("write");
            let r = Settings::resolve(args(&[
                "--config",
                cfg.to_str().expect("utf-8"),
                "--shared-secret",
                "s",
            ]));
            match (r, accepted) {
                (Ok(s), true) => assert_eq!(resolved(&s, key), value, "{key}"),
                (Err(e), false) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(&format!("{key} = {value} in {}", cfg.display())),
                        "{e}"
                    );
                    assert!(e.contains(&format!("accepted {lo} to {hi}")), "{e}");
                }
                (r, _) => panic!("{key} = {value}: accepted {}", r.is_ok()),
            }
        }
    }
}

#[test]
fn help_states_each_settings_range_default_and_environment_variable() {
    use clap::CommandFactory as _;
    let help = Args::command().render_long_help().to_string();
    let defaults = [
        u64::try_from(MAX_CONNECTIONS_DEFAULT).expect("fits"),
        HANDSHAKE_TIMEOUT_MS_DEFAULT,
        IDLE_TIMEOUT_MS_DEFAULT,
    ];
    for ((key, lo, hi), default) in bounded_cases().into_iter().zip(defaults) {
        let flag = format!("--{}", key.replace('_', "-"));
        let at = help.find(&format!("{flag} <")).expect(&flag);
        let next = help[at + 2..]
            .find("\n      --")
            .map_or(help.len(), |n| at + 2 + n);
        let entry = &help[at..next];
        assert!(entry.contains(&format!("({lo} to {hi})")), "{entry}");
        assert!(entry.contains(&format!("[default: {default}]")), "{entry}");
        let env = format!("[env: BLAZEDB_{}", key.to_uppercase());
        assert!(entry.contains(&env), "{entry}");
    }
    for secret in ["--auth-token <", "--shared-secret <", "--peer-token <"] {
        assert!(help.contains(secret), "{secret}");
    }
    assert!(help.contains("Exit codes: 0 stopped cleanly"), "{help}");
}

#[test]
fn a_setting_from_the_file_wins_over_its_default_and_yields_to_its_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"/x\"\nshared_secret = \"s\"\nmax_connections = 50\n",
    )
    .expect("write");
    let cfg = cfg.to_str().expect("utf-8");
    let parse = |argv: &[&str]| args(argv);
    let s = Settings::resolve(parse(&["--config", cfg])).expect("resolves");
    assert_eq!(s.max_connections, 50, "the file wins over a default");
    let s =
        Settings::resolve(parse(&["--config", cfg, "--max-connections", "9"])).expect("resolves");
    assert_eq!(s.max_connections, 9, "the flag wins over the file");
    let s =
        Settings::resolve(parse(&["--data-dir", "/x", "--shared-secret", "s"])).expect("resolves");
    assert_eq!(
        s.max_connections, MAX_CONNECTIONS_DEFAULT,
        "the default when neither gives it"
    );
}

#[test]
fn heartbeats_come_at_a_third_of_the_idle_timeout_and_at_least_as_often_as_the_default() {
    let at = |idle: &str| {
        Settings::resolve(args(&[
            "--data-dir",
            "/x",
            "--shared-secret",
            "s",
            "--idle-timeout-ms",
            idle,
        ]))
        .expect("resolves")
        .liveness()
    };
    let short = at("1000");
    assert_eq!(short.idle_timeout, Duration::from_millis(1000));
    assert_eq!(short.heartbeat, Duration::from_millis(1000) / 3);
    let long = at("86400000");
    assert_eq!(long.idle_timeout, Duration::from_secs(86_400));
    assert_eq!(long.heartbeat, Liveness::default().heartbeat);
}

#[test]
fn secrets_on_the_command_line_and_files_others_can_read_are_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let warnings = |list: &[&str]| Settings::resolve(args(list)).expect("resolves").warnings;

    let w = warnings(&[
        "--data-dir",
        "/x",
        "--auth-token",
        "t",
        "--shared-secret",
        "s",
    ]);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("--auth-token on the command line") && w[0].contains("process list"));
    assert!(
        w[0].contains("--auth-token-file or BLAZEDB_AUTH_TOKEN"),
        "{w:?}"
    );
    assert!(
        w[1].contains("--shared-secret-file or BLAZEDB_SHARED_SECRET"),
        "{w:?}"
    );

    let cfg = path("server.toml");
    write_mode(
        Path::new(&cfg),
        "data_dir = \"/x\"\nauth_token = \"t\"\n",
        0o644,
    );
    let w = warnings(&["--config", &cfg]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(&cfg) && w[0].contains("holds auth_token") && w[0].contains("0644"));
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(warnings(&["--config", &cfg]).is_empty());
    let secret_file = path("s");
    write_mode(Path::new(&secret_file), "secret\n", 0o600);
    // A configuration naming a secret file (not holding a secret) may be readable.
    write_mode(
        Path::new(&cfg),
        &format!("data_dir = \"/x\"\nshared_secret_file = \"{secret_file}\"\n"),
        0o644,
    );
    assert!(warnings(&["--config", &cfg]).is_empty());
    assert!(warnings(&["--data-dir", "/x", "--shared-secret-file", &secret_file]).is_empty());
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let w = warnings(&["--data-dir", "/x", "--shared-secret-file", &secret_file]);
    assert!(
        w.len() == 1 && w[0].contains("shared secret file") && w[0].contains("0640"),
        "{w:?}"
    );

    let (cert, key) = (path("cert.pem"), path("key.pem"));
    write_mode(Path::new(&cert), "cert", 0o644);
    write_mode(Path::new(&key), "key", 0o600);
    let tls = [
        "--data-dir",
        "/x",
        "--shared-secret-file",
        &secret_file,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(
        warnings(&tls).is_empty(),
        "a public certificate is no secret"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    let w = warnings(&tls);
    assert!(
        w.len() == 1 && w[0].contains("TLS key file") && w[0].contains(&key),
        "{w:?}"
    );
}

#[test]
fn the_store_ca_file_comes_from_the_file_unless_a_flag_names_one_and_needs_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("server.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"/srv/blazedb\"\n\
         store = \"postgres://blazedb@db.internal:5432/blazedb\"\n\
         store_ca_file = \"/etc/blazedb/pg-ca.pem\"\n\
         auth_token = \"t\"\n",
    )
    .expect("write");
    let c = cfg.to_str().expect("utf-8");
    let s = Settings::resolve(args(&["--config", c])).expect("resolves");
    let store = s.store.expect("a store");
    assert_eq!(store.url, "postgres://blazedb@db.internal:5432/blazedb");
    assert_eq!(store.ca_file, Some(PathBuf::from("/etc/blazedb/pg-ca.pem")));
    let s = Settings::resolve(args(&["--config", c, "--store-ca-file", "/other.pem"]))
        .expect("resolves");
    assert_eq!(
        s.store.expect("a store").ca_file,
        Some(PathBuf::from("/other.pem"))
    );
    let e = Settings::resolve(args(&[
        "--data-dir",
        "/srv/blazedb",
        "--store-ca-file",
        "/x.pem",
        "--auth-token",
        "t",
    ]))
    .expect_err("a CA file without a store");
    assert!(format!("{e:#}").contains("--store"), "{e:#}");
}
