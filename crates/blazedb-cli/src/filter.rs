//! `--where` conditions and `--sort` keys as engine queries. The condition language
//! is in `condition.rs`; several `--where` conditions must all hold.

use blazedb::{Document, FieldPath, Fields, Filter, Order, Query, Value};

use crate::args::QueryArgs;
use crate::exit::{CliError, CliResult};

pub use crate::condition::parse_condition;

/// The query the arguments describe.
///
/// # Errors
/// Bad conditions, sort keys or collection names.
pub fn query_of(a: &QueryArgs) -> CliResult<Query> {
    let mut q = Query::new(&a.collection);
    let mut filters = a
        .conditions
        .iter()
        .map(|c| parse_condition(c))
        .collect::<CliResult<Vec<_>>>()?;
    if filters.len() == 1 {
        q = q.filter(filters.remove(0));
    } else if !filters.is_empty() {
        q = q.filter(Filter::and(filters));
    }
    for key in &a.sort {
        let (field, order) = match key.rsplit_once(':') {
            Some((f, o)) if o.eq_ignore_ascii_case("desc") => (f, Order::Desc),
            Some((f, o)) if o.eq_ignore_ascii_case("asc") => (f, Order::Asc),
            Some(_) => {
                return Err(CliError::bad_input(format!(
                    "sort key '{key}': the order is 'asc' or 'desc' (any case)"
                )));
            }
            None => (key.as_str(), Order::Asc),
        };
        q = q.sort(field, order)?;
    }
    if let Some(n) = a.limit {
        q = q.limit(n);
    }
    if let Some(n) = a.offset {
        q = q.offset(n);
    }
    Ok(q)
}

/// The `--select` paths of `a`, checked.
///
/// # Errors
/// [`crate::exit::Exit::BadInput`] for a path that is not a field path.
pub fn selection(a: &QueryArgs) -> CliResult<Vec<FieldPath>> {
    a.select
        .iter()
        .map(|p| {
            FieldPath::parse(p.trim()).map_err(|e| {
                CliError::from(e)
                    .hint("--select takes field names or dotted paths, comma-separated")
            })
        })
        .collect()
}

/// Puts `value` at the path `segs` inside `fields`, making maps along the way. A value
/// an earlier (shorter) path kept whole already holds every part of it.
fn put_at(fields: &mut Fields, segs: &[String], value: &Value) {
    match segs {
        [] => {}
        [last] => {
            fields.insert(last.clone(), value.clone());
        }
        [first, rest @ ..] => {
            let slot = fields
                .entry(first.clone())
                .or_insert_with(|| Value::Map(Fields::new()));
            if let Value::Map(m) = slot {
                put_at(m, rest, value);
            }
        }
    }
}

/// `doc` with only the fields at `paths` (nested maps rebuilt along dotted paths).
#[must_use]
pub fn project(doc: &Document, paths: &[FieldPath]) -> Document {
    let mut fields = Fields::new();
    for path in paths {
        if let Some(value) = path.lookup(doc) {
            put_at(&mut fields, path.segments(), value);
        }
    }
    Document { id: doc.id, fields }
}
