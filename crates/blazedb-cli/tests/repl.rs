//! The REPL as users of other shells expect it, through the real binary with a piped
//! script: JSON typed as-is, `sqlite3`'s dot commands, queries that see the open
//! transaction, one output shape per command, and a script that stops at its first
//! failing line, naming it.

mod support;

use serde_json::json;
use support::Scratch;

fn repl(s: &Scratch, script: &str) -> support::Run {
    s.on_with_input("db/main", &["repl"], script)
}

#[test]
fn json_typed_as_is_inserts_as_the_command_line_does() {
    let s = Scratch::new();
    s.create("db/main", None);
    let r = repl(
        &s,
        "insert todo {\"title\": \"a b\", \"tags\": [\"x\"]}\nquery todo -w 'title=\"a b\"'\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let doc: serde_json::Value = serde_json::from_str(lines[1]).expect("JSON");
    assert_eq!(doc["fields"], json!({"title": "a b", "tags": ["x"]}));
}

#[test]
fn dot_commands_list_collections_and_indexes_and_quit() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["insert", "todo", "{\"n\": 1}"]).json();
    s.on("db/main", &["index", "create", "by_n", "todo", "n"])
        .json();
    let r = repl(&s, ".tables\n.schema\n.quit\ninsert todo {}\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("todo"), "{}", r.stdout);
    assert!(r.stdout.contains("by_n"), "{}", r.stdout);
    assert_eq!(
        s.on("db/main", &["count", "todo"]).json(),
        json!({"count": 1}),
        "nothing ran after .quit"
    );
}

#[test]
fn query_and_count_inside_begin_see_the_transactions_own_writes() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["insert", "todo", "{\"n\": 1}"]).json();
    let r = repl(
        &s,
        "begin\ninsert todo {\"n\": 2}\ncount todo\nquery todo -w n=2\nrollback\ncount todo\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[1], r#"{"count":2}"#, "{lines:?}");
    assert!(lines[2].contains(r#""n":2"#), "{lines:?}");
    assert_eq!(lines[3], r#"{"count":1}"#, "rolled back: {lines:?}");
}

#[test]
fn count_prints_the_same_shape_in_the_repl_as_on_the_command_line() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["insert", "todo", "{}"]).json();
    let r = repl(&s, "count todo\n");
    assert_eq!(
        r.stdout.trim(),
        s.on("db/main", &["count", "todo"]).stdout.trim()
    );
}

#[test]
fn a_piped_script_stops_at_its_first_failing_line_and_names_it() {
    let s = Scratch::new();
    s.create("db/main", None);
    let r = repl(
        &s,
        "insert todo {\"n\": 1}\n# a comment\n\nquery todo -w 'n>>1'\ninsert todo {\"n\": 2}\n",
    );
    assert_eq!(r.code, 7, "the failing line's exit code: {}", r.stderr);
    assert!(r.stderr.contains("line 4: condition"), "{}", r.stderr);
    assert_eq!(
        s.on("db/main", &["count", "todo"]).json(),
        json!({"count": 1}),
        "the line after the failure did not run"
    );
}
