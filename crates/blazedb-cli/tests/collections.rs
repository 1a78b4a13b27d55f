//! Collections as a whole, through the real binary: `drop` deletes every document of
//! one and forgets its name; dropping one that does not exist is "not found".

mod support;

use serde_json::json;
use support::Scratch;

#[test]
fn drop_deletes_every_document_and_forgets_the_name_and_an_unknown_one_is_not_found() {
    let s = Scratch::new();
    s.create("db/main", None);
    s.on_with_input(
        "db/main",
        &["insert", "old", "-"],
        "{\"n\": 1}\n{\"n\": 2}\n",
    )
    .ndjson();
    s.on("db/main", &["insert", "kept", "{}"]).json();
    assert_eq!(
        s.on("db/main", &["drop", "old"]).json(),
        json!({"dropped": "old", "documents": 2})
    );
    let names: Vec<String> = s
        .on("db/main", &["collections"])
        .ndjson()
        .iter()
        .map(|c| c["collection"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names, ["kept"]);
    let again = s.on("db/main", &["drop", "old"]);
    again.fails(3, "no collection 'old'");
    assert!(
        again.stderr.contains("collections: kept"),
        "{}",
        again.stderr
    );
    assert_eq!(
        s.on("db/main", &["count", "kept"]).json(),
        json!({"count": 1})
    );
}
