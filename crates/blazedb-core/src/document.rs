//! Documents: an id and fields, and the validation of their fields.
//!
//! Invariant: a [`Document`] that passed [`validate_fields`] has only valid field names
//! and values within the limits of [`crate::limits`]. Ids live in [`crate::id`], which
//! depends on nothing, so the error type can name them without a circle.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::id::DocId;
use crate::name::check_field_name;
use crate::value::Value;

/// A document's fields: field name → value, ordered by name.
pub type Fields = BTreeMap<String, Value>;

/// A document: its id and its fields.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Document {
    pub id: DocId,
    pub fields: Fields,
}

impl Document {
    /// An empty document with a fresh UUIDv7 id.
    #[must_use]
    pub fn new() -> Self {
        Self {
            id: DocId::new(),
            fields: Fields::new(),
        }
    }

    /// An empty document with the given id.
    #[must_use]
    pub fn with_id(id: DocId) -> Self {
        Self {
            id,
            fields: Fields::new(),
        }
    }

    /// Sets a field, builder style. The name is validated when the document is written.
    #[must_use]
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(field.to_owned(), value.into());
        self
    }

    /// Sets a field. The name is validated when the document is written.
    pub fn set(&mut self, field: &str, value: impl Into<Value>) -> Option<Value> {
        self.fields.insert(field.to_owned(), value.into())
    }

    /// The value of a top-level field.
    #[must_use]
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }
}

/// Validates the fields of a document or patch: names, nesting depth.
///
/// # Errors
/// [`Error::InvalidName`] or [`Error::InvalidValue`] naming the offending field.
pub fn validate_fields(fields: &Fields) -> Result<(), Error> {
    for (name, value) in fields {
        check_field_name(name)?;
        value.validate(1).map_err(|e| match e {
            Error::InvalidValue { reason } => Error::InvalidValue {
                reason: format!("field '{name}': {reason}"),
            },
            other => other,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_v7_and_increase() {
        let a = DocId::new();
        let b = DocId::new();
        assert_eq!(a.0.get_version_num(), 7);
        assert!(b > a);
    }

    #[test]
    fn ids_round_trip_through_text_and_bad_text_is_a_typed_error() {
        let id = DocId::new();
        assert_eq!(id.to_string().parse::<DocId>().ok(), Some(id));
        assert!(matches!(
            "not-a-uuid".parse::<DocId>().map_err(Error::from),
            Err(Error::InvalidValue { .. })
        ));
    }
}
