//! Differential property test of the query engine: random documents, random indexes
//! (created before or after the data, then maintained through patches, puts and
//! deletes), random queries. The planner's results must equal a naive filter-and-sort
//! over all documents, and every index must equal a rebuild from the documents.
//!
//! Cases: `PROPTEST_CASES` (default 128; long mode e.g. `PROPTEST_CASES=5000`).

mod common;

use std::cmp::Ordering;

use blazedb_engine::query::order::cmp_opt;
use blazedb_engine::{DocId, Document, Fields, Filter, IndexSpec, Order, Patch, Query, Value};
use proptest::prelude::*;

const C: &str = "items";

fn small_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..4).prop_map(Value::Int),
        prop_oneof![Just(-1.5f64), Just(0.0), Just(1.0), Just(2.5)].prop_map(Value::Float),
        prop_oneof![Just("a"), Just("b"), Just("ab"), Just("")].prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn doc_fields() -> impl Strategy<Value = Fields> {
    (
        proptest::option::of(small_value()),
        proptest::option::of(prop_oneof![Just("x"), Just("y"), Just("z")].prop_map(Value::from)),
        proptest::option::of(small_value()),
        proptest::option::of(proptest::collection::vec(small_value(), 0..3)),
    )
        .prop_map(|(a, b, cx, t)| {
            let mut f = Fields::new();
            if let Some(a) = a {
                f.insert("a".into(), a);
            }
            if let Some(b) = b {
                f.insert("b".into(), b);
            }
            if let Some(cx) = cx {
                f.insert("c".into(), Value::Map([("x".to_owned(), cx)].into()));
            }
            if let Some(t) = t {
                f.insert("t".into(), Value::Array(t));
            }
            f
        })
}

const PATHS: [&str; 4] = ["a", "b", "c.x", "t"];

fn filter() -> impl Strategy<Value = Filter> {
    let leaf = (0..PATHS.len(), 0..9usize, small_value()).prop_map(|(p, op, v)| {
        let p = PATHS[p];
        let r = match op {
            0 => Filter::eq(p, v),
            1 => Filter::ne(p, v),
            2 => Filter::lt(p, v),
            3 => Filter::le(p, v),
            4 => Filter::gt(p, v),
            5 => Filter::ge(p, v),
            6 => Filter::is_in(p, [v, Value::from("x")]),
            7 => Filter::contains(p, v),
            _ => Filter::exists(p, matches!(v, Value::Bool(true))),
        };
        r.expect("valid path")
    });
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Filter::and),
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Filter::or),
            inner.prop_map(Filter::not),
        ]
    })
}

/// A generated query, kept in parts so the oracle sees exactly what the engine sees.
#[derive(Debug, Clone)]
struct QSpec {
    filter: Option<Filter>,
    sort: Vec<(String, bool)>,
    limit: Option<usize>,
    offset: usize,
}

impl QSpec {
    fn build(&self) -> Query {
        let mut q = Query::new(C);
        if let Some(f) = &self.filter {
            q = q.filter(f.clone());
        }
        for (p, asc) in &self.sort {
            q = q
                .sort(p, if *asc { Order::Asc } else { Order::Desc })
                .expect("valid path");
        }
        if let Some(l) = self.limit {
            q = q.limit(l);
        }
        q.offset(self.offset)
    }
}

fn query() -> impl Strategy<Value = QSpec> {
    (
        proptest::option::of(filter()),
        proptest::collection::vec((0..3usize, any::<bool>()), 0..3),
        proptest::option::of(0..6usize),
        0..3usize,
    )
        .prop_map(|(filter, sort, limit, offset)| QSpec {
            filter,
            sort: sort
                .into_iter()
                .map(|(p, asc)| (PATHS[p].to_owned(), asc))
                .collect(),
            limit,
            offset,
        })
}

fn specs() -> Vec<IndexSpec> {
    vec![
        IndexSpec::new("by_a", C, &["a"]),
        IndexSpec::new("by_b", C, &["b"]),
        IndexSpec::new("by_b_a", C, &["b", "a"]),
        IndexSpec::new("by_cx", C, &["c.x"]),
    ]
}

/// The naive oracle: filter every document, sort by the keys then id, offset, limit.
fn naive(all: &[Document], spec: &QSpec) -> Vec<Document> {
    let (filter, sort, limit, offset) = (spec.filter.as_ref(), &spec.sort, spec.limit, spec.offset);
    let mut hits: Vec<Document> = all
        .iter()
        .filter(|d| filter.is_none_or(|f| f.matches(d)))
        .cloned()
        .collect();
    let paths: Vec<(blazedb_engine::query::FieldPath, bool)> = sort
        .iter()
        .map(|(p, asc)| {
            (
                blazedb_engine::query::FieldPath::parse(p).expect("path"),
                *asc,
            )
        })
        .collect();
    hits.sort_by(|x, y| {
        for (p, asc) in &paths {
            let o = cmp_opt(p.lookup(x), p.lookup(y));
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        x.id.cmp(&y.id)
    });
    hits.into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

#[derive(Debug, Clone)]
enum Edit {
    Patch(usize, Fields),
    Put(usize, Fields),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..40usize, doc_fields()).prop_map(|(i, f)| Edit::Patch(i, f)),
        (0..40usize, doc_fields()).prop_map(|(i, f)| Edit::Put(i, f)),
        (0..40usize).prop_map(Edit::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(128),
        // Failures are kept beside this file (`*.proptest-regressions`) and replayed first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn planner_results_equal_a_naive_filter_and_sort_and_indexes_equal_a_rebuild(
        docs in proptest::collection::vec(doc_fields(), 0..40),
        index_mask in 0u8..16,
        index_first in any::<bool>(),
        edits in proptest::collection::vec(edit(), 0..12),
        queries in proptest::collection::vec(query(), 1..12),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        // Durability is proven elsewhere; fsyncs would only slow this test down.
        let db = common::fast().durability(blazedb_engine::Durability::Eventual).open(dir.path(), "q", common::PASSWORD).expect("open");
        let make_indexes = || -> blazedb_engine::Result<()> {
            for (i, s) in specs().iter().enumerate() {
                if index_mask & (1 << i) != 0 {
                    db.create_index(s)?;
                }
            }
            Ok(())
        };
        if index_first {
            make_indexes().expect("indexes");
        }
        let ids: Vec<DocId> = (0..docs.len()).map(|i| DocId::from_bytes([i as u8 + 1; 16])).collect();
        db.collection(C).insert_many(docs.iter().zip(&ids).map(|(f, id)| Document { id: *id, fields: f.clone() })).expect("insert");
        if !index_first {
            make_indexes().expect("indexes");
        }
        for e in &edits {
            let c = db.collection(C);
            let pick = |i: usize| ids.get(i % ids.len().max(1)).copied();
            match e {
                Edit::Patch(i, f) => if let Some(id) = pick(*i) {
                    let _ = c.patch(id, &Patch { set: f.clone(), unset: vec!["t".into()] });
                },
                Edit::Put(i, f) => if let Some(id) = pick(*i) {
                    c.put(Document { id, fields: f.clone() }).expect("put");
                },
                Edit::Delete(i) => if let Some(id) = pick(*i) {
                    let _ = c.delete(id);
                },
            }
        }
        let r = db.begin_read().expect("read");
        r.check_indexes().expect("indexes agree with documents");
        let all = r.all(C).expect("all");
        for spec in &queries {
            let q = spec.build();
            let got = r.query(&q).expect("query");
            let want = naive(&all, spec);
            let plan = r.explain(&q).expect("explain");
            prop_assert_eq!(&got, &want, "query {:?}\nplan {}", q, plan);
            prop_assert_eq!(r.count_query(&q).expect("count"), want.len() as u64);
        }
    }
}
