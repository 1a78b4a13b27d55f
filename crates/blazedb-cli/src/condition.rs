//! The condition language of `--where`: a grammar, parsed with `winnow`, into an engine
//! [`Filter`], and a filter written back in the same language (`explain`).
//!
//! ```text
//! condition := or
//! or        := and ("or" and)*
//! and       := unary ("and" unary)*
//! unary     := "not" unary | "(" or ")" | test
//! test      := "!" FIELD "?"                      absent
//!            | FIELD "?" | FIELD "exists"          present
//!            | FIELD OP VALUE                      OP: = == != < <= > >= ~
//!            | FIELD "in" ARRAY | FIELD "contains" VALUE
//! VALUE     := JSON in BlazeDB's mapping ("x", 30, true, null, [..], {"$ts": 0})
//!            | a word of text (open): anything up to a space or a parenthesis that
//!              does not start with an operator
//! ```
//!
//! Keywords are case-insensitive. `~` is `contains`. A condition that does not follow
//! the grammar is an error naming the column where it stops making sense: nothing is
//! ever guessed (`n>>1` is not "n greater than the text >1").

use blazedb::json::{from_json, to_json};
use blazedb::{Cmp, Filter, Value};
use winnow::ascii::{Caseless, multispace0};
use winnow::combinator::{alt, cut_err, eof, fail, not, opt, peek, preceded, repeat};
use winnow::error::{ContextError, ErrMode, ModalResult, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::token::{literal, one_of, take_while};

use crate::exit::CliError;

/// A parsed condition, before its fields are checked by the engine.
#[derive(Debug, PartialEq)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A test of one field; `at` is its byte offset in the condition.
    Test {
        field: String,
        at: usize,
        test: Test,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Test {
    Cmp(Cmp, Value),
    In(Vec<Value>),
    Contains(Value),
    Exists(bool),
}

/// Characters that end a field name.
const FIELD_END: &[char] = &[
    '=', '!', '<', '>', '~', '(', ')', '?', '"', '\'', ',', '[', ']', '{', '}',
];
/// Characters an unquoted text value may not start with (they are operators).
const OPERATOR_START: &[char] = &['=', '!', '<', '>', '~'];

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

/// A keyword, case-insensitive, not followed by more of a word.
fn keyword<'i>(word: &'static str) -> impl Parser<&'i str, (), ErrMode<ContextError>> {
    (
        literal(Caseless(word)),
        not(one_of(|c: char| {
            c.is_alphanumeric() || c == '_' || c == '.'
        })),
    )
        .void()
}

fn is_keyword(word: &str) -> bool {
    ["and", "or", "not", "in", "contains", "exists"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

fn field<'i>(i: &mut &'i str) -> ModalResult<&'i str> {
    let start = *i;
    let name = take_while(1.., |c: char| !c.is_whitespace() && !FIELD_END.contains(&c))
        .context(expected("a field name"))
        .parse_next(i)?;
    if is_keyword(name) {
        *i = start;
        return Err(ErrMode::Backtrack(ContextError::new()));
    }
    Ok(name)
}

/// Fails for good where `i` stands, saying what was expected there.
fn refuse<T>(i: &mut &str, what: &'static str) -> ModalResult<T> {
    cut_err(fail.context(expected(what))).parse_next(i)
}

/// A JSON value that delimits itself (a string, an array or an object).
fn json_delimited(i: &mut &str) -> ModalResult<Value> {
    let mut stream = serde_json::Deserializer::from_str(i).into_iter::<serde_json::Value>();
    let Some(Ok(j)) = stream.next() else {
        return refuse(i, "a complete JSON value");
    };
    let Ok(v) = from_json(&j) else {
        return refuse(i, "a JSON value BlazeDB can store");
    };
    *i = &i[stream.byte_offset()..];
    Ok(v)
}

/// A value: self-delimiting JSON, or a word (a JSON number, `true`, `false`, `null`,
/// else text).
fn value(i: &mut &str) -> ModalResult<Value> {
    const VALUE: &str = "a value (JSON, or a word of text)";
    if i.starts_with(['"', '[', '{']) {
        return json_delimited(i);
    }
    let start = *i;
    let word =
        take_while(0.., |c: char| !c.is_whitespace() && c != '(' && c != ')').parse_next(i)?;
    if word.is_empty() || word.starts_with(OPERATOR_START) {
        *i = start;
        return refuse(i, VALUE);
    }
    Ok(match serde_json::from_str::<serde_json::Value>(word) {
        Ok(j) => match from_json(&j) {
            Ok(v) => v,
            Err(_) => {
                *i = start;
                return refuse(i, VALUE);
            }
        },
        Err(_) => Value::String(word.to_owned()),
    })
}

/// The list of `FIELD in [..]`.
fn array(i: &mut &str) -> ModalResult<Vec<Value>> {
    const ARRAY: &str = "a JSON array, e.g. [1, 2]";
    if !i.starts_with('[') {
        return refuse(i, ARRAY);
    }
    match json_delimited(i)? {
        Value::Array(items) => Ok(items),
        _ => refuse(i, ARRAY),
    }
}

fn operator(i: &mut &str) -> ModalResult<Cmp> {
    alt((
        "==".value(Cmp::Eq),
        "!=".value(Cmp::Ne),
        "<=".value(Cmp::Le),
        ">=".value(Cmp::Ge),
        "=".value(Cmp::Eq),
        "<".value(Cmp::Lt),
        ">".value(Cmp::Gt),
    ))
    .parse_next(i)
}

/// What follows a field name.
fn test_of(i: &mut &str) -> ModalResult<Test> {
    alt((
        "?".value(Test::Exists(true)),
        keyword("exists").value(Test::Exists(true)),
        preceded((keyword("in"), multispace0), cut_err(array)).map(Test::In),
        preceded(
            (alt((keyword("contains"), "~".void())), multispace0),
            cut_err(value),
        )
        .map(Test::Contains),
        (operator, preceded(multispace0, cut_err(value))).map(|(op, v)| Test::Cmp(op, v)),
        cut_err(fail).context(expected(
            "an operator: = != < <= > >= ~ in contains exists ?",
        )),
    ))
    .parse_next(i)
}

fn test<'i>(i: &mut &'i str, whole: &'i str) -> ModalResult<Expr> {
    if let Some(rest) = i.strip_prefix('!') {
        let mut probe = rest;
        if let Ok(name) = field(&mut probe)
            && let Some(after) = probe.strip_prefix('?')
        {
            let at = whole.len() - rest.len();
            *i = after;
            return Ok(Expr::Test {
                field: name.to_owned(),
                at,
                test: Test::Exists(false),
            });
        }
    }
    let at = whole.len() - i.len();
    let name = field(i)?;
    multispace0.parse_next(i)?;
    let test = test_of(i)?;
    Ok(Expr::Test {
        field: name.to_owned(),
        at,
        test,
    })
}

fn unary<'i>(i: &mut &'i str, whole: &'i str) -> ModalResult<Expr> {
    multispace0.parse_next(i)?;
    if opt((keyword("not"), multispace0)).parse_next(i)?.is_some() {
        return Ok(Expr::Not(Box::new(
            cut_err(|i: &mut &'i str| unary(i, whole)).parse_next(i)?,
        )));
    }
    if opt("(").parse_next(i)?.is_some() {
        let inner = cut_err(|i: &mut &'i str| or(i, whole)).parse_next(i)?;
        multispace0.parse_next(i)?;
        cut_err(")").context(expected("')'")).parse_next(i)?;
        return Ok(inner);
    }
    test(i, whole).map_err(|e| e.cut())
}

/// `operand (KEYWORD operand)*`, joined by `make` when there is more than one.
fn chain<'i>(
    i: &mut &'i str,
    whole: &'i str,
    word: &'static str,
    operand: fn(&mut &'i str, &'i str) -> ModalResult<Expr>,
    make: fn(Vec<Expr>) -> Expr,
) -> ModalResult<Expr> {
    let first = operand(i, whole)?;
    let rest: Vec<Expr> = repeat(
        0..,
        preceded(
            (multispace0, keyword(word), multispace0),
            cut_err(|i: &mut &'i str| operand(i, whole)),
        ),
    )
    .parse_next(i)?;
    Ok(join(first, rest, make))
}

fn and<'i>(i: &mut &'i str, whole: &'i str) -> ModalResult<Expr> {
    chain(i, whole, "and", unary, Expr::And)
}

fn or<'i>(i: &mut &'i str, whole: &'i str) -> ModalResult<Expr> {
    chain(i, whole, "or", and, Expr::Or)
}

fn join(first: Expr, rest: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if rest.is_empty() {
        return first;
    }
    let mut all = vec![first];
    all.extend(rest);
    make(all)
}

/// The whole condition: an `or`, then nothing but spaces.
fn top<'i>(i: &mut &'i str, whole: &'i str) -> ModalResult<Expr> {
    let e = or(i, whole)?;
    multispace0.parse_next(i)?;
    peek(cut_err(eof).context(expected("'and', 'or' or the end of the condition")))
        .parse_next(i)?;
    Ok(e)
}

fn condition(whole: &str) -> Result<Expr, (usize, String)> {
    let mut i = whole;
    match top(&mut i, whole) {
        Ok(e) => Ok(e),
        Err(e) => {
            let offset = whole.len() - i.len();
            let why = e.into_inner().map(|c| c.to_string()).unwrap_or_default();
            Err((offset, why))
        }
    }
}

/// The column (1-based, in characters) of byte `offset` of `text`.
fn column(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].chars().count() + 1
}

fn hint() -> &'static str {
    "conditions are FIELD OP VALUE (OP: = != < <= > >= ~), FIELD in [..], FIELD contains \
     VALUE, FIELD? or FIELD exists, !FIELD?, combined with and, or, not and parentheses; \
     quote text with spaces or operators in it: title=\"a b\""
}

/// One `--where` condition as a filter.
///
/// # Errors
/// [`crate::exit::Exit::BadInput`] naming the condition, the column and what was
/// expected there, or the field the engine refuses.
pub fn parse_condition(text: &str) -> Result<Filter, CliError> {
    let expr = condition(text).map_err(|(offset, why)| {
        let near: String = text[offset.min(text.len())..].chars().take(12).collect();
        let near = if near.is_empty() {
            "at the end".to_owned()
        } else {
            format!("at '{near}'")
        };
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(": {}", why.replace('\n', "; "))
        };
        CliError::bad_input(format!(
            "condition '{text}': syntax error at column {} ({near}){why}",
            column(text, offset)
        ))
        .hint(hint())
    })?;
    build(text, expr)
}

fn build(text: &str, e: Expr) -> Result<Filter, CliError> {
    let all = |v: Vec<Expr>| {
        v.into_iter()
            .map(|e| build(text, e))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match e {
        Expr::And(v) => Filter::and(all(v)?),
        Expr::Or(v) => Filter::or(all(v)?),
        Expr::Not(e) => Filter::not(build(text, *e)?),
        Expr::Test { field, at, test } => {
            let f = match test {
                Test::Cmp(op, v) => match op {
                    Cmp::Eq => Filter::eq(&field, v),
                    Cmp::Ne => Filter::ne(&field, v),
                    Cmp::Lt => Filter::lt(&field, v),
                    Cmp::Le => Filter::le(&field, v),
                    Cmp::Gt => Filter::gt(&field, v),
                    Cmp::Ge => Filter::ge(&field, v),
                },
                Test::In(items) => Filter::is_in(&field, items),
                Test::Contains(v) => Filter::contains(&field, v),
                Test::Exists(present) => Filter::exists(&field, present),
            };
            f.map_err(|e| {
                CliError::bad_input(format!(
                    "condition '{text}': field '{field}' at column {}: {e}",
                    column(text, at)
                ))
                .hint(hint())
            })?
        }
    })
}

/// `f` written in the condition language (it parses back to an equal filter).
pub fn render(f: &Filter) -> String {
    let value = |v: &Value| to_json(v).to_string();
    match f {
        Filter::Compare(p, op, v) => {
            let op = match op {
                Cmp::Eq => "=",
                Cmp::Ne => "!=",
                Cmp::Lt => "<",
                Cmp::Le => "<=",
                Cmp::Gt => ">",
                Cmp::Ge => ">=",
            };
            format!("{p} {op} {}", value(v))
        }
        Filter::In(p, items) => format!("{p} in {}", value(&Value::Array(items.clone()))),
        Filter::Contains(p, v) => format!("{p} contains {}", value(v)),
        Filter::Exists(p, true) => format!("{p} exists"),
        Filter::Exists(p, false) => format!("not {p} exists"),
        Filter::And(v) => join_rendered(v, " and ", |f| matches!(f, Filter::Or(_))),
        Filter::Or(v) => join_rendered(v, " or ", |_| false),
        Filter::Not(inner) => match **inner {
            Filter::And(_) | Filter::Or(_) => format!("not ({})", render(inner)),
            _ => format!("not {}", render(inner)),
        },
    }
}

fn join_rendered(v: &[Filter], sep: &str, paren: impl Fn(&Filter) -> bool) -> String {
    if v.is_empty() {
        // An empty `and` holds for every document; an empty `or` for none.
        return if sep == " and " { "true" } else { "false" }.to_owned();
    }
    v.iter()
        .map(|f| {
            if paren(f) {
                format!("({})", render(f))
            } else {
                render(f)
            }
        })
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
#[path = "condition_tests.rs"]
mod tests;
