//! Field paths and filters, evaluated against documents.

use std::cmp::Ordering;
use std::fmt;

use blazedb_core::name::check_field_name;
use blazedb_core::{Document, Error, Result, Value};

use super::order::{cmp_values, rank};

/// A path to a (possibly nested) field: `address.city`, or `tags.0` for an array element.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// Parses a dotted path.
    ///
    /// # Errors
    /// [`Error::InvalidName`] if a segment is not a valid field name.
    pub fn parse(path: &str) -> Result<FieldPath> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        for s in &segments {
            check_field_name(s)?;
        }
        Ok(FieldPath(segments))
    }

    /// The path's segments.
    #[must_use]
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The value at this path in `doc`, if any.
    #[must_use]
    pub fn lookup<'d>(&self, doc: &'d Document) -> Option<&'d Value> {
        let (first, rest) = self.0.split_first()?;
        let mut v = doc.fields.get(first)?;
        for seg in rest {
            v = match v {
                Value::Map(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A filter on documents.
///
/// Semantics: `Eq` holds when the field exists and equals the value in the total order
/// (so `1 == 1.0`); `Ne` is its negation (a missing field is "not equal"). `Lt`, `Le`,
/// `Gt`, `Ge` hold only between values of the same kind (numbers with numbers, strings
/// with strings, …): `"10" > 9` is false, never an accident of kind order. `In` is `Eq`
/// to any listed value. `Contains` is substring for strings and element membership for
/// arrays. `Exists(true)` holds when the path resolves to a value (`null` included).
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Compare(FieldPath, Cmp, Value),
    In(FieldPath, Vec<Value>),
    Contains(FieldPath, Value),
    Exists(FieldPath, bool),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

fn path(p: &str) -> Result<FieldPath> {
    FieldPath::parse(p)
}

impl Filter {
    /// `field == value`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad path (as for every constructor here).
    pub fn eq(field: &str, value: impl Into<Value>) -> Result<Filter> {
        Ok(Filter::Compare(path(field)?, Cmp::Eq, value.into()))
    }
    /// `field != value`.
    ///
    /// # Errors
    /// Bad path.
    pub fn ne(field: &str, value: impl Into<Value>) -> Result<Filter> {
        Ok(Filter::Compare(path(field)?, Cmp::Ne, value.into()))
    }
    /// `field < value`.
    ///
    /// # Errors
    /// Bad path.
    pub fn lt(field: &str, value: impl Into<Value>) -> Result<Filter> {
        Ok(Filter::Compare(path(field)?, Cmp::Lt, value.into()))
    }
    /// `field <= value`.
    ///
    /// # Errors
    /// Bad path.
    pub fn le(field: &str, value: impl Into<Value>) -> Result<Filter> {
        Ok(Filter::Compare(path(field)?, Cmp::Le, value.into()))
    }
    /// `field > value`.
    ///
    /// # Errors
    /// Bad path.
    pub fn gt(field: &str, value: impl Into<Value>) -> Result<Filter> {
        Ok(Filter::Compare(path(field)?, Cmp::Gt, value.into()))
    }
    /// `field >= value`.
    ///
    /// # Errors
    /// Bad path.
    pub fn ge(field: &str, value: impl Into<Value>) -> Result<Filter> {
        Ok(Filter::Compare(path(field)?, Cmp::Ge, value.into()))
    }
    /// `field` equals one of `values`.
    ///
    /// # Errors
    /// Bad path.
    pub fn is_in(
        field: &str,
        values: impl IntoIterator<Item = impl Into<Value>>,
    ) -> Result<Filter> {
        Ok(Filter::In(
            path(field)?,
            values.into_iter().map(Into::into).collect(),
        ))
    }
    /// `field` (a string) contains `value` (a string), or `field` (an array) has an
    /// element equal to `value`.
    ///
    /// # Errors
    /// Bad path.
    pub fn contains(field: &str, value: impl Into<Value>) -> Result<Filter> {
        Ok(Filter::Contains(path(field)?, value.into()))
    }
    /// `field` exists (or, with `false`, does not).
    ///
    /// # Errors
    /// Bad path.
    pub fn exists(field: &str, exists: bool) -> Result<Filter> {
        Ok(Filter::Exists(path(field)?, exists))
    }
    /// All of `filters`.
    #[must_use]
    pub fn and(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::And(filters.into_iter().collect())
    }
    /// Any of `filters`.
    #[must_use]
    pub fn or(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::Or(filters.into_iter().collect())
    }
    /// Not `filter`.
    #[must_use]
    #[allow(clippy::should_implement_trait)]
    pub fn not(filter: Filter) -> Filter {
        Filter::Not(Box::new(filter))
    }

    /// Whether `doc` matches.
    #[must_use]
    pub fn matches(&self, doc: &Document) -> bool {
        match self {
            Filter::Compare(p, op, v) => compare(p.lookup(doc), *op, v),
            Filter::In(p, vs) => p
                .lookup(doc)
                .is_some_and(|x| vs.iter().any(|v| cmp_values(x, v) == Ordering::Equal)),
            Filter::Contains(p, v) => match (p.lookup(doc), v) {
                (Some(Value::String(s)), Value::String(needle)) => s.contains(needle.as_str()),
                (Some(Value::Array(items)), v) => {
                    items.iter().any(|x| cmp_values(x, v) == Ordering::Equal)
                }
                _ => false,
            },
            Filter::Exists(p, want) => p.lookup(doc).is_some() == *want,
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
            Filter::Not(f) => !f.matches(doc),
        }
    }

    /// Adds to `out` the top-level field of every path this filter reads (all it needs of
    /// a document to decide).
    pub(crate) fn top_fields<'f>(&'f self, out: &mut Vec<&'f str>) {
        match self {
            Filter::Compare(p, _, _)
            | Filter::In(p, _)
            | Filter::Contains(p, _)
            | Filter::Exists(p, _) => {
                if let Some(first) = p.segments().first() {
                    out.push(first);
                }
            }
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| f.top_fields(out)),
            Filter::Not(f) => f.top_fields(out),
        }
    }

    /// Checks limits: nesting depth and size, so a hostile filter cannot exhaust the stack.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when the filter nests deeper than 32 or has over 10,000 terms.
    pub fn validate(&self) -> Result<()> {
        fn walk(f: &Filter, depth: usize, terms: &mut usize) -> Result<()> {
            *terms += 1;
            if depth > 32 || *terms > 10_000 {
                return Err(Error::InvalidValue {
                    reason: "filter nests deeper than 32 or has over 10,000 terms".into(),
                });
            }
            match f {
                Filter::And(fs) | Filter::Or(fs) => {
                    fs.iter().try_for_each(|f| walk(f, depth + 1, terms))
                }
                Filter::Not(f) => walk(f, depth + 1, terms),
                Filter::In(_, vs) => {
                    *terms += vs.len();
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        walk(self, 0, &mut 0)
    }
}

fn compare(x: Option<&Value>, op: Cmp, v: &Value) -> bool {
    match op {
        Cmp::Eq => x.is_some_and(|x| cmp_values(x, v) == Ordering::Equal),
        Cmp::Ne => x.is_none_or(|x| cmp_values(x, v) != Ordering::Equal),
        _ => {
            let Some(x) = x else { return false };
            if rank(Some(x)) != rank(Some(v)) {
                return false;
            }
            let o = cmp_values(x, v);
            match op {
                Cmp::Lt => o == Ordering::Less,
                Cmp::Le => o != Ordering::Greater,
                Cmp::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        let mut addr = std::collections::BTreeMap::new();
        addr.insert("city".to_owned(), Value::from("Oslo"));
        Document::new()
            .with("n", 5i64)
            .with("name", "Ada Lovelace")
            .with("tags", vec![Value::from("x"), Value::from("y")])
            .with("address", Value::Map(addr))
            .with("nothing", Value::Null)
    }

    #[test]
    fn filters_follow_the_documented_semantics() -> Result<()> {
        let d = doc();
        let yes = [
            Filter::eq("n", 5.0)?,
            Filter::ne("missing", 1i64)?,
            Filter::gt("n", 4i64)?,
            Filter::le("n", 5i64)?,
            Filter::is_in("n", [1i64, 5])?,
            Filter::contains("name", "Love")?,
            Filter::contains("tags", "y")?,
            Filter::eq("address.city", "Oslo")?,
            Filter::eq("tags.1", "y")?,
            Filter::exists("nothing", true)?,
            Filter::exists("missing", false)?,
            Filter::and([Filter::gt("n", 1i64)?, Filter::not(Filter::eq("n", 6i64)?)]),
            Filter::or([Filter::eq("n", 0i64)?, Filter::eq("n", 5i64)?]),
        ];
        let no = [
            Filter::gt("n", "4")?,
            Filter::lt("missing", 1i64)?,
            Filter::eq("missing", Value::Null)?,
            Filter::contains("n", 5i64)?,
            Filter::eq("address.city.x", "Oslo")?,
            Filter::and([]).clone(),
        ];
        for f in &yes {
            assert!(f.matches(&d), "{f:?}");
        }
        for f in &no[..no.len() - 1] {
            assert!(!f.matches(&d), "{f:?}");
        }
        assert!(Filter::and([]).matches(&d), "the empty conjunction is true");
        assert!(
            !Filter::or([]).matches(&d),
            "the empty disjunction is false"
        );
        assert!(FieldPath::parse("a..b").is_err());
        Ok(())
    }
}
