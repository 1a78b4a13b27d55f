//! `--where` conditions as a user types them, through the real binary: the grammar's
//! combinations select what they say, a condition that breaks it exits 7 with the
//! column, and a query that cannot mean what was typed does not pass for an empty
//! result (an unknown collection, and a comparison with another type than the field
//! holds, are noted on stderr).

mod support;

use serde_json::json;
use support::Scratch;

/// A database `db/main` with collection `c`: ten documents `{n, t: "x<n>"}`, the even
/// ones tagged `["even"]`, and `maybe` on the first three.
fn scratch() -> Scratch {
    let s = Scratch::new();
    s.create("db/main", None);
    let docs: String = (0..10)
        .map(|n| {
            let mut d = json!({"n": n, "t": format!("x{n}")});
            if n % 2 == 0 {
                d["tags"] = json!(["even"]);
            }
            if n < 3 {
                d["maybe"] = json!(null);
            }
            format!("{d}\n")
        })
        .collect();
    s.on_with_input("db/main", &["insert", "c", "-"], &docs)
        .ndjson();
    s
}

fn ns(s: &Scratch, conditions: &[&str]) -> Vec<i64> {
    let mut args = vec!["query", "c", "--sort", "n"];
    for c in conditions {
        args.extend(["--where", c]);
    }
    let mut out: Vec<i64> = s
        .on("db/main", &args)
        .ndjson()
        .iter()
        .map(|d| d["fields"]["n"].as_i64().expect("n"))
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn and_or_not_parentheses_in_contains_and_exists_select_what_they_say() {
    let s = scratch();
    assert_eq!(ns(&s, &["n=1 or n=2"]), [1, 2]);
    assert_eq!(ns(&s, &["n >= 2 AND n < 5"]), [2, 3, 4]);
    assert_eq!(ns(&s, &["not n > 1"]), [0, 1]);
    assert_eq!(
        ns(&s, &["(n = 1 or n = 8) and tags contains \"even\""]),
        [8]
    );
    assert_eq!(ns(&s, &["n=1 or n=8 and tags~even"]), [1, 8]);
    assert_eq!(ns(&s, &["n in [3, 4, 30]"]), [3, 4]);
    assert_eq!(ns(&s, &["maybe exists"]), [0, 1, 2]);
    assert_eq!(ns(&s, &["!maybe? and n < 5"]), [3, 4]);
    assert_eq!(ns(&s, &["t = x7"]), [7]);
    assert_eq!(
        ns(&s, &["n > 5", "not tags?"]),
        [7, 9],
        "several --where all hold"
    );
}

#[test]
fn a_condition_that_breaks_the_grammar_exits_7_naming_the_column() {
    let s = scratch();
    for (cond, col) in [
        ("n>>1", 3),
        ("n=1 or", 7),
        ("n = 1 n = 2", 7),
        ("(n = 1", 7),
        ("n in 5", 6),
        ("title=a b", 9),
    ] {
        let run = s.on("db/main", &["query", "c", "--where", cond]);
        run.fails(7, &format!("column {col} "));
        assert!(run.stderr.contains(cond), "{cond}: {}", run.stderr);
        assert!(run.stderr.contains("hint:"), "{cond}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{cond}: nothing printed as a result");
    }
}

#[test]
fn a_comparison_with_another_type_than_the_field_holds_is_noted_when_nothing_matched() {
    let s = scratch();
    let run = s.on("db/main", &["query", "c", "--where", r#"n>"1""#]);
    assert!(run.ndjson().is_empty());
    assert!(
        run.stderr
            .contains(r#"field 'n' holds number values in 'c', and "1" is a string"#),
        "{}",
        run.stderr
    );
    let count = s.on("db/main", &["count", "c", "--where", "t=1"]);
    assert_eq!(count.json(), json!({"count": 0}));
    assert!(
        count.stderr.contains("field 't' holds string values"),
        "{}",
        count.stderr
    );
    let fine = s.on("db/main", &["query", "c", "--where", "n>100"]);
    assert!(fine.ndjson().is_empty());
    assert!(
        fine.stderr.is_empty(),
        "same type, no note: {}",
        fine.stderr
    );
}

#[test]
fn an_unknown_collection_is_noted_on_stderr_naming_the_known_ones() {
    let s = scratch();
    for cmd in ["query", "count", "explain"] {
        let run = s.on("db/main", &[cmd, "cc"]);
        assert_eq!(run.code, 0, "{cmd}: a script still gets its empty result");
        assert!(
            run.stderr
                .contains("note: no collection 'cc' in this database (collections: c)"),
            "{cmd}: {}",
            run.stderr
        );
    }
    assert_eq!(
        s.on("db/main", &["count", "cc"]).json(),
        json!({"count": 0})
    );
    // A collection emptied by deletes still exists: its empty result is a real one.
    let id = s.on("db/main", &["insert", "gone", "{}"]).json()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    s.on("db/main", &["delete", "gone", &id]).json();
    let gone = s.on("db/main", &["count", "gone"]);
    assert_eq!(gone.json(), json!({"count": 0}));
    assert!(gone.stderr.is_empty(), "{}", gone.stderr);
}

#[test]
fn sort_orders_take_any_case_and_count_honours_a_limit_of_zero() {
    let s = scratch();
    let top = s
        .on(
            "db/main",
            &["query", "c", "--sort", "n:DESC", "--limit", "2"],
        )
        .ndjson();
    assert_eq!(top[0]["fields"]["n"], 9);
    assert_eq!(top[1]["fields"]["n"], 8);
    s.on("db/main", &["query", "c", "--sort", "n:up"])
        .fails(7, "'asc' or 'desc'");
    assert_eq!(
        s.on("db/main", &["count", "c", "--limit", "0"]).json(),
        json!({"count": 0})
    );
}

#[test]
fn explain_writes_the_filter_and_the_index_bounds_in_the_condition_language() {
    let s = scratch();
    s.on("db/main", &["index", "create", "by_n", "c", "n"])
        .json();
    let plan = s
        .on(
            "db/main",
            &["explain", "c", "--where", "n>=2 and (t=\"x2\" or t=x3)"],
        )
        .json();
    assert_eq!(plan["filter"], r#"n >= 2 and (t = "x2" or t = "x3")"#);
    assert_eq!(plan["bounds"], "n >= 2");
    assert_eq!(plan["index"], "by_n");
    let text = s
        .on("db/main", &["explain", "c", "--where", "t = \"x 1\""])
        .json();
    assert_eq!(text["filter"], r#"t = "x 1""#);
    let desc = s
        .on(
            "db/main",
            &["explain", "c", "--sort", "n:desc", "--limit", "3"],
        )
        .json();
    assert_eq!(
        desc["index"], "by_n",
        "a descending sort reads the index backwards"
    );
    assert_eq!(desc["sort_in_memory"], false);
    let top = s
        .on(
            "db/main",
            &["query", "c", "--sort", "n:desc", "--limit", "3"],
        )
        .ndjson();
    let top: Vec<_> = top.iter().map(|d| d["fields"]["n"].clone()).collect();
    assert_eq!(top, [json!(9), json!(8), json!(7)]);
}
