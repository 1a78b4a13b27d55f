//! Reading a value in place: the same bytes as a copying get, and a panic of the
//! caller's code stays the caller's (it is not taken for a damaged file).

use std::panic::{AssertUnwindSafe, catch_unwind};

use blazedb_storage::{Store, StoreOptions, Table};

#[test]
fn get_with_sees_the_stored_bytes_and_leaves_a_callers_panic_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = Store::create(&path, &StoreOptions::default()).expect("create");
    let mut w = store.write().expect("write");
    w.insert(Table::Docs, b"k", b"stored value")
        .expect("insert");
    w.commit(true).expect("commit");

    let r = store.read().expect("read");
    assert_eq!(
        r.get_with(Table::Docs, b"k", <[u8]>::to_vec)
            .expect("get_with"),
        r.get(Table::Docs, b"k").expect("get")
    );
    assert_eq!(
        r.get_with(Table::Docs, b"absent", |_| unreachable!("no value"))
            .expect("get_with"),
        None::<()>
    );
    let caught = catch_unwind(AssertUnwindSafe(|| {
        r.get_with(Table::Docs, b"k", |_| -> () {
            panic!("the caller's own bug")
        })
    }));
    let payload = caught.expect_err("the panic reaches the caller");
    assert_eq!(
        payload.downcast_ref::<&str>().copied(),
        Some("the caller's own bug")
    );
}
