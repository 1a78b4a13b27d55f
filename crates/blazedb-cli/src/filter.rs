//! `--where` conditions and `--sort` keys as engine queries.
//!
//! A condition is `FIELD OP VALUE` with OP one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `~`
//! (contains), or ` in ` (a JSON array); `FIELD?` and `!FIELD?` test presence. VALUE is
//! JSON in BlazeDB's mapping (`30`, `true`, `"30"`, `{"$ts": 0}`); anything that is not
//! JSON is taken as text, so `status=open` means the string "open".

use blazedb::json::from_json;
use blazedb::{Filter, Order, Query, Value};

use crate::args::QueryArgs;
use crate::exit::{CliError, CliResult};

/// The operators, longest first so `<=` is not read as `<`.
const OPS: [&str; 7] = ["!=", "<=", ">=", "=", "<", ">", "~"];

fn value_of(text: &str) -> CliResult<Value> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(j) => from_json(&j).map_err(CliError::from),
        Err(_) => Ok(Value::String(text.to_owned())),
    }
}

fn bad(cond: &str, why: &str) -> CliError {
    CliError::bad_input(format!("condition '{cond}': {why}")).hint(
        "write FIELD=VALUE, FIELD!=VALUE, FIELD<VALUE (also <=, >, >=), FIELD~VALUE, \
         FIELD?, !FIELD? or 'FIELD in [V1,V2]'",
    )
}

/// One condition as a filter.
///
/// # Errors
/// [`crate::exit::Exit::BadInput`] naming the condition and the accepted forms.
pub fn parse_condition(cond: &str) -> CliResult<Filter> {
    let c = cond.trim();
    if let Some(field) = c.strip_suffix('?') {
        let (field, present) = match field.strip_prefix('!') {
            Some(f) => (f, false),
            None => (field, true),
        };
        return Filter::exists(field.trim(), present).map_err(|e| bad(cond, &e.to_string()));
    }
    if let Some((field, list)) = c.split_once(" in ") {
        let Value::Array(items) = value_of(list.trim())? else {
            return Err(bad(cond, "'in' takes a JSON array"));
        };
        return Filter::is_in(field.trim(), items).map_err(|e| bad(cond, &e.to_string()));
    }
    let Some((at, op)) = OPS
        .iter()
        .filter_map(|op| c.find(op).map(|at| (at, *op)))
        .min_by_key(|(at, op)| (*at, std::cmp::Reverse(op.len())))
    else {
        return Err(bad(cond, "no operator"));
    };
    let field = c[..at].trim();
    if field.is_empty() {
        return Err(bad(cond, "no field before the operator"));
    }
    let v = value_of(c[at + op.len()..].trim())?;
    let f = match op {
        "=" => Filter::eq(field, v),
        "!=" => Filter::ne(field, v),
        "<" => Filter::lt(field, v),
        "<=" => Filter::le(field, v),
        ">" => Filter::gt(field, v),
        ">=" => Filter::ge(field, v),
        _ => Filter::contains(field, v),
    };
    f.map_err(|e| bad(cond, &e.to_string()))
}

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
            Some((f, "desc")) => (f, Order::Desc),
            Some((f, "asc")) => (f, Order::Asc),
            Some(_) => {
                return Err(CliError::bad_input(format!(
                    "sort key '{key}': the order is 'asc' or 'desc'"
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

#[cfg(test)]
mod tests {
    use super::*;
    use blazedb::Document;

    fn doc(json: &str) -> Document {
        let j: serde_json::Value = serde_json::from_str(json).expect("test JSON");
        let mut d = Document::new();
        d.fields = blazedb::json::fields_from_json(&j).expect("fields");
        d
    }

    #[test]
    fn conditions_parse_to_filters_that_match_what_they_say() {
        let d = doc(r#"{"age": 30, "name": "ann", "tags": ["a", "b"], "score": 2.5}"#);
        for (cond, expect) in [
            ("age=30", true),
            ("age = 30", true),
            ("age!=30", false),
            ("age<=30", true),
            ("age<30", false),
            ("age>=30", true),
            ("age>29", true),
            ("name=ann", true),
            ("name=\"ann\"", true),
            ("name~nn", true),
            ("tags~a", true),
            ("tags~c", false),
            ("age?", true),
            ("!email?", true),
            ("email?", false),
            ("age in [29, 30]", true),
            ("name in [\"bob\"]", false),
            ("score>2", true),
        ] {
            let f = parse_condition(cond).expect(cond);
            assert_eq!(f.matches(&d), expect, "{cond}");
        }
    }

    #[test]
    fn malformed_conditions_are_bad_input_naming_the_condition() {
        for cond in ["age", "=5", "tags in 5", "$x=1"] {
            let e = parse_condition(cond).expect_err(cond);
            assert_eq!(e.exit, crate::exit::Exit::BadInput, "{cond}");
            assert!(e.message.contains(cond), "{cond}: {}", e.message);
        }
    }
}
