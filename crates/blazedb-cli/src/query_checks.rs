//! What keeps a query from looking like an empty result when it is a mistake: notes
//! on stderr for a collection name that does not exist (with the names that do), and
//! for a comparison with a value of another type than the field holds, when nothing
//! matched.
//!
//! Notes, not errors: collections are implicit (a collection exists once written to),
//! so "no such collection" is also the true state of a client that has not synced yet,
//! and a script counting there must get its 0 with exit 0; a person reading the
//! terminal gets the note.

use std::collections::BTreeSet;

use blazedb::{FieldPath, Filter, Query, ReadTxn, Value};

use crate::exit::CliResult;

/// Documents a type note looks at (the first ones in the collection's order).
const SAMPLE_DOCS: usize = 1_000;

/// A note if `collection` does not exist in `r` (a collection exists once written to,
/// until dropped, even when empty), naming the ones that do.
///
/// # Errors
/// Database errors.
pub fn collection_note(r: &ReadTxn, collection: &str) -> CliResult<Option<String>> {
    let known = r.collections()?;
    if known.iter().any(|c| c == collection) {
        return Ok(None);
    }
    let known = if known.is_empty() {
        "the database has none yet".to_owned()
    } else {
        format!("collections: {}", known.join(", "))
    };
    Ok(Some(format!(
        "no collection '{collection}' in this database ({known})"
    )))
}

/// The kind a comparison looks at: numbers compare with numbers whatever their type.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Int(_) | Value::Float(_) => "number",
        other => other.type_name(),
    }
}

/// Every field compared with a value in `f`, with the value.
fn compared<'f>(f: &'f Filter, out: &mut Vec<(&'f FieldPath, &'f Value)>) {
    match f {
        Filter::Compare(p, _, v) | Filter::Contains(p, v) => out.push((p, v)),
        Filter::In(p, items) => out.extend(items.iter().map(|v| (p, v))),
        Filter::Exists(..) => {}
        Filter::And(v) | Filter::Or(v) => v.iter().for_each(|f| compared(f, out)),
        Filter::Not(inner) => compared(inner, out),
    }
}

/// Notes for a query that matched nothing: each field it compares with a value of a
/// kind that no sampled document holds in that field, while some hold it with another
/// kind (`n > "1"` where `n` holds numbers).
///
/// # Errors
/// Database errors.
pub fn type_notes(r: &ReadTxn, q: &Query) -> CliResult<Vec<String>> {
    let Some(filter) = q.current_filter() else {
        return Ok(Vec::new());
    };
    let mut tests = Vec::new();
    compared(filter, &mut tests);
    if tests.is_empty() {
        return Ok(Vec::new());
    }
    let sample = r.query(&Query::new(q.collection()).limit(SAMPLE_DOCS))?;
    let mut notes = Vec::new();
    let mut said = BTreeSet::new();
    for (path, value) in tests {
        let held: BTreeSet<&'static str> = sample
            .iter()
            .filter_map(|d| path.lookup(d))
            .map(kind)
            .collect();
        let want = kind(value);
        if held.is_empty() || held.contains(want) || !said.insert((path.to_string(), want)) {
            continue;
        }
        let held: Vec<&str> = held.into_iter().collect();
        notes.push(format!(
            "nothing matched: field '{path}' holds {} values in '{}', and {} is a {want}",
            held.join(" and "),
            q.collection(),
            blazedb::json::to_json(value)
        ));
    }
    Ok(notes)
}
