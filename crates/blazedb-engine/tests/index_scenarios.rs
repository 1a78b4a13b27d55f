//! Secondary indexes, scenario by scenario: the planner picks them, they stay correct
//! through writes, rollbacks and reopen, unique indexes refuse duplicates.

mod common;

use blazedb_engine::internal::{SyncDatabase, SyncWrite};
use blazedb_engine::query::Access;
use blazedb_engine::{
    Database, DocId, Document, Error, Filter, IndexNote, IndexSpec, Order, Patch, Query, Value,
};

fn seeded(dir: &std::path::Path) -> blazedb_engine::Result<Database> {
    let db = common::open(dir, "db")?;
    db.collection("bugs").insert_many((0..100i64).map(|i| {
        Document::new()
            .with("status", if i % 4 == 0 { "open" } else { "closed" })
            .with("severity", i % 5)
            .with("title", format!("bug {i}"))
    }))?;
    Ok(db)
}

#[test]
fn equality_and_range_queries_use_a_matching_index_and_return_the_same_documents()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = seeded(dir.path())?;
    let q = Query::new("bugs")
        .filter(Filter::and([
            Filter::eq("status", "open")?,
            Filter::ge("severity", 3i64)?,
        ]))
        .sort("severity", Order::Asc)?;
    let before = db.query(&q)?;
    assert_eq!(db.explain(&q)?.access, Access::FullScan);
    db.create_index(&IndexSpec::new(
        "by_status_severity",
        "bugs",
        &["status", "severity"],
    ))?;
    let plan = db.explain(&q)?;
    assert!(
        matches!(plan.access, Access::Index { ref name, .. } if name == "by_status_severity"),
        "{plan}"
    );
    assert_eq!(
        plan.estimated_reads,
        before.len() as u64,
        "the range holds exactly the matches"
    );
    assert!(!plan.sort_in_memory, "index order is the requested order");
    assert_eq!(db.query(&q)?, before);
    assert_eq!(before.len(), 10);
    Ok(())
}

#[test]
fn indexes_follow_inserts_patches_deletes_and_ignore_rolled_back_writes()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = seeded(dir.path())?;
    db.create_index(&IndexSpec::new("by_severity", "bugs", &["severity"]))?;
    let sev9 = Query::new("bugs").filter(Filter::eq("severity", 9i64)?);
    let id = db
        .collection("bugs")
        .insert(Document::new().with("severity", 9i64))?;
    assert_eq!(db.count_query(&sev9)?, 1);
    db.collection("bugs")
        .patch(id, &Patch::new().set("severity", 8i64))?;
    assert_eq!(db.count_query(&sev9)?, 0);
    let mut tx = db.begin_write()?;
    tx.patch("bugs", id, &Patch::new().set("severity", 9i64))?;
    drop(tx);
    assert_eq!(db.count_query(&sev9)?, 0, "rolled back");
    db.collection("bugs").delete(id)?;
    assert_eq!(
        db.count_query(&Query::new("bugs").filter(Filter::eq("severity", 8i64)?))?,
        0
    );
    db.begin_read()?.check_indexes()?;
    drop(db);
    let db = common::open(dir.path(), "db")?;
    let info = db.begin_read()?.check_indexes()?;
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].entries, 100);
    Ok(())
}

#[test]
fn unique_indexes_refuse_duplicates_with_a_typed_error_and_write_nothing()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let users = db.collection("users");
    let ana = users.insert(Document::new().with("email", "ana@x"))?;
    db.create_index(&IndexSpec::new("by_email", "users", &["email"]).unique())?;
    let dup = users.insert(Document::new().with("email", "ana@x"));
    assert!(
        matches!(dup, Err(Error::UniqueViolation { ref index, existing }) if index == "by_email" && existing == ana)
    );
    let bob = users.insert(Document::new().with("email", "bob@x"))?;
    assert!(matches!(
        users.patch(bob, &Patch::new().set("email", "ana@x")),
        Err(Error::UniqueViolation { .. })
    ));
    users.patch(ana, &Patch::new().set("email", "ana@x"))?; // same document, same value: fine
    // Within one transaction the violation leaves the transaction usable.
    let mut tx = db.begin_write()?;
    assert!(matches!(
        tx.insert("users", Document::new().with("email", "bob@x")),
        Err(Error::UniqueViolation { .. })
    ));
    tx.insert("users", Document::new().with("email", "cy@x"))?;
    tx.commit()?;
    assert_eq!(users.count()?, 3);
    db.begin_read()?.check_indexes()?;
    // Building a unique index over duplicates fails and creates nothing.
    users.insert(Document::new().with("team", "a"))?;
    users.insert(Document::new().with("team", "a"))?;
    assert!(matches!(
        db.create_index(&IndexSpec::new("by_team", "users", &["team"]).unique()),
        Err(Error::UniqueViolation { .. })
    ));
    assert_eq!(db.begin_read()?.indexes()?.len(), 1);
    Ok(())
}

#[test]
fn index_specs_are_validated_and_drop_removes_the_index() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = seeded(dir.path())?;
    assert!(matches!(
        db.create_index(&IndexSpec::new("x", "bugs", &[])),
        Err(Error::InvalidValue { .. })
    ));
    assert!(matches!(
        db.create_index(&IndexSpec::new("bad name", "bugs", &["a"])),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        db.create_index(&IndexSpec::new("x", "bugs", &["a..b"])),
        Err(Error::InvalidName { .. })
    ));
    db.create_index(&IndexSpec::new("x", "bugs", &["severity"]))?;
    assert!(matches!(
        db.create_index(&IndexSpec::new("x", "bugs", &["title"])),
        Err(Error::IndexExists { name }) if name == "x"
    ));
    assert!(db.drop_index("x")?);
    assert!(!db.drop_index("x")?);
    let q = Query::new("bugs").filter(Filter::eq("severity", 1i64)?);
    assert_eq!(db.explain(&q)?.access, Access::FullScan);
    assert_eq!(db.count_query(&q)?, 20);
    Ok(())
}

#[test]
fn a_large_index_splits_into_many_nodes_and_stays_ordered() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::fast()
        .durability(blazedb_engine::Durability::Eventual)
        .open(dir.path(), "db", common::PASSWORD)?;
    db.create_index(&IndexSpec::new("by_n", "nums", &["n"]))?;
    // Inserted in a scrambled order, one by one, so leaves and branches split repeatedly.
    let mut tx = db.begin_write()?;
    for i in 0..6000i64 {
        let n = (i * 7919) % 6000;
        tx.insert(
            "nums",
            Document::with_id(DocId::from_bytes((n as u128).to_be_bytes())).with("n", n),
        )?;
    }
    tx.commit()?;
    let q = Query::new("nums")
        .filter(Filter::and([
            Filter::ge("n", 1000i64)?,
            Filter::lt("n", 1010i64)?,
        ]))
        .sort("n", Order::Asc)?;
    let got: Vec<Value> = db
        .query(&q)?
        .into_iter()
        .filter_map(|d| d.get("n").cloned())
        .collect();
    assert_eq!(got, (1000..1010i64).map(Value::Int).collect::<Vec<_>>());
    assert_eq!(db.explain(&q)?.estimated_reads, 10);
    let top = Query::new("nums").sort("n", Order::Asc)?.limit(3);
    assert!(
        matches!(db.explain(&top)?.access, Access::Index { .. }),
        "sort + limit reads the index in order"
    );
    assert_eq!(db.query(&top)?.len(), 3);
    db.begin_read()?.check_indexes()?;
    Ok(())
}

#[test]
fn missing_and_null_values_never_conflict_in_a_unique_index() -> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    db.create_index(&IndexSpec::new("by_email", "users", &["email"]).unique())?;
    let users = db.collection("users");
    users.insert(Document::new())?;
    users.insert(Document::new())?;
    users.insert(Document::new().with("email", Value::Null))?;
    users.insert(Document::new().with("email", Value::Null))?;
    users.insert(Document::new().with("email", "a@x"))?;
    assert!(matches!(
        users.insert(Document::new().with("email", "a@x")),
        Err(Error::UniqueViolation { .. })
    ));
    db.drop_index("by_email")?;
    db.create_index(&IndexSpec::new("by_email", "users", &["email"]).unique())?;
    assert_eq!(users.count()?, 5);
    Ok(())
}

/// Stores `doc` the way the sync layer stores a merged document.
fn put_merged(db: &Database, doc: Document) -> blazedb_engine::Result<Vec<IndexNote>> {
    let mut tx = db.begin_apply()?;
    let notes = tx.put_merged("users", doc)?;
    tx.commit()?;
    Ok(notes)
}

#[test]
fn a_merged_document_breaking_a_unique_index_is_stored_indexed_and_reported_while_local_writes_stay_refused()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let users = db.collection("users");
    db.create_index(&IndexSpec::new("by_email", "users", &["email"]).unique())?;
    let ana = users.insert(Document::new().with("email", "ana@x"))?;
    let other = Document::new().with("email", "ana@x").with("from", "sync");
    let notes = put_merged(&db, other.clone())?;
    assert_eq!(
        notes,
        vec![IndexNote::UniqueShared {
            index: "by_email".into(),
            existing: ana
        }]
    );
    assert_eq!(users.get(other.id)?, Some(other.clone()));
    db.begin_read()?.check_indexes()?;
    let q = Query::new("users").filter(Filter::eq("email", "ana@x")?);
    assert!(matches!(db.explain(&q)?.access, Access::Index { .. }));
    let mut found: Vec<DocId> = db.query(&q)?.into_iter().map(|d| d.id).collect();
    found.sort();
    let mut both = vec![ana, other.id];
    both.sort();
    assert_eq!(found, both, "the index finds both holders of the value");
    // Local writes are still held to the constraint; either document can still change.
    assert!(matches!(
        users.insert(Document::new().with("email", "ana@x")),
        Err(Error::UniqueViolation { .. })
    ));
    users.patch(other.id, &Patch::new().set("from", "edited"))?;
    users.patch(ana, &Patch::new().set("email", "ana@y"))?;
    db.begin_read()?.check_indexes()?;
    Ok(())
}

#[test]
fn a_merged_document_with_values_too_long_for_an_index_key_is_found_by_every_query_it_matches()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = common::open(dir.path(), "db")?;
    let users = db.collection("users");
    db.create_index(&IndexSpec::new("by_name", "users", &["name"]))?;
    db.create_index(&IndexSpec::new("by_name_n", "users", &["name", "n"]))?;
    // Long values sharing a prefix longer than a key, short ones around them.
    let prefix = "m".repeat(1_500);
    let long = |tail: &str| format!("{prefix}{tail}");
    let mut ids = Vec::new();
    for (i, name) in [long("c"), long("a"), long(""), long("b")]
        .iter()
        .enumerate()
    {
        let d = Document::new()
            .with("name", name.as_str())
            .with("n", i as i64);
        ids.push(d.id);
        let notes = put_merged(&db, d)?;
        assert_eq!(notes.len(), 2, "both indexes cut the key: {notes:?}");
        assert!(
            notes
                .iter()
                .all(|n| matches!(n, IndexNote::Truncated { .. }))
        );
    }
    for (i, name) in ["a", "m", "mz", "z"].iter().enumerate() {
        users.insert(Document::new().with("name", *name).with("n", 10 + i as i64))?;
    }
    db.begin_read()?.check_indexes()?;
    let queries = [
        Query::new("users").filter(Filter::eq("name", long("a").as_str())?),
        Query::new("users").filter(Filter::eq("name", long("").as_str())?),
        Query::new("users").filter(Filter::eq("name", "m")?),
        Query::new("users").filter(Filter::ge("name", long("b").as_str())?),
        Query::new("users").filter(Filter::lt("name", long("b").as_str())?),
        Query::new("users").filter(Filter::gt("name", "m")?),
        Query::new("users").filter(Filter::lt("name", "mz")?),
        Query::new("users").filter(Filter::and([
            Filter::eq("name", long("c").as_str())?,
            Filter::ge("n", 0i64)?,
        ])),
        Query::new("users").sort("name", Order::Asc)?.limit(3),
        Query::new("users").sort("name", Order::Asc)?.limit(6),
    ];
    let mut with_index = Vec::new();
    for q in &queries {
        assert!(
            matches!(db.explain(q)?.access, Access::Index { .. }),
            "{q:?} uses an index"
        );
        with_index.push(db.query(q)?);
    }
    // Local writes: changing another field of such a document works; a new long value
    // is refused as before.
    users.patch(ids[0], &Patch::new().set("n", 99i64))?;
    users.patch(ids[0], &Patch::new().set("n", 0i64))?;
    assert!(matches!(
        users.insert(Document::new().with("name", long("d").as_str())),
        Err(Error::TooLarge { .. })
    ));
    db.begin_read()?.check_indexes()?;
    db.drop_index("by_name")?;
    db.drop_index("by_name_n")?;
    for (q, got) in queries.iter().zip(&with_index) {
        assert_eq!(db.explain(q)?.access, Access::FullScan);
        assert_eq!(
            &db.query(q)?,
            got,
            "{q:?}: the index answers as a full scan"
        );
        assert!(!got.is_empty(), "{q:?} matches something");
    }
    Ok(())
}

#[test]
fn a_descending_sort_reads_the_index_backwards_and_keeps_ties_in_id_order()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = seeded(dir.path())?;
    let q = |limit: usize| -> blazedb_engine::Result<Query> {
        Ok(Query::new("bugs")
            .filter(Filter::eq("status", "closed")?)
            .sort("severity", Order::Desc)?
            .limit(limit))
    };
    // Severities 0..5 over 75 closed bugs: 15 per value, so a limit of 20 ends inside
    // the ties of severity 3, which must still be the lowest ids among them.
    let scanned: Vec<_> = [1, 20, 75].iter().map(|&l| db.query(&q(l)?)).collect();
    db.create_index(&IndexSpec::new(
        "by_status_severity",
        "bugs",
        &["status", "severity"],
    ))?;
    for (i, &limit) in [1, 20, 75].iter().enumerate() {
        let plan = db.explain(&q(limit)?)?;
        assert!(matches!(plan.access, Access::Index { .. }), "{plan}");
        assert!(
            !plan.sort_in_memory,
            "the index read backwards is the order: {plan}"
        );
        let indexed = db.query(&q(limit)?)?;
        assert_eq!(
            &indexed,
            scanned[i].as_ref().expect("scan"),
            "limit {limit}"
        );
    }
    let top = db.query(&q(20)?)?;
    assert!(
        top[..15]
            .iter()
            .all(|d| d.fields["severity"] == Value::Int(4))
    );
    let ties: Vec<DocId> = top[15..].iter().map(|d| d.id).collect();
    let mut sorted = ties.clone();
    sorted.sort();
    assert_eq!(ties, sorted, "equal values in ascending id order");
    Ok(())
}

#[test]
fn a_write_transaction_queries_its_own_uncommitted_writes_with_and_without_an_index()
-> blazedb_engine::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = seeded(dir.path())?;
    let q = Query::new("bugs").filter(Filter::eq("status", "new")?);
    for indexed in [false, true] {
        if indexed {
            db.create_index(&IndexSpec::new("by_status", "bugs", &["status"]))?;
        }
        let mut tx = db.begin_write()?;
        assert_eq!(tx.count_query(&q)?, 0);
        let id = tx.insert("bugs", Document::new().with("status", "new"))?;
        let seen = tx.query(&q)?;
        assert_eq!(
            seen.iter().map(|d| d.id).collect::<Vec<_>>(),
            [id],
            "indexed: {indexed}"
        );
        assert_eq!(tx.count_query(&q)?, 1);
        assert_eq!(db.query(&q)?.len(), 0, "not visible outside before commit");
        tx.rollback();
    }
    Ok(())
}
