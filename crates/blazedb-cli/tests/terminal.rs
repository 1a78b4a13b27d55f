//! The binary at a terminal (a pseudo-terminal made by `script`): password prompts,
//! tables, progress that clears itself, and answers that fit a screen.

mod support;

use support::{PASSWORD, Scratch, on_terminal};

#[test]
fn on_a_terminal_the_password_is_prompted_for_and_results_are_tables() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on(
        "db/main",
        &["insert", "t", r#"{"title": "shown in a table"}"#],
    )
    .json();
    let r = on_terminal(&s, "--db db/main query t", &format!("{PASSWORD}\n"));
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("database password:"), "{}", r.stdout);
    assert!(r.stdout.contains("| title"), "a table header: {}", r.stdout);
    assert!(r.stdout.contains("shown in a table"));
    let r = on_terminal(&s, "--db db/main count t", "not the password\n");
    assert_eq!(r.code, 4, "{}", r.stdout);
    assert!(r.stdout.contains("wrong password"));
}

#[test]
fn create_at_a_terminal_asks_for_the_password_twice_and_refuses_a_mismatch() {
    let s = Scratch::new();
    let typo = on_terminal(&s, "--db db/a --insecure-fast-kdf create", "one\ntwo\n");
    assert_eq!(typo.code, 7, "{}", typo.stdout);
    assert!(typo.stdout.contains("password again:"), "{}", typo.stdout);
    assert!(typo.stdout.contains("differ"), "{}", typo.stdout);
    assert!(
        !s.path("db/a.blazedb").exists(),
        "nothing was created on a mismatch"
    );
    let ok = on_terminal(&s, "--db db/a --insecure-fast-kdf create", "same\nsame\n");
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    let opened = on_terminal(&s, "--db db/a info", "same\n");
    assert_eq!(
        opened.code, 0,
        "the password typed twice opens it: {}",
        opened.stdout
    );
}

#[test]
fn insert_from_a_terminal_prints_a_summary_not_every_id() {
    let s = Scratch::new();
    s.create("db/main", None);
    let typed = format!("{PASSWORD}\n{{\"n\": 1}}\n{{\"n\": 2}}\n{{\"n\": 3}}\n\u{4}");
    let r = on_terminal(&s, "--db db/main insert t -", &typed);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("inserted"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("| id"),
        "no table of ids without --ids: {}",
        r.stdout
    );
    assert_eq!(
        s.on("db/main", &["count", "t"]).json(),
        serde_json::json!({"count": 3})
    );
}

#[test]
fn the_repl_at_a_terminal_completes_collection_names_and_flags_with_tab() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["insert", "todo", r#"{"n": 7}"#]).json();
    let r = s.repl_on_terminal("db/main", &["count to\t", "query todo --sel\t n", ".quit"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("| count |"),
        "count todo ran: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("--select"),
        "the flag was completed: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("| n "),
        "query todo --select n ran: {}",
        r.stdout
    );
}
