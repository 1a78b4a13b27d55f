//! Document commands: insert, put, get (with sync metadata), patch, delete, query,
//! count, explain.

use std::io::BufRead;

use blazedb::Access;
use blazedb::json::fields_from_json;
use blazedb::sync::{SyncConfig, SyncNode};
use blazedb::{Database, DocId, Document, Patch, WriteTxn};
use serde_json::{Value as Json, json};

use crate::args::{Cmd, QueryArgs};
use crate::condition::render;
use crate::ctx::Ctx;
use crate::exit::{CliError, CliResult};
use crate::filter::{project, query_of, selection};
use crate::output::doc_json;
use crate::query_checks::{collection_note, type_notes};
use crate::syncing::stamp_json;

/// Most documents `insert -` takes from stdin in its one transaction.
pub const INSERT_STREAM_MAX: usize = 1_000_000;

fn id_of(text: &str) -> CliResult<DocId> {
    text.parse::<DocId>().map_err(|e| {
        CliError::from(blazedb::Error::from(e)).hint(
            "a document id is a UUID such as 01900000-0000-7000-8000-000000000001, as \
             `insert` prints it",
        )
    })
}

fn fields_of(text: &str) -> CliResult<blazedb::Fields> {
    let j: Json = serde_json::from_str(text).map_err(|e| {
        CliError::bad_input(format!("not JSON: {e}"))
            .hint("give the fields as a JSON object, e.g. '{\"title\": \"x\"}'")
    })?;
    fields_from_json(&j).map_err(CliError::from)
}

/// Runs `f` in the REPL's open transaction, or in a new one that commits.
fn write<T>(ctx: &mut Ctx<'_>, f: impl FnOnce(&mut WriteTxn<'_>) -> CliResult<T>) -> CliResult<T> {
    if let Some(tx) = ctx.tx.as_mut() {
        return f(tx);
    }
    let mut tx = ctx.db.begin_write()?;
    let v = f(&mut tx)?;
    tx.commit()?;
    Ok(v)
}

pub fn insert(ctx: &mut Ctx<'_>, collection: &str, json: &str, print_ids: bool) -> CliResult {
    if json != "-" {
        let mut d = Document::new();
        d.fields = fields_of(json)?;
        let id = write(ctx, |tx| Ok(tx.insert(collection, d)?))?;
        return ctx.out.value(&json!({"id": id.to_string()}));
    }
    let bar = crate::progress::counter("reading documents");
    let mut docs = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| {
            let e = CliError::from(e);
            CliError {
                message: format!("line {}: {}", n + 1, e.message),
                ..e
            }
        })?;
        if line.trim().is_empty() {
            continue;
        }
        if docs.len() == INSERT_STREAM_MAX {
            return Err(CliError::bad_input(format!(
                "more than {INSERT_STREAM_MAX} documents on stdin"
            ))
            .hint("split the input, or use `import` for large loads"));
        }
        let mut d = Document::new();
        d.fields = fields_of(&line).map_err(|e| CliError {
            message: format!("line {}: {}", n + 1, e.message),
            ..e
        })?;
        docs.push(d);
        bar.inc(1);
    }
    bar.set_message("inserting");
    let ids = write(ctx, |tx| {
        docs.into_iter()
            .map(|d| Ok(tx.insert(collection, d)?))
            .collect::<CliResult<Vec<_>>>()
    })?;
    drop(bar);
    if print_ids {
        let rows: Vec<Json> = ids.iter().map(|id| json!({"id": id.to_string()})).collect();
        return ctx.out.rows(&rows);
    }
    ctx.out
        .value(&json!({"inserted": ids.len(), "collection": collection}))
}

pub fn put(ctx: &mut Ctx<'_>, collection: &str, id: &str, json: &str) -> CliResult {
    let mut d = Document::with_id(id_of(id)?);
    d.fields = fields_of(json)?;
    let id = d.id;
    let created = write(ctx, |tx| Ok(tx.put(collection, d)?))?;
    ctx.out
        .value(&json!({"id": id.to_string(), "created": created}))
}

fn not_found(collection: &str, id: DocId) -> CliError {
    CliError::from(blazedb::Error::NotFound {
        collection: collection.to_owned(),
        id,
    })
}

pub fn get(ctx: &mut Ctx<'_>, collection: &str, id: &str, meta: bool) -> CliResult {
    let id = id_of(id)?;
    let doc = match ctx.tx.as_mut() {
        Some(tx) => tx.get(collection, id)?,
        None => ctx.db.collection(collection).get(id)?,
    }
    .ok_or_else(|| not_found(collection, id))?;
    if !meta && ctx.out.is_rows() {
        // A table or CSV: the document as a row, as `query` shows it.
        return ctx.out.docs(std::slice::from_ref(&doc));
    }
    let mut out = doc_json(&doc);
    if meta {
        ctx.outside_tx("get --meta")?;
        out["meta"] = field_meta(ctx, collection, id)?;
    }
    ctx.out.value(&out)
}

/// Whether `cmd` is `get --meta` on a read-only handle of a database whose local writes
/// sync has not taken over yet: giving them their stamps (as `get --meta` does) is a
/// write, so the command needs a read-write open.
///
/// # Errors
/// Database errors.
pub fn needs_stamping(db: &Database, cmd: &Cmd) -> CliResult<bool> {
    if !matches!(cmd, Cmd::Get { meta: true, .. }) || !db.is_read_only() {
        return Ok(false);
    }
    let Some(role) = SyncNode::stored_role(db)? else {
        return Ok(false);
    };
    Ok(SyncNode::enable(db, role, &SyncConfig::default())?.has_unabsorbed()?)
}

/// Each field's stamp: origin node and role, hybrid-clock time, and the origin's write
/// counter. `null` when the database never synced (its writes carry no stamps yet).
fn field_meta(ctx: &Ctx<'_>, collection: &str, id: DocId) -> CliResult<Json> {
    let Some(role) = SyncNode::stored_role(ctx.db)? else {
        return Ok(Json::Null);
    };
    let node = SyncNode::enable(ctx.db, role, &SyncConfig::default())?;
    // Local writes since the last sync get their stamps now, as they would at the next
    // sync (stamped with the role the database keeps). With none waiting (always so on a
    // read-only handle, see `needs_stamping`) this only reads.
    node.absorb()?;
    let stamps = node.field_stamps(collection, id)?;
    Ok(Json::Object(
        stamps
            .into_iter()
            .map(|(f, s)| {
                let mut j = stamp_json(&s);
                j["local"] = json!(s.node() == node.node_id());
                j["user"] = json!(node.principal_of(s.node()).ok().flatten());
                (f, j)
            })
            .collect(),
    ))
}

pub fn patch(
    ctx: &mut Ctx<'_>,
    collection: &str,
    id: &str,
    json: &str,
    unset: &[String],
) -> CliResult {
    let id = id_of(id)?;
    let mut p = Patch::new();
    for (k, v) in fields_of(json)? {
        p = p.set(&k, v);
    }
    for f in unset {
        p = p.unset(f);
    }
    let doc = write(ctx, |tx| Ok(tx.patch(collection, id, &p)?))?;
    ctx.out.value(&doc_json(&doc))
}

pub fn delete(ctx: &mut Ctx<'_>, collection: &str, id: &str) -> CliResult {
    let id = id_of(id)?;
    write(ctx, |tx| Ok(tx.delete(collection, id)?))?;
    ctx.out.value(&json!({"deleted": id.to_string()}))
}

/// Prints on stderr why a query that matched nothing may not mean what was typed
/// (`query_checks.rs`): an unknown collection, or comparisons with another type.
fn explain_empty(r: &blazedb::ReadTxn, q: &blazedb::Query) -> CliResult {
    if let Some(note) = collection_note(r, q.collection())? {
        eprintln!("note: {note}");
        return Ok(());
    }
    for note in type_notes(r, q)? {
        eprintln!("note: {note}");
    }
    Ok(())
}

pub fn drop_collection(ctx: &mut Ctx<'_>, collection: &str) -> CliResult {
    let n = write(ctx, |tx| {
        let known = tx.collections()?;
        if !known.iter().any(|c| c == collection) {
            let known = known.join(", ");
            return Err(CliError::new(
                crate::exit::Exit::NotFound,
                format!("no collection '{collection}'"),
            )
            .hint(if known.is_empty() {
                "the database has no collections".to_owned()
            } else {
                format!("collections: {known}")
            }));
        }
        Ok(tx.drop_collection(collection)?)
    })?;
    ctx.out
        .value(&json!({"dropped": collection, "documents": n}))
}

pub fn query(ctx: &mut Ctx<'_>, a: &QueryArgs) -> CliResult {
    let q = query_of(a)?;
    let select = selection(a)?;
    let docs = if let Some(tx) = ctx.tx.as_mut() {
        // Inside `begin`: the transaction's own view, its writes included.
        tx.query(&q)?
    } else {
        let r = ctx.db.begin_read()?;
        let docs = r.query(&q)?;
        if docs.is_empty() {
            explain_empty(&r, &q)?;
        }
        docs
    };
    if select.is_empty() {
        return ctx.out.docs(&docs);
    }
    let shown: Vec<Document> = docs.iter().map(|d| project(d, &select)).collect();
    ctx.out.docs(&shown)
}

pub fn count(ctx: &mut Ctx<'_>, a: &QueryArgs) -> CliResult {
    let q = query_of(a)?;
    let n = if let Some(tx) = ctx.tx.as_mut() {
        // Inside `begin`: the transaction's own view, its writes included.
        tx.count_query(&q)?
    } else {
        let r = ctx.db.begin_read()?;
        let n = r.count_query(&q)?;
        if n == 0 && a.limit != Some(0) {
            explain_empty(&r, &q)?;
        }
        n
    };
    // One shape everywhere (the REPL, a terminal, a pipe).
    ctx.out.rows(&[json!({"count": n})])
}

pub fn explain(ctx: &mut Ctx<'_>, a: &QueryArgs) -> CliResult {
    ctx.outside_tx("explain")?;
    let q = query_of(a)?;
    let r = ctx.db.begin_read()?;
    if let Some(note) = collection_note(&r, &a.collection)? {
        eprintln!("note: {note}");
    }
    let plan = r.explain(&q)?;
    let (index, bounds) = match &plan.access {
        Access::FullScan => (Json::Null, Json::Null),
        Access::Index { name, bounds } => (json!(name), json!(bounds)),
    };
    ctx.out.value(&json!({
        "filter": q.current_filter().map(render),
        "plan": plan.to_string(),
        "index": index,
        "bounds": bounds,
        "estimated_reads": plan.estimated_reads,
        "sort_in_memory": plan.sort_in_memory,
    }))
}
