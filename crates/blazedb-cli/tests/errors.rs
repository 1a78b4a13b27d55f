//! Exit codes as the README's table gives them, and error texts that say what to do,
//! through the real binary: conflicts with what is stored are 6 whatever command
//! meets them, input that is not text is 7, and each message names the thing at fault.

mod support;

use serde_json::json;
use support::Scratch;

#[test]
fn conflicts_with_what_is_stored_exit_6_from_import_and_index_create() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["insert", "t", r#"{"n": 1}"#]).json();
    let export = s.on("db/main", &["export"]).stdout;
    let dup = s.on_with_input("db/main", &["import"], &export);
    dup.fails(6, "already exists");
    assert!(dup.stderr.contains("import --replace"), "{}", dup.stderr);
    s.on("db/main", &["index", "create", "by_n", "t", "n"])
        .json();
    let again = s.on("db/main", &["index", "create", "by_n", "t", "n"]);
    again.fails(6, "an index named 'by_n' already exists");
    assert!(again.stderr.contains("index list"), "{}", again.stderr);
    assert_eq!(s.on("db/main", &["count", "t"]).json(), json!({"count": 1}));
}

#[test]
fn input_that_is_not_utf8_is_bad_input_naming_the_line() {
    let s = Scratch::new();
    s.create("db/main", None);
    let child = s
        .cmd()
        .args(["--db", "db/main", "insert", "t", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = child;
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        b"{\"n\": 1}\n\xff\xfe\n",
    )
    .expect("write");
    let r = support::Run::of(child.wait_with_output().expect("wait"));
    r.fails(7, "line 2:");
    assert!(r.stderr.contains("UTF-8"), "{}", r.stderr);
    assert_eq!(
        s.on("db/main", &["collections"]).ndjson(),
        Vec::<serde_json::Value>::new(),
        "nothing inserted"
    );
}

#[test]
fn error_texts_name_the_file_the_limit_and_the_id_format() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on("db/main", &["import", "no-such-file.ndjson"])
        .fails(3, "cannot open 'no-such-file.ndjson'");
    let bad_id = s.on("db/main", &["get", "t", "not-a-uuid"]);
    bad_id.fails(7, "not a document id");
    assert!(
        bad_id.stderr.contains("hint: a document id is a UUID"),
        "{}",
        bad_id.stderr
    );
    let big = format!(r#"{{"s": "{}"}}"#, "x".repeat(17_000_000));
    let r = s.on_with_input("db/main", &["insert", "t", "-"], &big);
    r.fails(7, "bytes, over the limit of 16777216 bytes");
}
