//! The schema, created and migrated by the servers themselves: each migration runs in
//! one transaction under an advisory lock, so processes starting together apply it
//! once; a schema newer than this build knows is refused.
//!
//! Tables (every row belongs to one served database, `db`):
//! - `blazedb_keys`: per database, the KDF salt and parameters and the wrapped data key.
//! - `blazedb_records`: the node's records by namespace — `ns` and `key` are keyed
//!   tags, `value` sealed (it holds the plaintext key too, for ordered scans).
//! - `blazedb_logs`: the node's ordered logs — `ns` a keyed tag, `seq` the position
//!   (plaintext: positions and counts are what an administrator may see), `value`
//!   sealed.
//! - `blazedb_docs`: the merged documents — `coll` and `id` keyed tags, `value` sealed.

use blazedb_core::{Error, Result};

use crate::pg_error;

/// The newest schema version this build writes and reads.
pub(crate) const SCHEMA_VERSION: i32 = 1;
/// The advisory-lock key migrations hold (any constant no other lock uses).
const MIGRATION_LOCK: i64 = 0x626c_617a_6564_6201;

const MIGRATIONS: [&str; 1] = [r"
CREATE TABLE blazedb_keys (
    db text PRIMARY KEY,
    salt bytea NOT NULL,
    kdf_memory_kib integer NOT NULL,
    kdf_iterations integer NOT NULL,
    kdf_parallelism integer NOT NULL,
    wrapped bytea NOT NULL
);
CREATE TABLE blazedb_records (
    db text NOT NULL,
    ns bytea NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (db, ns, key)
);
CREATE TABLE blazedb_logs (
    db text NOT NULL,
    ns bytea NOT NULL,
    seq bigint NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (db, ns, seq)
);
CREATE TABLE blazedb_docs (
    db text NOT NULL,
    coll bytea NOT NULL,
    id bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (db, coll, id)
);
"];

/// Brings the schema to [`SCHEMA_VERSION`].
pub(crate) fn migrate(c: &mut postgres::Client) -> Result<()> {
    let e = |what| move |err| pg_error(what, err);
    let mut tx = c.transaction().map_err(e("migrating the schema"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(e("locking the schema"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS blazedb_schema (version integer NOT NULL)")
        .map_err(e("creating the schema table"))?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM blazedb_schema", &[])
        .map_err(e("reading the schema version"))?
        .and_then(|r| r.get(0));
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(Error::UnsupportedFormat {
            what: "PostgreSQL schema",
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: u32::try_from(SCHEMA_VERSION).unwrap_or(0),
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(sql).map_err(e("migrating the schema"))?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO blazedb_schema (version) VALUES ($1)",
            &[&version],
        )
        .map_err(e("recording the schema version"))?;
    }
    tx.commit().map_err(e("migrating the schema"))
}
