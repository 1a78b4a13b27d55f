use super::*;
use blazedb::Document;

fn doc(json: &str) -> Document {
    let j: serde_json::Value = serde_json::from_str(json).expect("test JSON");
    let mut d = Document::new();
    d.fields = blazedb::json::fields_from_json(&j).expect("fields");
    d
}

#[test]
fn conditions_match_what_they_say() {
    let d = doc(r#"{"age": 30, "name": "ann", "tags": ["a", "b"], "score": 2.5, "n": 1}"#);
    for (cond, expect) in [
        ("age=30", true),
        ("age = 30", true),
        ("age == 30", true),
        ("age!=30", false),
        ("age<=30", true),
        ("age<30", false),
        ("age>=30", true),
        ("age>29", true),
        ("name=ann", true),
        ("name=\"ann\"", true),
        ("name~nn", true),
        ("name contains nn", true),
        ("tags~a", true),
        ("tags~c", false),
        ("age?", true),
        ("age exists", true),
        ("!email?", true),
        ("not email exists", true),
        ("email?", false),
        ("age in [29, 30]", true),
        ("name in [\"bob\"]", false),
        ("score>2", true),
        ("n=1 or n=2", true),
        ("n=2 or n=3", false),
        ("n=1 and age=30", true),
        ("n=1 AND age=31", false),
        ("not n=1", false),
        ("NOT (n=2 or name=bob)", true),
        ("(n=2 or n=1) and (age>=30)", true),
        ("n=2 or n=1 and age=31", false),
        ("n=1 or n=2 and age=31", true),
        ("name=ann and not (tags contains \"c\")", true),
    ] {
        let f = parse_condition(cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
        assert_eq!(f.matches(&d), expect, "{cond}");
    }
}

#[test]
fn malformed_conditions_are_bad_input_naming_the_condition_and_the_column() {
    for (cond, col) in [
        ("n>>1", 3),
        ("n=1 or", 7),
        ("age", 4),
        ("=5", 1),
        ("tags in 5", 9),
        ("(n=1", 5),
        ("n=1)", 4),
        ("n=1 n=2", 5),
        ("n<", 3),
        ("n in [1", 6),
        ("n = \"open", 5),
        ("and", 1),
    ] {
        let e = parse_condition(cond).expect_err(cond);
        assert_eq!(e.exit, crate::exit::Exit::BadInput, "{cond}");
        assert!(e.message.contains(cond), "{cond}: {}", e.message);
        assert!(
            e.message.contains(&format!("column {col} ")),
            "{cond}: column {col} expected in: {}",
            e.message
        );
    }
}

#[test]
fn a_field_the_engine_refuses_is_bad_input_at_its_column() {
    let e = parse_condition("n=1 and $x=1").expect_err("$x");
    assert_eq!(e.exit, crate::exit::Exit::BadInput);
    assert!(e.message.contains("'$x' at column 9"), "{}", e.message);
}

#[test]
fn a_rendered_filter_parses_back_to_the_same_filter() {
    for cond in [
        "n = 1",
        "title = \"a b\"",
        "n >= 1 and n < 5",
        "n = 1 or (m = 2 and k != \"x\")",
        "tags contains \"a\"",
        "n in [1,2,\"x\"]",
        "n exists",
        "not (n = 1 or m = 2)",
        "not n = 1",
        "when = {\"$ts\":0}",
    ] {
        let f = parse_condition(cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
        let text = render(&f);
        let again = parse_condition(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(again, f, "{cond} -> {text}");
    }
    assert_eq!(render(&parse_condition("n>=1").expect("n>=1")), "n >= 1");
}
