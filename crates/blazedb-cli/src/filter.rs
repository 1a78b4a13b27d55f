//! `--where` conditions and `--sort` keys as engine queries. The condition language
//! is in `condition.rs`; several `--where` conditions must all hold.

use blazedb::{Filter, Order, Query};

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
