//! Model-based property test: random sequences of operations, transactions (committed
//! or rolled back) and reopens run against the engine and against an obviously-correct
//! in-memory model (`BTreeMap`). After every step the engine's full contents, catalog
//! and change log must equal the model's.
//!
//! Cases: `PROPTEST_CASES` (default 256 here; long mode e.g. `PROPTEST_CASES=2000`).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use blazedb_engine::{
    ChangeOp, Database, DocId, Document, Durability, Error, Fields, Patch, Timestamp, Value,
};
use proptest::prelude::*;

const COLLECTIONS: [&str; 3] = ["alpha", "beta", "gamma"];
const IDS: u8 = 6;

#[derive(Clone, Debug)]
enum Op {
    Insert(usize, u8, Fields),
    Put(usize, u8, Fields),
    Patch(usize, u8, Fields, Vec<String>),
    Delete(usize, u8),
}

#[derive(Clone, Debug)]
enum Step {
    /// Operations in one transaction; committed or rolled back; durable or eventual.
    Txn(Vec<Op>, bool, bool),
    DropCollection(usize),
    Reopen,
}

fn id(n: u8) -> DocId {
    DocId::from_bytes([n; 16])
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-1e12f64..1e12).prop_map(Value::Float),
        "[a-zé ]{0,12}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
        any::<i64>().prop_map(|t| Value::Timestamp(Timestamp(t))),
        any::<[u8; 16]>().prop_map(|b| Value::Uuid(DocId::from_bytes(b).0)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-c]{1,2}", inner, 0..3).prop_map(Value::Map),
        ]
    })
}

fn fields() -> impl Strategy<Value = Fields> {
    proptest::collection::btree_map("[a-e]", value(), 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..COLLECTIONS.len();
    prop_oneof![
        (c.clone(), 0..IDS, fields()).prop_map(|(c, i, f)| Op::Insert(c, i, f)),
        (c.clone(), 0..IDS, fields()).prop_map(|(c, i, f)| Op::Put(c, i, f)),
        (
            c.clone(),
            0..IDS,
            fields(),
            proptest::collection::vec("[a-e]", 0..3)
        )
            .prop_map(|(c, i, f, u)| Op::Patch(c, i, f, u)),
        (c, 0..IDS).prop_map(|(c, i)| Op::Delete(c, i)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (proptest::collection::vec(op(), 1..5), proptest::bool::weighted(0.8), any::<bool>())
            .prop_map(|(ops, commit, durable)| Step::Txn(ops, commit, durable)),
        1 => (0..COLLECTIONS.len()).prop_map(Step::DropCollection),
        1 => Just(Step::Reopen),
    ]
}

/// The reference: documents, catalog and change log, maintained by the plain rules.
#[derive(Clone, Default)]
struct Model {
    docs: BTreeMap<(String, DocId), Fields>,
    collections: BTreeSet<String>,
    log: Vec<(u64, String, DocId, ChangeOp)>,
    txn_of: Vec<u64>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    NotFound,
    AlreadyExists,
    Invalid,
}

impl Model {
    fn capture(&mut self, txn: u64, c: &str, id: DocId, op: ChangeOp) {
        let seq = self.log.len() as u64 + 1;
        self.log.push((seq, c.to_owned(), id, op));
        self.txn_of.push(txn);
    }

    fn apply(&mut self, txn: u64, op: &Op) -> Outcome {
        match op {
            Op::Insert(c, i, f) => {
                let (c, key) = (COLLECTIONS[*c], (COLLECTIONS[*c].to_owned(), id(*i)));
                if self.docs.contains_key(&key) {
                    return Outcome::AlreadyExists;
                }
                self.collections.insert(c.to_owned());
                self.docs.insert(key, f.clone());
                self.capture(txn, c, id(*i), ChangeOp::Insert { fields: f.clone() });
            }
            Op::Put(c, i, f) => {
                let (c, key) = (COLLECTIONS[*c], (COLLECTIONS[*c].to_owned(), id(*i)));
                self.collections.insert(c.to_owned());
                let op = match self.docs.insert(key, f.clone()) {
                    None => ChangeOp::Insert { fields: f.clone() },
                    Some(_) => ChangeOp::Replace { fields: f.clone() },
                };
                self.capture(txn, c, id(*i), op);
            }
            Op::Patch(c, i, set, unset) => {
                if unset.iter().any(|u| set.contains_key(u)) {
                    return Outcome::Invalid;
                }
                let (c, key) = (COLLECTIONS[*c], (COLLECTIONS[*c].to_owned(), id(*i)));
                let Some(doc) = self.docs.get_mut(&key) else {
                    return Outcome::NotFound;
                };
                let removed: Vec<String> = unset
                    .iter()
                    .filter(|u| doc.remove(*u).is_some())
                    .cloned()
                    .collect();
                if set.is_empty() && removed.is_empty() {
                    return Outcome::Ok;
                }
                doc.extend(set.clone());
                self.capture(
                    txn,
                    c,
                    id(*i),
                    ChangeOp::Update {
                        set: set.clone(),
                        unset: removed,
                    },
                );
            }
            Op::Delete(c, i) => {
                let (c, key) = (COLLECTIONS[*c], (COLLECTIONS[*c].to_owned(), id(*i)));
                if self.docs.remove(&key).is_none() {
                    return Outcome::NotFound;
                }
                self.capture(txn, c, id(*i), ChangeOp::Delete);
            }
        }
        Outcome::Ok
    }
}

fn run_op(tx: &mut blazedb_engine::WriteTxn<'_>, op: &Op) -> Outcome {
    let r = match op {
        Op::Insert(c, i, f) => tx
            .insert(
                COLLECTIONS[*c],
                Document {
                    id: id(*i),
                    fields: f.clone(),
                },
            )
            .map(drop),
        Op::Put(c, i, f) => tx
            .put(
                COLLECTIONS[*c],
                Document {
                    id: id(*i),
                    fields: f.clone(),
                },
            )
            .map(drop),
        Op::Patch(c, i, set, unset) => {
            let p = Patch {
                set: set.clone(),
                unset: unset.clone(),
            };
            tx.patch(COLLECTIONS[*c], id(*i), &p).map(drop)
        }
        Op::Delete(c, i) => tx.delete(COLLECTIONS[*c], id(*i)),
    };
    match r {
        Ok(()) => Outcome::Ok,
        Err(Error::NotFound { .. }) => Outcome::NotFound,
        Err(Error::AlreadyExists { .. }) => Outcome::AlreadyExists,
        Err(Error::InvalidValue { .. }) => Outcome::Invalid,
        Err(e) => panic!("unexpected error for {op:?}: {e}"),
    }
}

/// The engine's whole visible state equals the model's.
fn assert_matches(db: &Database, model: &Model) -> Result<(), TestCaseError> {
    let r = db.begin_read().expect("read");
    let colls: BTreeSet<String> = r.collections().expect("collections").into_iter().collect();
    prop_assert_eq!(&colls, &model.collections);
    for c in COLLECTIONS {
        let got: Vec<(DocId, Fields)> = r
            .all(c)
            .expect("all")
            .into_iter()
            .map(|d| (d.id, d.fields))
            .collect();
        let want: Vec<(DocId, Fields)> = model
            .docs
            .iter()
            .filter(|((mc, _), _)| mc == c)
            .map(|((_, i), f)| (*i, f.clone()))
            .collect();
        prop_assert_eq!(got, want, "collection {}", c);
    }
    let log = r.changes_after(0, usize::MAX).expect("changes");
    let got: Vec<(u64, String, DocId, ChangeOp)> = log
        .iter()
        .map(|c| (c.seq, c.collection.clone(), c.id, c.op.clone()))
        .collect();
    prop_assert_eq!(&got, &model.log);
    let txns: Vec<u64> = log.iter().map(|c| c.txn).collect();
    prop_assert_eq!(&txns, &model.txn_of);
    prop_assert_eq!(r.last_seq().expect("last_seq"), model.log.len() as u64);
    Ok(())
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    // Capturing, so the log is checked against the model; reopens below capture because
    // the flag is stored.
    let mut db = Some(common::open_capturing(dir.path(), "model").expect("open"));
    let mut model = Model::default();
    for step in steps {
        let handle = db.as_ref().expect("open database");
        match step {
            Step::Txn(ops, commit, durable) => {
                let mut tx = handle.begin_write().expect("begin");
                tx.set_durability(if *durable {
                    Durability::Immediate
                } else {
                    Durability::Eventual
                });
                let mut next = model.clone();
                let txn = next.log.len() as u64 + 1;
                for op in ops {
                    let want = next.apply(txn, op);
                    prop_assert_eq!(run_op(&mut tx, op), want, "{:?}", op);
                }
                if *commit {
                    tx.commit().expect("commit");
                    model = next;
                } else {
                    tx.rollback();
                }
            }
            Step::DropCollection(c) => {
                let name = COLLECTIONS[*c];
                let mut tx = handle.begin_write().expect("begin");
                let n = tx.drop_collection(name).expect("drop");
                tx.commit().expect("commit");
                let txn = model.log.len() as u64 + 1;
                let ids: Vec<DocId> = model
                    .docs
                    .keys()
                    .filter(|(mc, _)| mc == name)
                    .map(|(_, i)| *i)
                    .collect();
                prop_assert_eq!(n, ids.len() as u64);
                for i in ids {
                    model.docs.remove(&(name.to_owned(), i));
                    model.capture(txn, name, i, ChangeOp::Delete);
                }
                model.collections.remove(name);
            }
            Step::Reopen => {
                drop(db.take());
                db = Some(common::open(dir.path(), "model").expect("reopen"));
            }
        }
        assert_matches(db.as_ref().expect("open database"), &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256),
        // Failures are kept beside this file (`*.proptest-regressions`) and replayed first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_agrees_with_a_btreemap_model_across_transactions_and_reopens(
        steps in proptest::collection::vec(step(), 1..25)
    ) {
        run(&steps)?;
    }
}
