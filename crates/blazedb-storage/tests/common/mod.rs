//! Helpers shared by the storage tests.

use std::ops::{Bound, ControlFlow};

use blazedb_storage::{StorageError, Store, Table};

/// Every row of `Docs`, in key order.
pub fn rows(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .read()
        .expect("read")
        .scan(Table::Docs, (Bound::Unbounded, Bound::Unbounded), |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok::<_, StorageError>(ControlFlow::Continue(()))
        })
        .expect("scan");
    out
}
