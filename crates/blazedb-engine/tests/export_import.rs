//! NDJSON export → import into a new database → identical contents, for every value
//! type; bad records are reported by line and import nothing unless asked to.

mod common;

use std::io::Cursor;

use blazedb_engine::{DocId, Document, Durability, Error, Fields, ImportOptions, Timestamp, Value};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(f64::MIN_POSITIVE)
        ]
        .prop_map(Value::Float),
        any::<String>().prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        any::<i64>().prop_map(|t| Value::Timestamp(Timestamp(t))),
        any::<[u8; 16]>().prop_map(|b| Value::Uuid(DocId::from_bytes(b).0)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z ]{1,6}", inner, 0..4).prop_map(Value::Map),
        ]
    })
}

fn fields() -> impl Strategy<Value = Fields> {
    proptest::collection::btree_map("[a-z][a-z0-9_]{0,5}", value(), 0..5)
}

fn options() -> blazedb_engine::OpenOptions {
    common::fast().durability(Durability::Eventual)
}

fn export(db: &blazedb_engine::Database) -> Vec<u8> {
    let mut out = Vec::new();
    db.export_ndjson(&mut out, None).expect("export");
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64),
        // Failures are kept beside this file (`*.proptest-regressions`) and replayed first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn export_then_import_reproduces_every_document_and_the_same_bytes(
        docs in proptest::collection::vec((0..3usize, fields()), 0..30)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = options().open(dir.path(), "a", common::PASSWORD).expect("open a");
        let colls = ["one", "two", "three"];
        for (c, f) in &docs {
            a.collection(colls[*c]).insert(Document { id: DocId::new(), fields: f.clone() }).expect("insert");
        }
        let bytes = export(&a);
        let b = options().open(dir.path(), "b", common::PASSWORD).expect("open b");
        let report = b.import_ndjson(&mut Cursor::new(&bytes), ImportOptions::default()).expect("import");
        prop_assert_eq!(report.imported, docs.len() as u64);
        prop_assert_eq!(&export(&b), &bytes, "export is canonical and import exact");
        for c in colls {
            let (da, db_) = (a.collection(c).all().expect("all"), b.collection(c).all().expect("all"));
            prop_assert_eq!(da.len(), db_.len());
            for (x, y) in da.iter().zip(&db_) {
                prop_assert_eq!(x.id, y.id);
                // NaN != NaN: compare canonical JSON of the fields.
                prop_assert_eq!(
                    blazedb_engine::json::fields_to_json(&x.fields),
                    blazedb_engine::json::fields_to_json(&y.fields)
                );
            }
        }
    }
}

#[test]
fn a_bad_record_is_reported_by_line_and_nothing_is_imported() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = options().open(dir.path(), "db", common::PASSWORD)?;
    // Capturing, so "nothing imported" covers the change log too.
    common::capture_changes(&db)?;
    let input = concat!(
        r#"{"collection":"c","fields":{"a":1}}"#,
        "\n",
        "\n",
        r#"{"collection":"c","fields":{"a.b":1}}"#,
        "\n",
        r#"not json"#,
        "\n",
        r#"{"collection":"c","id":"nope","fields":{}}"#,
        "\n",
        r#"{"collection":"c","fields":{"x":{"$bytes":"AAE="}},"extra":1}"#,
        "\n",
        r#"{"collection":"c","fields":{"x":{"$ts":5}}}"#,
        "\n",
    );
    match db.import_ndjson(&mut Cursor::new(input), ImportOptions::default()) {
        Err(Error::BadRecord { line: 3, .. }) => {}
        other => panic!("expected BadRecord at line 3, got {other:?}"),
    }
    assert_eq!(db.collection("c").count()?, 0, "nothing imported");
    assert_eq!(db.begin_read()?.last_seq()?, 0);
    let report = db.import_ndjson(
        &mut Cursor::new(input),
        ImportOptions {
            partial: true,
            ..ImportOptions::default()
        },
    )?;
    assert_eq!(report.imported, 2);
    assert_eq!(
        report.skipped.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
    assert_eq!(db.collection("c").count()?, 2);
    Ok(())
}

#[test]
fn importing_an_existing_id_fails_unless_replace_is_asked() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = options().open(dir.path(), "db", common::PASSWORD)?;
    let id = db.collection("c").insert(Document::new().with("v", 1i64))?;
    let line = format!(r#"{{"collection":"c","id":"{id}","fields":{{"v":2}}}}"#);
    // A conflict with what is stored, not a malformed record: it keeps its kind.
    assert!(matches!(
        db.import_ndjson(&mut Cursor::new(line.clone()), ImportOptions::default()),
        Err(Error::AlreadyExists { id: found, .. }) if found == id
    ));
    db.import_ndjson(
        &mut Cursor::new(line),
        ImportOptions {
            replace: true,
            ..ImportOptions::default()
        },
    )?;
    assert_eq!(
        db.collection("c")
            .get(id)?
            .and_then(|d| d.get("v").cloned()),
        Some(Value::Int(2))
    );
    Ok(())
}
