//! The REPL's history file, driven through the real `blazedb` on a terminal: it keeps
//! the shape of each command (command words and flags) and never a value typed into
//! it, with mode 0600, while arrow-up still recalls whole lines within a session.

mod support;

use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;
use support::Scratch;

const SECRET: &str = "s3cr3t-4111-1111-1111-1111";
const WHERE_VALUE: &str = "078-05-1120";
/// Arrow-up, as a terminal sends it.
const UP: &str = "\x1b[A";

fn history(s: &Scratch) -> (String, u32) {
    let path = s.path(".blazedb_history");
    let mode = std::fs::metadata(&path)
        .expect("the history file exists")
        .permissions()
        .mode();
    (std::fs::read_to_string(&path).expect("read"), mode & 0o777)
}

#[test]
fn the_history_file_keeps_command_shapes_with_mode_0600_and_never_a_value() {
    let s = Scratch::new();
    s.create("db/main", None);
    let insert = format!("insert people '{{\"card\": \"{SECRET}\"}}'");
    let query = format!("query people --where ssn={WHERE_VALUE}");
    let r = s.repl_on_terminal("db/main", &[&insert, &query, "exit"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        s.on(
            "db/main",
            &["count", "people", "--where", &format!("card={SECRET}")]
        )
        .json(),
        json!({"count": 1}),
        "the session ran the insert"
    );
    let (text, mode) = history(&s);
    assert_eq!(mode, 0o600);
    assert_eq!(text, "insert … …\nquery … --where …\nexit\n");
    for value in [SECRET, WHERE_VALUE, "people", "card", "ssn"] {
        assert!(!text.contains(value), "{value} in the history: {text}");
    }

    // A file others can read is narrowed; arrow-up repeats the whole line typed (its
    // shape would not run); the new session's shapes are added.
    std::fs::set_permissions(
        s.path(".blazedb_history"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let r = s.repl_on_terminal("db/main", &[r#"insert people '{"n": 2}'"#, UP, "exit"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        s.on("db/main", &["count", "people", "--where", "n=2"])
            .json(),
        json!({"count": 2}),
        "arrow-up recalled the whole insert: {}",
        r.stdout
    );
    assert_eq!(
        history(&s),
        (
            "insert … …\nquery … --where …\nexit\ninsert … …\nexit\n".to_owned(),
            0o600
        )
    );
}
