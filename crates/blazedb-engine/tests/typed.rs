//! The serde typed layer maps Rust types to documents and back, and refuses what does
//! not fit with a typed error.

mod common;

use std::collections::BTreeMap;

use blazedb_engine::{DocId, Document, Error, Value, from_document_fields, to_document_fields};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Status {
    Open,
    Closed { reason: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Bug {
    title: String,
    severity: u8,
    score: f64,
    assignee: Option<String>,
    tags: Vec<String>,
    status: Status,
    extra: BTreeMap<String, i64>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
}

fn sample() -> Bug {
    Bug {
        title: "crash".into(),
        severity: 3,
        score: 0.5,
        assignee: None,
        tags: vec!["ui".into(), "p1".into()],
        status: Status::Closed {
            reason: "fixed".into(),
        },
        extra: BTreeMap::from([("votes".into(), 7)]),
        blob: vec![0, 1, 255],
    }
}

#[test]
fn typed_values_round_trip_through_the_database() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let bugs = db.typed::<Bug>("bugs");
    let id = bugs.insert(&sample())?;
    assert_eq!(bugs.get(id)?, Some(sample()));
    let mut open = sample();
    open.status = Status::Open;
    open.assignee = Some("ana".into());
    bugs.put(id, &open)?;
    assert_eq!(bugs.all()?, vec![(id, open)]);
    bugs.delete(id)?;
    assert_eq!(bugs.get(id)?, None);
    Ok(())
}

#[test]
fn typed_fields_use_the_natural_value_kinds() -> blazedb_engine::Result<()> {
    let f = to_document_fields(&sample())?;
    assert_eq!(f.get("severity"), Some(&Value::Int(3)));
    assert_eq!(f.get("assignee"), Some(&Value::Null));
    assert_eq!(
        f.get("tags"),
        Some(&Value::Array(vec!["ui".into(), "p1".into()]))
    );
    assert!(matches!(f.get("status"), Some(Value::Map(_))));
    assert_eq!(f.get("blob"), Some(&Value::Bytes(vec![0, 1, 255])));
    Ok(())
}

#[test]
fn values_that_do_not_fit_are_mapping_errors() -> blazedb_engine::Result<()> {
    #[derive(Serialize)]
    struct Big {
        n: u64,
    }
    assert!(matches!(
        to_document_fields(&Big { n: u64::MAX }),
        Err(Error::Mapping { .. })
    ));
    assert!(
        matches!(to_document_fields(&42i64), Err(Error::Mapping { .. })),
        "not a map"
    );
    let wrong = Document::new().with("title", 5i64).fields;
    assert!(matches!(
        from_document_fields::<Bug>(wrong),
        Err(Error::Mapping { .. })
    ));

    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let id = db
        .collection("bugs")
        .insert(Document::with_id(DocId::new()).with("title", 1i64))?;
    assert!(matches!(
        db.typed::<Bug>("bugs").get(id),
        Err(Error::Mapping { .. })
    ));
    Ok(())
}

#[test]
fn typed_queries_return_values_in_query_order() -> blazedb_engine::Result<()> {
    use blazedb_engine::{Filter, Order, Query};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let bugs = db.typed::<Bug>("bugs");
    for sev in [3u8, 1, 2] {
        bugs.insert(&Bug {
            severity: sev,
            ..sample()
        })?;
    }
    let q = Query::new("bugs")
        .filter(Filter::ge("severity", 2i64)?)
        .sort("severity", Order::Desc)?;
    let got: Vec<u8> = bugs
        .query(&q)?
        .into_iter()
        .map(|(_, b)| b.severity)
        .collect();
    assert_eq!(got, vec![3, 2]);
    assert!(matches!(
        bugs.query(&Query::new("other")),
        Err(Error::InvalidValue { .. })
    ));
    Ok(())
}
