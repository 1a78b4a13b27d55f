//! The exit codes as the README and `--help` state them, and the binary keeping them:
//! both texts name the same kind for every code, and a real command ends with each.

mod support;

use support::Scratch;

/// Each code and the words both texts start its description with.
const KINDS: [(u8, &str); 10] = [
    (0, "ok"),
    (1, "failure"),
    (2, "usage"),
    (3, "not found"),
    (4, "wrong password"),
    (5, "database in use"),
    (6, "conflict"),
    (7, "bad input"),
    (8, "sync failed"),
    (9, "damaged data"),
];

/// The sentence that starts with "Exit codes: 0 ok" in `text`, on one line.
fn exit_sentence(text: &str) -> String {
    let start = text
        .find("Exit codes: 0 ok")
        .expect("an exit-code sentence");
    let rest = &text[start..];
    let end = rest.find("damaged data").expect("the last code") + "damaged data".len();
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

fn assert_names_every_kind(what: &str, sentence: &str) {
    let mut at = 0;
    for (code, kind) in KINDS {
        let needle = format!("{code} {kind}");
        let found = sentence[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("{what} does not say '{needle}' in order: {sentence}"));
        at += found + needle.len();
    }
}

#[test]
fn the_readme_and_help_name_the_same_kind_for_every_exit_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    assert_names_every_kind("README.md", &exit_sentence(&readme));
    let help = Scratch::new().run(&["--help"]).stdout;
    assert_names_every_kind("--help", &exit_sentence(&help));
}

#[test]
fn real_commands_end_with_each_documented_code() {
    let s = Scratch::new();
    s.create("db/main", None);
    let code = |args: &[&str]| s.on("db/main", args).code;
    assert_eq!(code(&["info"]), 0);
    assert_eq!(code(&["--no-such-flag"]), 2);
    assert_eq!(
        code(&["get", "t", "01900000-0000-7000-8000-000000000001"]),
        3
    );
    let wrong = s
        .cmd()
        .args(["--db", "db/main", "info"])
        .env("BLAZEDB_PASSWORD", "not it")
        .output()
        .expect("run");
    assert_eq!(wrong.status.code(), Some(4));
    s.on("db/main", &["insert", "t", r#"{"n": 1}"#]).json();
    s.on("db/main", &["index", "create", "i", "t", "n"]).json();
    assert_eq!(code(&["index", "create", "i", "t", "n"]), 6);
    assert_eq!(code(&["query", "t", "-w", "n>>1"]), 7);
    assert_eq!(
        code(&[
            "sync",
            "--server",
            "127.0.0.1:1",
            "--plain-tcp-insecure",
            "--timeout",
            "5"
        ]),
        8
    );
    s.create("db/gone", None);
    std::fs::remove_file(s.path("db/gone.blazedb/blazedb.key")).expect("remove the key");
    assert_eq!(s.on("db/gone", &["info"]).code, 9);
    // 5 (in use) is driven in cli.rs (a REPL holds the database); 1 has no cheap cause.
}
