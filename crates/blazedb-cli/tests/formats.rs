//! One result, written in the form asked for, through the real binary: CSV with a
//! header row for spreadsheets, tables (not pretty JSON) for `get`, `info`, `explain`
//! and `count` with `--format table`, and `--select` printing only some fields.

mod support;

use serde_json::json;
use support::Scratch;

fn seeded() -> (Scratch, String) {
    let s = Scratch::new();
    s.create("db/main", None);
    let id = support::id_in(
        &s.on(
            "db/main",
            &[
                "insert",
                "t",
                r#"{"n": 1, "title": "a, \"quoted\"", "a": {"b": 1, "c": 2}}"#,
            ],
        )
        .json(),
    );
    s.on("db/main", &["insert", "t", r#"{"n": 2, "tags": [1, 2]}"#])
        .json();
    (s, id)
}

#[test]
fn csv_output_has_a_header_row_and_quotes_what_needs_quoting() {
    let (s, id) = seeded();
    let out = s
        .on("db/main", &["--format", "csv", "query", "t", "--sort", "n"])
        .stdout;
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let headers: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(headers, ["id", "a", "n", "tags", "title"]);
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.expect("row")).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], id.as_str());
    assert_eq!(&rows[0][1], r#"{"b":1,"c":2}"#, "other values as JSON");
    assert_eq!(
        &rows[0][4], r#"a, "quoted""#,
        "text as it is, quoted by the CSV rules"
    );
    assert_eq!(&rows[1][3], "[1,2]");
    let count = s.on("db/main", &["--format", "csv", "count", "t"]).stdout;
    assert_eq!(count, "count\n2\n");
}

#[test]
fn tables_are_tables_for_get_info_explain_and_count() {
    let (s, id) = seeded();
    let got = s
        .on("db/main", &["--format", "table", "get", "t", &id])
        .stdout;
    assert!(got.contains("| id ") && got.contains("| title"), "{got}");
    assert!(!got.trim_start().starts_with('{'), "not JSON: {got}");
    for args in [&["info"][..], &["explain", "t", "-w", "n=1"]] {
        let mut all = vec!["--format", "table"];
        all.extend_from_slice(args);
        let out = s.on("db/main", &all).stdout;
        assert!(
            out.contains("| key") && out.contains("| value"),
            "{args:?}: {out}"
        );
    }
    let count = s.on("db/main", &["--format", "table", "count", "t"]).stdout;
    assert!(
        count.contains("| count |") && count.contains("| 2 "),
        "{count}"
    );
}

#[test]
fn select_prints_only_the_fields_asked_for_including_parts_of_maps() {
    let (s, _) = seeded();
    let docs = s
        .on(
            "db/main",
            &["query", "t", "-w", "n=1", "--select", "title,a.b"],
        )
        .ndjson();
    assert_eq!(
        docs[0]["fields"],
        json!({"title": "a, \"quoted\"", "a": {"b": 1}})
    );
    assert!(docs[0]["id"].is_string(), "the id stays");
    let both = s
        .on(
            "db/main",
            &[
                "query", "t", "-w", "n=1", "--select", "a.b", "--select", "a",
            ],
        )
        .ndjson();
    assert_eq!(both[0]["fields"], json!({"a": {"b": 1, "c": 2}}));
    s.on("db/main", &["query", "t", "--select", "a..b"])
        .fails(7, "invalid field name");
}

#[test]
fn import_csv_reads_rows_as_documents_and_a_query_in_csv_comes_back_the_same() {
    let (s, _) = seeded();
    let csv_out = s
        .on("db/main", &["--format", "csv", "query", "t", "--sort", "n"])
        .stdout;
    std::fs::write(s.path("t.csv"), &csv_out).expect("write");
    s.create("db/copy", None);
    let r = s
        .on(
            "db/copy",
            &["import", "--csv", "--collection", "t", "t.csv"],
        )
        .json();
    assert_eq!(r, json!({"imported": 2, "skipped": []}));
    let docs = |db: &str| s.on(db, &["query", "t", "--sort", "n"]).ndjson();
    assert_eq!(
        docs("db/copy"),
        docs("db/main"),
        "ids, types and values kept"
    );

    std::fs::write(
        s.path("typed.csv"),
        "name,zip,n,quoted\nann,02139,7,\"\"\"42\"\"\"\nbob,,,\n",
    )
    .expect("write");
    s.on(
        "db/copy",
        &["import", "--csv", "--collection", "p", "typed.csv"],
    )
    .json();
    let p = s.on("db/copy", &["query", "p", "-w", "name=ann"]).ndjson();
    assert_eq!(
        p[0]["fields"],
        json!({"name": "ann", "zip": "02139", "n": 7, "quoted": "42"}),
        "text that is not JSON stays text; JSON cells are typed"
    );
    let bob = s.on("db/copy", &["query", "p", "-w", "name=bob"]).ndjson();
    assert_eq!(
        bob[0]["fields"],
        json!({"name": "bob"}),
        "empty cells are left out"
    );

    std::fs::write(s.path("ragged.csv"), "a,b\n1,2,3\n").expect("write");
    s.on(
        "db/copy",
        &["import", "--csv", "--collection", "r", "ragged.csv"],
    )
    .fails(7, "line 2");
    std::fs::write(s.path("badid.csv"), "id,a\n1,2\nnot-an-id,3\n").expect("write");
    s.on(
        "db/copy",
        &["import", "--csv", "--collection", "r", "badid.csv"],
    )
    .fails(7, "CSV line 2");
    assert_eq!(
        s.on("db/copy", &["count", "r"]).json(),
        json!({"count": 0}),
        "nothing of a failed import is stored"
    );
}
